"""The `cascade` command.

Each command imports the cascade modules it runs (its floor: eval, pipelines, ...) inside its function, so
`cascade --help` and argument errors load neither pandas nor torch and start fast (tests/test_cli.py checks the
imports); these and the report commands' (`cli_report`) are the only function-level imports of cascade modules
outside the lazy API in `cascade/__init__`.
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from cascade.core.errors import CascadeError
from cascade.pipelines.cli_options import (
    Cache,
    CpusPerWorker,
    DataDir,
    ExecutorBatch,
    ExecutorKind,
    GpusPerWorker,
    Quiet,
    RayAddress,
    RayTimeout,
    Threads,
    Workers,
    _cache_folder,
    _out_folder,
    _threads,
    executor_settings,
)
from cascade.pipelines.cli_report import compare, eval_command, leaderboard

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Declare staged retrieval pipelines in YAML, run them, evaluate them, compare them.",
)


@app.command()
def run(
    configs: Annotated[list[Path], typer.Argument(help="Pipeline config files (YAML).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where run folders go.", callback=_out_folder)] = (
        Path("runs")
    ),
    data_dir: DataDir = None,
    cache: Cache = Path(".cascade"),
    threads: Threads = None,
    quiet: Quiet = False,
    executor: ExecutorKind = "local",
    ray_address: RayAddress = None,
    workers: Workers = None,
    cpus_per_worker: CpusPerWorker = 1.0,
    gpus_per_worker: GpusPerWorker = 0.0,
    executor_batch_size: ExecutorBatch = 512,
    ray_timeout: RayTimeout = 20.0,
) -> None:
    """Run pipeline configs; each writes run.trec, metrics.json, perquery.tsv and manifest.json.

    With --executor ray, corpus encoding (dense, sparse) and dense_rerank / cross_encoder scoring run on a Ray
    cluster's workers; the results are the same as a local run's, byte for byte on CPU."""
    from cascade.core.env import Context
    from cascade.core.executor import open_executor
    from cascade.pipelines.config import load_config, preflight
    from cascade.pipelines.runner import check_run_folder, run_config

    settings = executor_settings(
        executor, ray_address, workers, cpus_per_worker, gpus_per_worker, executor_batch_size, ray_timeout
    )
    loaded = [(path, load_config(path)) for path in configs]  # validate every config before any work
    named: dict[str, Path] = {}
    for path, config in loaded:  # one run folder per name: a second config of that name would replace the first's
        if config.name in named:
            first = named[config.name]
            raise CascadeError(f"name: '{config.name}' is also the name of {first}", where=str(path))
        named[config.name] = path
    for _, config in loaded:  # and never land on a user's file or folder
        check_run_folder(out / config.name)
    session = Context.open(data_dir, cache, threads, not quiet)
    for path, config in loaded:  # datasets, data: files, train: configs, upstream scores: all before any run
        preflight(config, path, session.data_dir)
    remote = open_executor(settings)
    try:
        for path, config in loaded:
            result = run_config(config, path, out, session=replace(session, executor=remote))
            measures = "  ".join(f"{k}={v:.4f}" for k, v in result.measures.items())
            hits = sum(t.cached for t in result.timings)
            typer.echo(f"{config.name}: {measures}  ({hits}/{len(result.timings)} stages cached) -> {result.folder}")
    finally:
        remote.close()


@app.command()
def estimate(
    configs: Annotated[list[Path], typer.Argument(help="Pipeline config files (YAML).")],
    data_dir: DataDir = None,
    cache: Cache = Path(".cascade"),
) -> None:
    """Before a run: what each stage finds cached and must build, with time, memory and disk estimates."""
    from cascade.core.env import Context
    from cascade.pipelines.config import load_config, preflight
    from cascade.pipelines.estimate import estimate as make_estimate
    from cascade.pipelines.estimate import estimate_text
    from cascade.pipelines.runner import open_dataset

    loaded = [(path, load_config(path)) for path in configs]
    session = Context.open(data_dir, cache, None, False)
    for path, config in loaded:
        preflight(config, path, session.data_dir)
    for _, config in loaded:
        size, lines = make_estimate(config, open_dataset(config, session.data_dir), session)
        typer.echo(estimate_text(config.name, size, lines), nl=False)


@app.command()
def verify(
    configs: Annotated[
        list[Path], typer.Argument(help="Configs with an expected: block (pipeline configs, configs/regressions/).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Keep the run folders here (default: a temp folder, removed).")
    ] = None,
    data_dir: DataDir = None,
    cache: Cache = Path(".cascade"),
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Rerun configs that carry expected scores; print the regression matrix (as Anserini's regressions).

    Each expected figure is one row: OK within its tolerance, OKISH within 1.5x of it, FAIL beyond.

    Runs are cached as `cascade run`'s are; a fresh --cache reruns everything.

    Exit code 0: every row is OK or OKISH. 1: a row FAILed. 2: bad input (a config that does not load or has no
    expected: block).
    """
    from cascade.core.env import Context
    from cascade.pipelines.verify import failed, matrix_text
    from cascade.pipelines.verify import verify as run_verify

    def show(checked) -> None:
        statuses = [row.status for row in checked.rows]
        worst = next((s for s in ("FAIL", "OKISH") if s in statuses), "OK")
        typer.echo(f"verify: {checked.target.name}: {worst} ({len(statuses)} figures)", err=True)

    session = Context.open(data_dir, cache, threads, not quiet)
    checked = run_verify(configs, out, session, on_checked=show)
    typer.echo(matrix_text(checked), nl=False)
    if failed(checked):
        raise typer.Exit(1)


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(help="Sweep config (YAML): a base config and a grid, or configs.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where sweep folders go.", callback=_out_folder)] = (
        Path("sweeps")
    ),
    data_dir: DataDir = None,
    cache: Cache = Path(".cascade"),
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Run a grid of query-time knobs; write the efficiency-effectiveness table, Pareto frontier and plot."""
    from cascade.pipelines.sweep import run_sweep

    def show(row: dict) -> None:
        latency = "–" if row["latency_ms"] is None else f"{row['latency_ms']:.3f} ms"
        accuracy = "–" if row["accuracy@10"] is None else f"{row['accuracy@10']:.4f}"
        measures = "  ".join(f"{k}={v:.4f}" for k, v in row["measures"].items())
        typer.echo(f"{row['name']}: {measures}  accuracy@10={accuracy}  latency={latency}")

    folder, _ = run_sweep(
        config,
        out,
        data_dir=data_dir,
        cache_dir=cache,
        threads=threads,
        progress=not quiet,
        on_point=show,
    )
    typer.echo(f"sweep: {folder / 'sweep.md'}  {folder / 'sweep.png'}")


@app.command()
def suite(
    config: Annotated[Path, typer.Argument(help="Suite config (YAML), e.g. configs/suites/negation.yaml.")],
    pipelines: Annotated[
        list[Path], typer.Option("--pipelines", "-p", help="Pipeline configs to evaluate (repeatable; globs expand).")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where suite run folders go (OUT/SUITE/TASK/PIPELINE).", callback=_out_folder),
    ] = Path("runs/suites"),
    data_dir: DataDir = None,
    cache: Cache = Path(".cascade"),
    threads: Threads = None,
    quiet: Quiet = False,
    executor: ExecutorKind = "local",
    ray_address: RayAddress = None,
    workers: Workers = None,
    cpus_per_worker: CpusPerWorker = 1.0,
    gpus_per_worker: GpusPerWorker = 0.0,
    executor_batch_size: ExecutorBatch = 512,
    ray_timeout: RayTimeout = 20.0,
) -> None:
    """Run every pipeline under each protocol of a suite (negation, instruction, extrapolation, msmarco)."""
    from cascade.core.env import Context
    from cascade.core.executor import open_executor
    from cascade.pipelines.suites import outcome_line, run_suite

    settings = executor_settings(
        executor, ray_address, workers, cpus_per_worker, gpus_per_worker, executor_batch_size, ray_timeout
    )
    session = Context.open(data_dir, cache, threads, not quiet)
    paths = _expand(pipelines)
    remote = open_executor(settings)
    try:
        session = replace(session, executor=remote)
        run_suite(config, paths, out, session, on_result=lambda o: typer.echo(outcome_line(o)))
    finally:
        remote.close()


def _expand(paths: list[Path]) -> list[Path]:
    """Shell-style globs in --pipelines also work when the shell did not expand them (e.g. from make)."""
    import glob

    out: list[Path] = []
    for path in paths:
        matches = sorted(glob.glob(str(path))) if any(c in str(path) for c in "*?[") else [str(path)]
        if not matches:
            raise CascadeError(f"--pipelines: no config matches {str(path)!r}")
        out += [Path(m) for m in matches]
    return list(dict.fromkeys(out))


app.command("eval")(eval_command)
app.command()(leaderboard)
app.command()(compare)


@app.command()
def train(
    kind: Annotated[str, typer.Argument(help="What to train: ltr or cross-encoder (must match the config's kind).")],
    config: Annotated[Path, typer.Argument(help="Training config (YAML).")],
    data_dir: DataDir = None,
    cache: Annotated[
        Path,
        typer.Option(help="Artifacts folder (models: models/).", envvar="CASCADE_CACHE", callback=_cache_folder),
    ] = Path(".cascade"),
    threads: Annotated[int | None, typer.Option(help="Threads (default: all cores).", callback=_threads)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Train the model a training config describes (once: it is stored under its content address)."""
    from cascade.core.env import Context
    from cascade.pipelines.train import ensure_trained, read_training_config

    data, _ = read_training_config(config)
    if data["kind"] != kind:
        raise CascadeError(f"kind: the config trains {data['kind']!r}, not {kind!r}", where=str(config))
    env = Context.open(data_dir, cache, threads, not quiet)
    typer.echo(f"{kind}: {ensure_trained(config, env)}")


