"""The `cascade` command. Heavy libraries are imported inside commands so `cascade --help` starts fast."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cascade.core.errors import CascadeError

if TYPE_CHECKING:
    from cascade.eval.report import ReportOptions

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Declare staged retrieval pipelines in YAML, run them, evaluate them, compare them.",
)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder of local datasets (default: $CASCADE_DATA).", show_default=False),
]


def _threads(value: int | None) -> int | None:
    """--threads is a count of threads: 0 or a negative number is an error, not 'all cores'."""
    if value is not None and value < 1:
        raise CascadeError(f"--threads: must be at least 1, not {value}")
    return value


def _folder(path: Path, option: str) -> Path:
    """An output or cache folder, checked before any work: absent or a folder, and writable where it will be made
    (its nearest existing ancestor), so a file, a read-only disk or a folder we may not write is one line."""
    probe = Path(os.path.abspath(path))
    if probe.exists() and not probe.is_dir():
        raise CascadeError(f"{option}: '{path}' is a file, not a folder")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise CascadeError(f"{option}: '{probe}' is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CascadeError(f"{option}: cannot write into '{probe}' (read-only or permission denied)")
    return path


def _out_folder(path: Path) -> Path:
    return _folder(path, "--out")


def _cache_folder(path: Path) -> Path:
    return _folder(path, "--cache")


Cache = Annotated[
    Path, typer.Option(help="Cache of indexes and stage outputs.", envvar="CASCADE_CACHE", callback=_cache_folder)
]
Threads = Annotated[int | None, typer.Option(help="Threads for search (default: all cores).", callback=_threads)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


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
) -> None:
    """Run pipeline configs; each writes run.trec, metrics.json, perquery.tsv and manifest.json."""
    from cascade.core.paths import resolve_data_dir
    from cascade.pipelines.config import load_config, preflight
    from cascade.pipelines.runner import check_run_folder, run_config

    loaded = [(path, load_config(path)) for path in configs]  # validate every config before any work
    for _, config in loaded:  # and never land on a user's file or folder
        check_run_folder(out / config.name)
    resolved = resolve_data_dir(data_dir)
    for path, config in loaded:  # datasets, data: files, train: configs, upstream scores: all before any run
        preflight(config, path, resolved)
    for path, config in loaded:
        result = run_config(
            config,
            path,
            out,
            data_dir=data_dir,
            cache_dir=cache,
            threads=threads,
            progress=not quiet and sys.stderr.isatty(),
        )
        measures = "  ".join(f"{k}={v:.4f}" for k, v in result.measures.items())
        hits = sum(t.cached for t in result.timings)
        typer.echo(f"{config.name}: {measures}  ({hits}/{len(result.timings)} stages cached) -> {result.folder}")


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
    """Rerun configs that carry expected scores and print the regression matrix (as Anserini's regressions).

    Each expected figure is one row: OK within its tolerance, OKISH within 1.5x of it, FAIL beyond. Runs are
    cached as `cascade run`'s are; a fresh --cache reruns everything. Exit code 0: every row OK or OKISH;
    1: a row FAILed; 2: bad input (e.g. a config that does not load or has no expected: block).
    """
    from cascade.core.env import Context
    from cascade.pipelines.verify import failed, matrix_text
    from cascade.pipelines.verify import verify as run_verify

    def show(checked) -> None:
        statuses = [row.status for row in checked.rows]
        worst = next((s for s in ("FAIL", "OKISH") if s in statuses), "OK")
        typer.echo(f"verify: {checked.target.name}: {worst} ({len(statuses)} figures)", err=True)

    session = Context.open(data_dir, cache, threads, not quiet and sys.stderr.isatty())
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
        progress=not quiet and sys.stderr.isatty(),
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
) -> None:
    """Run every pipeline under each protocol of a suite (negation, instruction, extrapolation, msmarco)."""
    from cascade.core.env import Context
    from cascade.pipelines.suites import outcome_line, run_suite

    session = Context.open(data_dir, cache, threads, not quiet and sys.stderr.isatty())
    run_suite(config, _expand(pipelines), out, session, on_result=lambda o: typer.echo(outcome_line(o)))


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


@app.command("eval")
def eval_command(
    qrels: Annotated[Path, typer.Argument(help="Qrels: TREC (qid iter docno label) or BEIR TSV.")],
    runs: Annotated[list[Path], typer.Argument(help="TREC run files.")],
    measure: Annotated[
        list[str] | None, typer.Option("--measure", "-m", help="ir_measures name, e.g. nDCG@10 (repeatable).")
    ] = None,
    per_query: Annotated[bool, typer.Option("--per-query", help="Print per-query values too.")] = False,
    decimals: Annotated[int, typer.Option("--decimals", help="Decimals printed (0 to 17).", min=0, max=17)] = 4,
) -> None:
    """Score TREC runs against qrels with ir_measures (ties: score, then docno, descending, as trec_eval)."""
    from cascade.core.errors import warn
    from cascade.eval.frames import read_qrels, read_run
    from cascade.eval.measures import DEFAULT_MEASURES, coverage_note, evaluate, parse_measures

    measures = parse_measures(measure or list(DEFAULT_MEASURES), where="--measure")
    judged = read_qrels(qrels)
    if judged.empty:
        raise CascadeError("the qrels hold no judgments: nothing to score against", where=str(qrels))
    parsed = [(path, read_run(path)) for path in runs]
    notes = [(path, coverage_note(run_frame, judged, where=str(path))) for path, run_frame in parsed]  # before output
    for path, note in notes:
        if note:
            warn(note, where=str(path))
    names = [str(m) for m in measures]
    typer.echo("run\t" + "\t".join(names))
    for path, run_frame in parsed:
        aggregate, perquery = evaluate(run_frame, judged, measures, where=str(path))
        typer.echo(f"{path}\t" + "\t".join(f"{aggregate[n]:.{decimals}f}" for n in names))
        if per_query:
            for row in perquery.itertuples(index=False):
                typer.echo(f"{path}\t{row.qid}\t{row.measure}\t{row.value:.{decimals}f}")


Measures = Annotated[
    list[str] | None, typer.Option("--measure", "-m", help="Only these measures (repeatable; default: all).")
]
Correction = Annotated[str, typer.Option(help="Multiple-comparison correction: holm, bonferroni or fdr_bh.")]
Missing = Annotated[str, typer.Option(help="A run missing queries: zero (they score 0) or refuse (an error).")]
Seed = Annotated[int, typer.Option(help="Seed of the bootstrap and the randomization test.")]
SEED_MAX = 2**32 - 1  # numpy's seeds are unsigned 32-bit


def _report_options(
    baselines: list[str], measures: list[str] | None, correction: str, missing: str, seed: int, **kw: bool
) -> ReportOptions:
    """Options checked up front, so a bad choice is a one-line error before any work."""
    from cascade.eval.align import MISSING_CHOICES
    from cascade.eval.report import ReportOptions
    from cascade.eval.stats import CORRECTIONS, StatsConfig

    if correction not in CORRECTIONS:
        raise CascadeError(f"--correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")
    if missing not in MISSING_CHOICES:
        raise CascadeError(f"--missing must be one of {', '.join(MISSING_CHOICES)}, not {missing!r}")
    if not 0 <= seed <= SEED_MAX:
        raise CascadeError(f"--seed must be between 0 and {SEED_MAX}, not {seed}")
    stats = StatsConfig(seed=seed, correction=correction)
    return ReportOptions(tuple(baselines), missing, stats, tuple(measures or ()), **kw)


@app.command()
def leaderboard(
    runs_dir: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="Markdown file (default: RUNS_DIR/leaderboard.md).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write a static HTML site into this folder.")] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(help="Baseline run name or glob, e.g. '*-bm25' (repeatable; default: the weakest run)."),
    ] = None,
    measure: Measures = None,
    correction: Correction = "holm",
    missing: Missing = "zero",
    seed: Seed = 42,
    readme: Annotated[
        Path | None, typer.Option(help="Also put the tables between the leaderboard markers of this file.")
    ] = None,
) -> None:
    """Write and print the leaderboard of every run under RUNS_DIR, with significance tests against a baseline."""
    from cascade.eval.report import write_leaderboard

    options = _report_options(baseline or [], measure, correction, missing, seed)
    if out is not None and out.is_dir():
        raise CascadeError(f"--out: '{out}' is a folder; give the Markdown file to write")
    if html is not None:
        _folder(html, "--html")
    if readme is not None:
        from cascade.eval.report.markdown import check_readme

        check_readme(readme)
    target, text, board = write_leaderboard(runs_dir, out, options, html_dir=html)
    typer.echo(text)
    typer.echo(f"(written to {target}{f' and {html}/index.html' if html else ''})", err=True)
    if readme is not None:
        from cascade.eval.report.markdown import leaderboard_markdown, write_readme
        from cascade.pipelines.manifest import git_commit

        runs = [r for section in board.sections for r in section.runs]
        commits = sorted({str((r.manifest.get("git") or {}).get("commit"))[:12] for r in runs})
        now = git_commit()
        stamp = (
            f"_Generated by `make leaderboard` from the run folders at commit `{str(now['commit'])[:12]}`"
            f"{' (with uncommitted changes)' if now['dirty'] else ''}; runs made at commit "
            f"{', '.join(f'`{c}`' for c in commits)}. Do not edit by hand._"
        )
        write_readme(readme, stamp + "\n\n" + leaderboard_markdown(board, level=2, title=None))
        typer.echo(f"(leaderboard embedded in {readme})", err=True)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (as `cascade run` writes them), same dataset.")],
    baseline: Annotated[Path | None, typer.Option(help="The reference run folder (default: the first).")] = None,
    measure: Measures = None,
    correction: Correction = "holm",
    all_pairs: Annotated[bool, typer.Option("--all-pairs", help="Compare every pair, not only with the baseline.")] = (
        False
    ),
    missing: Missing = "zero",
    seed: Seed = 42,
) -> None:
    """Paired t-tests, randomization tests, bootstrap CIs, effect sizes and W/T/L for a few runs."""
    from cascade.eval.report import compare_section, read_run_folder
    from cascade.eval.report.terminal import compare_text

    options = _report_options([], measure, correction, missing, seed, all_pairs=all_pairs)  # before any reading
    folders = list(dict.fromkeys(p.resolve() for p in runs))
    reference = (baseline or runs[0]).resolve()
    if reference not in folders:
        folders.insert(0, reference)
    loaded = [read_run_folder(p) for p in folders]
    base = loaded[folders.index(reference)]
    section = compare_section(loaded, base, options)
    typer.echo(compare_text(section), nl=False)


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
    env = Context.open(data_dir, cache, threads, not quiet and sys.stderr.isatty())
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
