"""The Markdown leaderboard: one table per suite and dataset, and its embedding in the README."""

from __future__ import annotations

import html
from pathlib import Path

from cascade.core.atomic import write_text
from cascade.core.errors import CascadeError
from cascade.eval.report import fmt
from cascade.eval.report.board import Board, Section

README_START = "<!-- leaderboard:start -->"
README_END = "<!-- leaderboard:end -->"


def md(text: object) -> str:
    """Dataset and config text inside a table cell: no HTML, no column breaks."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def section_table(section: Section, alpha: float) -> list[str]:
    measures, extra, refs = section.measures, section.summary_keys, section.references
    head = ["pipeline", "queries", *measures, *extra, f"W/T/L {section.primary}"]
    head += [fmt.versus_head(section, ref) for ref in refs] + ["ms/query", "ms/query by stage"]
    lines = [
        "| " + " | ".join(md(h) for h in head) + " |",
        "|---|---:|" + "---:|" * (len(measures) + len(extra) + len(refs) + 2) + "---|",
    ]
    for run in section.runs:
        cells = [md(run.label), fmt.coverage(section, run.label)]
        for measure in measures:
            pair = section.pair(run, measure)
            mark = fmt.marker(pair, alpha)
            cells.append(fmt.mean_pm(section.mean(run, measure)) + (f" {mark}" if mark else ""))
        cells += [md(fmt.summary_value(run.summary.get(key))) for key in extra]
        cells.append("baseline" if run is section.baseline else fmt.wtl(section.pair(run, section.primary)))
        cells += [fmt.versus(section, run, ref) for ref in refs]
        cells.append(fmt.ms(run.ms_per_query))
        cells.append(md(fmt.stage_ms(run.stage_ms)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def leaderboard_markdown(board: Board, level: int = 1, title: str | None = "Leaderboard") -> str:
    """The whole board; `level` is the heading level of the title (suites one below, datasets two below)."""
    if not board.sections:
        return "No runs found.\n"
    config = board.options.stats
    out: list[str] = []
    if title:
        out += [f"{'#' * level} {title}", ""]
    out += [fmt.method_note(config, board.options.missing), ""]
    for suite in board.suites:
        out += [f"{'#' * (level + 1)} Suite: {md(suite)}", ""]
        for section in (s for s in board.sections if s.suite == suite):
            out += [f"{'#' * (level + 2)} {md(section.dataset)}", ""]
            out += [md(fmt.section_note(section, config)), ""]
            out += section_table(section, config.alpha)
            out.append("")
    return "\n".join(out)


def embed(text: str, body: str, where: str = "README") -> str:
    """Replace what lies between the leaderboard markers; everything else in `text` stays as it was."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise CascadeError(f"no '{README_START}' ... '{README_END}' markers", where=where)
    return text[: start + len(README_START)] + "\n" + body.rstrip("\n") + "\n" + text[end:]


def write_readme(path: str | Path, body: str) -> None:
    write_text(path, embed(check_readme(path), body, where=str(path)))


def check_readme(path: str | Path) -> str:
    """The file's text, if it has the markers: called before any work, so a bad --readme fails fast."""
    path = Path(path)
    if not path.is_file():
        raise CascadeError("file not found", where=str(path))
    text = path.read_text(encoding="utf-8")
    embed(text, "", where=str(path))
    return text
