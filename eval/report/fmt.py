"""Number formats and the sentences every report repeats, so Markdown, HTML and terminal say the same thing."""

from __future__ import annotations

import math

from cascade.eval.report.board import Board, Section
from cascade.eval.report.runs import RunInfo
from cascade.eval.stats import CORRECTIONS, Interval, PairResult, StatsConfig

BETTER, WORSE = "▲", "▼"


def num(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "–" if value is None or math.isnan(value) else ("∞" if value > 0 else "-∞")
    return f"{value:.{digits}f}"


def pvalue(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def half_width(interval: Interval) -> float:
    return (interval.high - interval.low) / 2


def mean_pm(interval: Interval | None) -> str:
    """`mean ± half-width of the CI` (the bounds themselves may be asymmetric; the HTML shows them)."""
    if interval is None:
        return "–"
    if not math.isfinite(interval.low):
        return num(interval.mean)
    return f"{num(interval.mean)} ± {num(half_width(interval), 3)}"


def marker(pair: PairResult | None, alpha: float) -> str:
    if pair is None:
        return ""
    return {1: BETTER, -1: WORSE}.get(pair.significant(alpha), "")


def stage_ms(stages: list[tuple[str, float]]) -> str:
    return " + ".join(f"{name} {ms(value)}" for name, value in stages) or "–"


def wtl(pair: PairResult | None) -> str:
    return "–" if pair is None else f"{pair.wins}/{pair.ties}/{pair.losses}"


def method_note(config: StatsConfig, missing: str) -> str:
    """What the numbers are, in one paragraph: tests, correction, intervals, seed and the missing-query rule."""
    correction = CORRECTIONS[config.correction]
    level = round(config.confidence * 100)
    rule = "scored 0" if missing == "zero" else "refused"
    return (
        f"Means over each dataset's queries with {level}% bootstrap confidence intervals (percentile, "
        f"{config.resamples:,} resamples of the queries, seed {config.seed}); ± is half the interval's width. "
        f"{BETTER}/{WORSE}: better/worse than the section's baseline by a two-sided paired randomization test "
        f"({config.permutations:,} random sign flips, seed {config.seed}), p < {config.alpha} after "
        f"{correction} correction over the comparisons of each measure; paired t-tests are reported too. "
        f"W/T/L: queries won, tied and lost against the baseline. Queries a run has no value for are {rule} "
        f"(--missing {missing}). ms/query comes from each run's manifest."
    )


def section_note(section: Section, config: StatsConfig) -> str:
    """The header line of a section: queries, baseline, the size of each correction's family, missing queries."""
    parts = [f"{section.aligned.queries} queries", *([section.pooled_from] if section.pooled_from else [])]
    if len(section.runs) < 2:
        parts.append("one run: nothing to compare")
    elif section.baseline is not None:
        parts.append(f"baseline: {section.baseline.label} ({section.baseline_note})")
        parts.append(f"{CORRECTIONS[config.correction]} over {family_text(section)}")
    parts.append(section.aligned.note() + (f" {section.left_out}" if section.left_out else ""))
    return " · ".join(parts)


def family_text(section: Section) -> str:
    """`3 comparisons per measure`, and with --reference runs how many the reference measure's family has."""
    family = section.analysis.family_size(section.primary)
    if section.reference_measure == section.primary:
        family -= section.reference_pairs
    text = f"{family} comparison{'s' * (family != 1)} per measure"
    if not section.references:
        return text
    total = section.analysis.family_size(section.reference_measure)
    names = ", ".join(r.label for r in section.references)
    against = f"reference{'s' * (len(section.references) != 1)} {names}"
    return f"{text}, {total} for {section.reference_measure} with the {section.reference_pairs} against the {against}"


def versus(section: Section, run: RunInfo, reference: RunInfo) -> str:
    """A reference column's cell: Δ of the reference measure (run minus reference) and its corrected p-value."""
    if run is reference:
        return "reference"
    pair = section.versus(run, reference)
    if pair is None:
        return "–"
    return f"{pair.diff.mean:+.4f} ({pvalue(pair.p_perm_adj)})"


def versus_head(section: Section, reference: RunInfo) -> str:
    return f"Δ {section.reference_measure} vs {reference.label} (p)"


def coverage(section: Section, label: str) -> str:
    return f"{section.aligned.coverage.get(label, 0)}/{section.aligned.queries}"


def board_sentence(board: Board) -> str:
    runs = sum(len(s.runs) for s in board.sections)
    return f"{runs} run{'s' * (runs != 1)} in {len(board.sections)} section{'s' * (len(board.sections) != 1)}"


def summary_value(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return num(value)
    return str(value)