@app.command()
def datasets(data_dir: DataDir = None) -> None:
    """List the registered datasets and whether each is available here."""
    from cascade.eval.datasets import availability

    for name, ok, note in availability(data_dir):
        typer.echo(f"{name:28s} {'yes' if ok else 'no ':3s}  {note}")


# Errors of the disk rather than of cascade: out of space or quota, read-only, not permitted.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def main() -> None:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except CascadeError as exc:
        typer.echo(f"cascade: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("cascade: interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # the last resort for a full or read-only disk: the path and the reason, one line
        if exc.errno not in DISK_ERRNOS:
            raise
        where = exc.filename if exc.filename is not None else "cascade"
        typer.echo(f"cascade: error: {where}: {exc.strerror or os.strerror(exc.errno)}", err=True)
        sys.exit(2)
    except Exception as exc:
        import click
        from typer._click.exceptions import ClickException as TyperClickException

        if isinstance(exc, click.exceptions.Abort | typer.Abort):
            typer.echo("cascade: interrupted", err=True)
            sys.exit(130)
        if isinstance(exc, click.ClickException | TyperClickException):  # typer 0.29 vendors its own click
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Exit | typer.Exit):
            sys.exit(exc.exit_code)
        raise
    if code == 130:  # typer turns KeyboardInterrupt into a return value when not standalone
        typer.echo("cascade: interrupted", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
