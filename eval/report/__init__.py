"""Reports rebuilt from run folders alone: a Markdown leaderboard, a static HTML site, `cascade compare` tables.

- `runs`: reading run folders (grouped by config hash);  `board`: sections and their statistics (`cascade.eval.stats`);
- `pool`: runs of one pipeline on two datasets (DL19, DL20) as one run, for the pooled sections (`--pool`);
- `markdown`, `html` (+ `plot`, `assets/`), `terminal`: the three renderings;  `fmt`: shared wording and formats.
"""

from __future__ import annotations

from pathlib import Path

from cascade.core.atomic import write_text
from cascade.eval.report.board import Board, ReportOptions, Section, build_board, compare_section
from cascade.eval.report.html import write_site
from cascade.eval.report.markdown import leaderboard_markdown
from cascade.eval.report.runs import RunInfo, collect_runs, read_run_folder

__all__ = [
    "Board",
    "ReportOptions",
    "RunInfo",
    "Section",
    "build_board",
    "collect_runs",
    "compare_section",
    "read_run_folder",
    "write_leaderboard",
]


def write_leaderboard(
    root: str | Path,
    out: str | Path | None = None,
    options: ReportOptions | None = None,
    *,
    html_dir: str | Path | None = None,
) -> tuple[Path, str, Board]:
    """Markdown of every run under `root`, written to `out` (default `root/leaderboard.md`), and the HTML site."""
    root = Path(root)
    board = build_board(collect_runs(root), options or ReportOptions())
    text = leaderboard_markdown(board)
    target = Path(out) if out else root / "leaderboard.md"
    write_text(target, text)
    if html_dir is not None:
        write_site(board, html_dir)
    return target, text, board
