"""The `cascade` command. Heavy libraries are imported inside commands so `cascade --help` starts fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from eval.errors import CascadeError

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


@app.command()
def run(
    configs: Annotated[list[Path], typer.Argument(help="Pipeline config files (YAML).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where run folders go.")] = Path("runs"),
    data_dir: DataDir = None,
    cache: Annotated[Path, typer.Option(help="Cache of indexes and stage outputs.", envvar="CASCADE_CACHE")] = Path(
        ".cascade"
    ),
    threads: Annotated[int | None, typer.Option(help="Threads for search (default: all cores).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run pipeline configs; each writes run.trec, metrics.json, perquery.tsv and manifest.json."""
    from pipelines.config import load_config
    from pipelines.runner import run_config

    loaded = [(path, load_config(path)) for path in configs]  # validate every config before any work
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


@app.command("eval")
def eval_command(
    qrels: Annotated[Path, typer.Argument(help="Qrels: TREC (qid iter docno label) or BEIR TSV.")],
    runs: Annotated[list[Path], typer.Argument(help="TREC run files.")],
    measure: Annotated[
        list[str] | None, typer.Option("--measure", "-m", help="ir_measures name, e.g. nDCG@10 (repeatable).")
    ] = None,
    per_query: Annotated[bool, typer.Option("--per-query", help="Print per-query values too.")] = False,
) -> None:
    """Score TREC runs against qrels with ir_measures."""
    from eval.frames import read_qrels, read_run
    from eval.measures import DEFAULT_MEASURES, evaluate, parse_measures

    measures = parse_measures(measure or list(DEFAULT_MEASURES), where="--measure")
    judged = read_qrels(qrels)
    parsed = [(path, read_run(path)) for path in runs]
    names = [str(m) for m in measures]
    typer.echo("run\t" + "\t".join(names))
    for path, run_frame in parsed:
        aggregate, perquery = evaluate(run_frame, judged, measures)
        typer.echo(f"{path}\t" + "\t".join(f"{aggregate[n]:.4f}" for n in names))
        if per_query:
            for row in perquery.itertuples(index=False):
                typer.echo(f"{path}\t{row.qid}\t{row.measure}\t{row.value:.4f}")


@app.command()
def leaderboard(
    runs_dir: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs"),
    out: Annotated[Path | None, typer.Option(help="Markdown file (default: RUNS_DIR/leaderboard.md).")] = None,
) -> None:
    """Write and print a Markdown table of every run under RUNS_DIR."""
    from eval.report import write_leaderboard

    target, text = write_leaderboard(runs_dir, out)
    typer.echo(text)
    typer.echo(f"(written to {target})", err=True)


@app.command()
def datasets(data_dir: DataDir = None) -> None:
    """List the registered datasets and whether each is available here."""
    from eval.datasets import availability

    for name, ok, note in availability(data_dir):
        typer.echo(f"{name:28s} {'yes' if ok else 'no ':3s}  {note}")


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
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.Abort):
            typer.echo("cascade: interrupted", err=True)
            sys.exit(130)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
    if code == 130:  # typer turns KeyboardInterrupt into a return value when not standalone
        typer.echo("cascade: interrupted", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
