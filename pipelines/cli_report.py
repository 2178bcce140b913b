"""The report commands of the CLI: `cascade eval`, `leaderboard` and `compare` (registered in `cli`).

Like the other commands, each imports the floor it runs inside its function, so `cascade --help` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cascade.core.errors import CascadeError
from cascade.pipelines.cli_options import _folder

if TYPE_CHECKING:
    from cascade.eval.report import ReportOptions


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
    from cascade.eval.measures import DEFAULT_MEASURES, coverage_note, evaluate, parse_measures
    from cascade.eval.runs import read_run
    from cascade.eval.topics import read_qrels

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
    baselines: list[str],
    measures: list[str] | None,
    correction: str,
    missing: str,
    seed: int,
    *,
    pools: list[str] | None = None,
    references: list[str] | None = None,
    **kw: bool,
) -> ReportOptions:
    """Options checked up front, so a bad choice is a one-line error before any work."""
    from cascade.eval.align import MISSING_CHOICES
    from cascade.eval.report import ReportOptions
    from cascade.eval.report.pool import parse_pools
    from cascade.eval.stats import CORRECTIONS, StatsConfig

    if correction not in CORRECTIONS:
        raise CascadeError(f"--correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")
    if missing not in MISSING_CHOICES:
        raise CascadeError(f"--missing must be one of {', '.join(MISSING_CHOICES)}, not {missing!r}")
    if not 0 <= seed <= SEED_MAX:
        raise CascadeError(f"--seed must be between 0 and {SEED_MAX}, not {seed}")
    stats = StatsConfig(seed=seed, correction=correction)
    extra = {"pools": parse_pools(pools or []), "references": tuple(references or ())}
    return ReportOptions(tuple(baselines), missing, stats, tuple(measures or ()), **kw, **extra)


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
    pool: Annotated[
        list[str] | None,
        typer.Option(
            help="Datasets A+B whose runs also pool pairwise (dl19-X with dl20-X, as dl19+dl20-X) into one more "
            "section per qrels (across suites), e.g. 'msmarco-passage/dl19+msmarco-passage/dl20' (repeatable)."
        ),
    ] = None,
    reference: Annotated[
        list[str] | None,
        typer.Option(
            help="A run name or glob every run is also tested against on nDCG@10, besides the baseline: one more "
            "column, corrected together with the baseline comparisons (repeatable)."
        ),
    ] = None,
) -> None:
    """Write and print the leaderboard of every run under RUNS_DIR, with significance tests against a baseline."""
    from cascade.eval.report import write_leaderboard

    options = _report_options(baseline or [], measure, correction, missing, seed, pools=pool, references=reference)
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

        runs = [m for section in board.sections for r in section.runs for m in (r.members or [r])]  # pooled: members
        commits = sorted({str((r.manifest.get("git") or {}).get("commit"))[:12] for r in runs})
        now = git_commit()
        stamp = (
            f"_Generated by `make leaderboard` from the run folders at commit `{str(now['commit'])[:12]}`"
            f"{' (with uncommitted changes)' if now['dirty'] else ''}; runs made at commit "
            f"{', '.join(f'`{c}`' for c in commits)}. Do not edit by hand._"
        )
        write_readme(readme, stamp + "\n\n" + leaderboard_markdown(board, level=2, title=None))
        typer.echo(f"(leaderboard embedded in {readme})", err=True)


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
