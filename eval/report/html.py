"""The HTML report: one static, self-contained page (inline CSS, JS and SVG), readable offline or published as is.

Every piece of text that comes from a dataset, a config or a manifest goes through `esc`. A Content-Security-Policy
allows only this page's own script (by hash) and no network at all, so even a missed escape could not run code.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from importlib import resources
from pathlib import Path

from cascade.core.atomic import write_text
from cascade.eval.report import fmt
from cascade.eval.report.board import Board, Section
from cascade.eval.report.markdown import leaderboard_markdown
from cascade.eval.report.plot import Point, efficiency_plot
from cascade.eval.report.runs import RunInfo
from cascade.eval.stats import CORRECTIONS
from cascade.eval.topdocs import read_topdocs


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _asset(name: str) -> str:
    return resources.files("cascade.eval.report").joinpath("assets", name).read_text(encoding="utf-8")


def _slug(text: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "suite"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug


def _cell(text: str, sort: object = None, cls: str = "") -> str:
    value = "" if sort is None else f' data-v="{esc(sort)}"'
    klass = f' class="{cls}"' if cls else ""
    return f"<td{klass}{value}>{text}</td>"


def _th(text: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<th scope="col"{klass}>{esc(text)}</th>'


def _num_sort(value: float | None) -> str:
    return "" if value is None or value != value or value in (float("inf"), float("-inf")) else repr(float(value))


def _leaderboard_table(section: Section, alpha: float) -> str:
    extra, refs = section.summary_keys, section.references
    head = ["pipeline", "queries", *section.measures, *extra, f"W/T/L {section.primary}"]
    head += [fmt.versus_head(section, ref) for ref in refs] + ["ms/query", "ms/query by stage"]
    classes = ["text", "", *[""] * len(section.measures), *[""] * len(extra), "", *[""] * len(refs), "", "text"]
    rows = []
    for run in section.runs:
        is_base = run is section.baseline
        cells = [
            _cell(esc(run.label) + (' <span class="tag">baseline</span>' if is_base else ""), run.label, "text"),
            _cell(esc(fmt.coverage(section, run.label)), section.aligned.coverage.get(run.label, 0)),
        ]
        for measure in section.measures:
            interval, pair = section.mean(run, measure), section.pair(run, measure)
            if interval is None:
                cells.append(_cell("–", ""))
                continue
            mark = fmt.marker(pair, alpha)
            mark_html = f' <span class="{"better" if mark == fmt.BETTER else "worse"}">{mark}</span>' if mark else ""
            ci = f'<span class="ci">[{fmt.num(interval.low, 3)}, {fmt.num(interval.high, 3)}]</span>'
            cells.append(_cell(f"{fmt.num(interval.mean)} {ci}{mark_html}", _num_sort(interval.mean)))
        for key in extra:
            value = run.summary.get(key)
            sort = _num_sort(value) if isinstance(value, int | float) else fmt.summary_value(value)
            cells.append(_cell(esc(fmt.summary_value(value)), sort))
        pair = section.pair(run, section.primary)
        cells.append(_cell("baseline" if is_base else esc(fmt.wtl(pair)), "" if pair is None else pair.wins))
        for ref in refs:
            versus = section.versus(run, ref)
            cells.append(
                _cell(esc(fmt.versus(section, run, ref)), "" if versus is None else _num_sort(versus.diff.mean))
            )
        cells.append(_cell(esc(fmt.ms(run.ms_per_query)), _num_sort(run.ms_per_query)))
        cells.append(_cell(esc(fmt.stage_ms(run.stage_ms)), fmt.stage_ms(run.stage_ms), "text"))
        rows.append(('<tr class="is-baseline">' if is_base else "<tr>") + "".join(cells) + "</tr>")
    header = "".join(_th(h, c) for h, c in zip(head, classes, strict=True))
    return (
        f'<div class="table-wrap"><table class="sortable leaderboard"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _stats_table(section: Section, alpha: float) -> str:
    analysis = section.analysis
    if not analysis.pairs:
        return '<p class="note">No comparisons: this section has a single run.</p>'
    corr = CORRECTIONS[analysis.config.correction]
    head = [
        ("pipeline", "text"),
        ("reference", "text"),
        ("measure", "text"),
        ("Δ mean", ""),
        (f"{round(analysis.config.confidence * 100)}% CI of Δ", ""),
        ("effect d_z", ""),
        ("W/T/L", ""),
        ("t", ""),
        ("p t-test", ""),
        ("p t-test adj.", ""),
        ("p rand.", ""),
        ("p rand. adj.", ""),
    ]
    rows = []
    for p in analysis.pairs:
        mark = {1: "better", -1: "worse"}.get(p.significant(alpha), "")
        delta = f'<span class="{mark}">{fmt.num(p.diff.mean)}</span>' if mark else fmt.num(p.diff.mean)
        rows.append(
            "<tr>"
            + _cell(esc(p.system), p.system, "text")
            + _cell(esc(p.baseline), p.baseline, "text")
            + _cell(esc(p.measure), p.measure, "text")
            + _cell(delta, _num_sort(p.diff.mean))
            + _cell(f"[{fmt.num(p.diff.low)}, {fmt.num(p.diff.high)}]", _num_sort(p.diff.low))
            + _cell(fmt.num(p.effect, 3), _num_sort(p.effect))
            + _cell(f"{p.wins}/{p.ties}/{p.losses}", p.wins)
            + _cell(fmt.num(p.t, 3), _num_sort(p.t))
            + _cell(fmt.pvalue(p.p_t), _num_sort(p.p_t))
            + _cell(fmt.pvalue(p.p_t_adj), _num_sort(p.p_t_adj))
            + _cell(fmt.pvalue(p.p_perm), _num_sort(p.p_perm))
            + _cell(fmt.pvalue(p.p_perm_adj), _num_sort(p.p_perm_adj))
            + "</tr>"
        )
    header = "".join(_th(h, c) for h, c in head)
    family = analysis.family_size(section.primary)
    over = f"the {family} comparisons of each measure" if not section.references else esc(fmt.family_text(section))
    return (
        f"<p class='note'>Δ: pipeline minus reference, per query. rand.: paired randomization test "
        f"({analysis.config.permutations:,} sign flips). adj.: {esc(corr)} over {over}. "
        f"Coloured Δ: significant after correction (randomization test, p &lt; {analysis.config.alpha}).</p>"
        f'<div class="table-wrap"><table class="sortable stats"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _plot(section: Section) -> str:
    points = []
    for run in section.runs:
        interval = section.mean(run, section.primary)
        if interval is None or run.ms_per_query is None:
            continue
        points.append(Point(run.label, run.ms_per_query, interval.mean, run is section.baseline))
    if not points:
        return '<p class="note">No timings in the manifests: nothing to plot.</p>'
    title = f"{section.dataset}: {section.primary} against ms/query"
    return (
        f"<figure>{efficiency_plot(points, section.primary, title)}<figcaption>Each point is a run: mean "
        f"{esc(section.primary)} against the total ms/query of its stages (from the manifests). Highlighted: the "
        "Pareto frontier, the runs no other run beats on both speed and effectiveness.</figcaption></figure>"
    )


def _docs(record: dict | None, title: str) -> str:
    if not record or not record.get("docs"):
        return f"<div><h6>{esc(title)}</h6><p class='note'>No top documents recorded for this query.</p></div>"
    items = []
    for doc in record["docs"]:
        label = doc.get("label")
        judged = "unjudged" if label is None else f"label {label}"
        text = doc.get("text")
        body = '<span class="note">(text not in the corpus)</span>' if text is None else esc(text)
        items.append(
            f"<li><code>{esc(doc.get('docno'))}</code> <span class='tag'>{esc(judged)}</span> "
            f"<span class='tag'>score {esc(fmt.num(doc.get('score'), 3))}</span> "
            f"<div class='snippet'>{body}</div></li>"
        )
    return f"<div><h6>{esc(title)}</h6><ol>{''.join(items)}</ol></div>"


def _topdocs(run: RunInfo, qids: set[str]) -> dict[str, dict]:
    """The recorded top documents of these queries; a pooled run's are in its members' folders."""
    out: dict[str, dict] = {}
    for folder in run.folders:
        out.update(read_topdocs(folder / "topdocs.jsonl", qids))
    return out


def _drilldown(section: Section, n: int) -> str:
    if section.baseline is None:
        return ""
    base = section.baseline
    chosen = {run.label: section.drilldown(run, n) for run in section.runs if run is not base}
    everything = {q for gains, losses in chosen.values() for q, _, _ in gains + losses}
    theirs = _topdocs(base, everything) if everything else {}  # read once
    blocks = []
    for run in section.runs:
        if run is base:
            continue
        gains, losses = chosen[run.label]
        wanted = {q for q, _, _ in gains + losses}
        mine = _topdocs(run, wanted) if wanted else {}
        parts = []
        for heading, rows in (("Largest gains", gains), ("Largest losses", losses)):
            parts.append(f"<h5>{heading}</h5>")
            if not rows:
                parts.append("<p class='note'>None.</p>")
            for qid, before, after in rows:
                record = mine.get(qid) or theirs.get(qid) or {}
                query = record.get("query")
                change = after - before
                parts.append(
                    f"<div class='query'><p><code>{esc(qid)}</code> {esc(query) if query else ''} · "
                    f"{esc(section.primary)} {fmt.num(before)} → {fmt.num(after)} "
                    f"<span class='{'better' if change > 0 else 'worse'}'>({change:+.4f})</span></p>"
                    f"<div class='docs'>{_docs(theirs.get(qid), f'{base.label} (baseline)')}"
                    f"{_docs(mine.get(qid), run.label)}</div></div>"
                )
        blocks.append(
            f"<details class='drill'><summary>{esc(run.label)} against {esc(base.label)} on "
            f"{esc(section.primary)}: {len(gains)} gains, {len(losses)} losses</summary>{''.join(parts)}</details>"
        )
    return "".join(blocks)


def _facts(run: RunInfo) -> str:
    manifest, git = run.manifest, run.manifest.get("git") or {}
    commit = git.get("commit") or "unknown"
    rows = [
        ("pooled from" if run.members else "folder", " + ".join(map(str, run.folders))),
        ("same config also in", ", ".join(map(str, run.copies)) or "–"),
        ("config hash", run.config_hash or "–"),
        ("pipeline", manifest.get("pipeline", "–")),
        ("dataset", run.dataset),
        ("seed", manifest.get("seed", "–")),
        ("commit", f"{commit}{' (uncommitted changes)' if git.get('dirty') else ''}"),
        ("created", manifest.get("created", "–")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items() if v) or "–"),
    ]
    facts = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    config = json.dumps(run.config, indent=2, ensure_ascii=False, sort_keys=False)
    manifest_text = json.dumps(manifest, indent=2, ensure_ascii=False, default=str)
    summary = (
        f"{run.label} · config {(run.config_hash or '–')[:12]} · commit {commit[:10]} · seed {manifest.get('seed')}"
    )
    return (
        f"<details class='run'><summary>{esc(summary)}</summary><dl class='facts'>{facts}</dl>"
        f"<h5>config.json</h5><pre>{esc(config)}</pre><h5>manifest.json</h5><pre>{esc(manifest_text)}</pre></details>"
    )


def _section(section: Section, board: Board) -> str:
    alpha = board.options.stats.alpha
    parts = [
        f"<article class='dataset' id='{esc(section.anchor)}'><h3>{esc(section.dataset)}</h3>",
        f"<p class='note'>{esc(fmt.section_note(section, board.options.stats))}</p>",
        _leaderboard_table(section, alpha),
        "<h4>Efficiency and effectiveness</h4>",
        _plot(section),
        "<h4>Statistics</h4>",
        _stats_table(section, alpha),
    ]
    drill = _drilldown(section, board.options.drilldown)
    if drill:
        parts += ["<h4>Per-query drill-down</h4>", drill]
    parts += ["<h4>Runs: config and manifest</h4>", *(_facts(r) for r in section.runs), "</article>"]
    return "".join(parts)


def leaderboard_html(board: Board, title: str = "cascade leaderboard") -> str:
    """The whole page as one string."""
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:"
    taken: set[str] = set()
    ids = {suite: _slug(f"suite-{suite}", taken) for suite in board.suites}
    tabs = "".join(
        f'<button role="tab" id="tab-{ids[s]}" aria-controls="{ids[s]}" aria-selected="{"true" if not i else "false"}">'
        f"{esc(s)}</button>"
        for i, s in enumerate(board.suites)
    )
    panels = []
    for suite in board.suites:
        sections = "".join(_section(s, board) for s in board.sections if s.suite == suite)
        panels.append(
            f'<section role="tabpanel" id="{ids[suite]}" aria-labelledby="tab-{ids[suite]}">'
            f"<h2>Suite: {esc(suite)}</h2>{sections}</section>"
        )
    body = "".join(panels) if panels else "<p>No runs found.</p>"
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_asset('report.css')}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p class='meta'>{esc(fmt.board_sentence(board))}, rebuilt from the run "
        "folders alone. Click a column heading to sort.</p>"
        f"<p class='method'>{esc(fmt.method_note(board.options.stats, board.options.missing))}</p></header>"
        f'<nav role="tablist" aria-label="Suites">{tabs}</nav><main>{body}</main>'
        f"<script>{script}</script></body></html>\n"
    )


def write_site(board: Board, site: str | Path) -> Path:
    """`index.html` (everything inline) and `leaderboard.md` in `site`; returns the page's path."""
    site = Path(site)
    page = site / "index.html"
    write_text(page, leaderboard_html(board))
    write_text(site / "leaderboard.md", leaderboard_markdown(board))
    return page
