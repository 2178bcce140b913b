"""`cascade compare` output: the statistics of a few runs as plain-text tables for a terminal."""

from __future__ import annotations

from cascade.eval.report import fmt
from cascade.eval.report.board import Section
from cascade.eval.stats import CORRECTIONS


def _table(head: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def compare_text(section: Section) -> str:
    """Per measure: every run's mean with its CI, then each comparison with effect size, W/T/L and p-values."""
    config = section.analysis.config
    corr = CORRECTIONS[config.correction]
    level = round(config.confidence * 100)
    out = [
        f"{section.dataset} · " + fmt.section_note(section, config),
        fmt.method_note(config, section.aligned.missing),
        "",
    ]
    for measure in section.measures:
        out.append(f"== {measure}")
        rows = []
        for run in section.runs:
            interval = section.mean(run, measure)
            ci = "–" if interval is None else f"[{fmt.num(interval.low)}, {fmt.num(interval.high)}]"
            role = "baseline" if run is section.baseline else ""
            rows.append([run.label, fmt.coverage(section, run.label), fmt.num(interval and interval.mean), ci, role])
        out += _table(["run", "queries", "mean", f"{level}% CI", ""], rows)
        out.append("")
        pairs = [p for p in section.analysis.pairs if p.measure == measure]
        if pairs:
            rows = []
            for p in pairs:
                mark = {1: fmt.BETTER, -1: fmt.WORSE}.get(p.significant(config.alpha), "")
                rows.append(
                    [
                        f"{p.system} vs {p.baseline}",
                        fmt.num(p.diff.mean),
                        f"[{fmt.num(p.diff.low)}, {fmt.num(p.diff.high)}]",
                        fmt.num(p.effect, 3),
                        f"{p.wins}/{p.ties}/{p.losses}",
                        fmt.pvalue(p.p_t),
                        fmt.pvalue(p.p_t_adj),
                        fmt.pvalue(p.p_perm),
                        fmt.pvalue(p.p_perm_adj),
                        mark,
                    ]
                )
            head = ["comparison", "Δ mean", f"{level}% CI of Δ", "d_z", "W/T/L", "p t", f"p t {config.correction}"]
            head += ["p rand", f"p rand {config.correction}", ""]
            out += _table(head, rows)
            out.append(f"({corr} over {len(pairs)} comparison{'s' * (len(pairs) != 1)} for {measure})")
            out.append("")
    return "\n".join(out).rstrip() + "\n"
