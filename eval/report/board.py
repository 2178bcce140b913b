"""From run folders to the numbers a report shows: one section per suite and dataset, with its statistics."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from cascade.core.errors import CascadeError
from cascade.eval.align import Aligned, align
from cascade.eval.report.runs import RunInfo
from cascade.eval.stats import Analysis, Interval, PairResult, StatsConfig, analyse

PRIMARY = "nDCG@10"
# the standard suites first, in the order a reader meets them; any other suite follows by name
SUITE_ORDER = ("default", "msmarco", "negation", "instruction", "extrapolation")


@dataclass(frozen=True)
class ReportOptions:
    """The settings of a report; those that change a number are printed in it."""

    baselines: tuple[str, ...] = ()  # run names or glob patterns; a section uses the one run that matches
    missing: str = "zero"
    stats: StatsConfig = field(default_factory=StatsConfig)
    measures: tuple[str, ...] = ()  # empty: every measure the runs have
    all_pairs: bool = False
    drilldown: int = 5  # queries shown per direction (gains, losses)


@dataclass
class Section:
    """The runs of one suite on one dataset (same qrels), aligned on one query set."""

    suite: str
    dataset: str
    runs: list[RunInfo]  # best first on the primary measure
    baseline: RunInfo | None
    baseline_note: str
    measures: list[str]
    primary: str
    aligned: Aligned
    analysis: Analysis

    @property
    def anchor(self) -> str:
        return "s-" + "".join(c if c.isalnum() else "-" for c in f"{self.suite}-{self.dataset}").strip("-").lower()

    @property
    def summary_keys(self) -> list[str]:
        keys: list[str] = []
        for run in self.runs:
            keys += [k for k in run.summary if k not in keys]
        return keys

    def mean(self, run: RunInfo, measure: str) -> Interval | None:
        return self.analysis.means.get((run.label, measure))

    def pair(self, run: RunInfo, measure: str) -> PairResult | None:
        if self.baseline is None:
            return None
        return self.analysis.pair(run.label, measure, self.baseline.label)

    def drilldown(self, run: RunInfo, n: int) -> tuple[list[tuple[str, float, float]], list[tuple[str, float, float]]]:
        """The `n` queries where `run` gains most and loses most against the baseline on the primary measure.

        Each entry is (qid, baseline value, run value); queries that no run covers are left out.
        """
        if self.baseline is None or run is self.baseline:
            return [], []
        values = self.aligned.scores[run.label].get(self.primary)
        base = self.aligned.scores[self.baseline.label].get(self.primary)
        if values is None or base is None:
            return [], []
        real = len(self.aligned.qids) - self.aligned.unseen
        diff = values[:real] - base[:real]
        order = np.argsort(-diff, kind="stable")
        gains = [i for i in order[:n] if diff[i] > 0]
        losses = [i for i in np.argsort(diff, kind="stable")[:n] if diff[i] < 0]

        def rows(indices: list[int]) -> list[tuple[str, float, float]]:
            return [(self.aligned.qids[i], float(base[i]), float(values[i])) for i in indices]

        return rows(gains), rows(losses)


@dataclass
class Board:
    sections: list[Section]
    options: ReportOptions

    @property
    def suites(self) -> list[str]:
        return list(dict.fromkeys(s.suite for s in self.sections))


def _measures(runs: list[RunInfo], wanted: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for run in runs:
        found += [m for m in run.measures if m not in found]
    if wanted:
        return [m for m in wanted if m in found]
    return found


def _pick_baseline(
    runs: list[RunInfo], patterns: tuple[str, ...], means: dict[str, float], primary: str
) -> tuple[RunInfo | None, str, set[str]]:
    """The run that the patterns name in this section, else the weakest on the primary measure."""
    used: set[str] = set()
    for pattern in patterns:
        matches = [r for r in runs if fnmatch.fnmatchcase(r.name, pattern) or fnmatch.fnmatchcase(r.label, pattern)]
        if len(matches) > 1:
            names = ", ".join(r.label for r in matches)
            raise CascadeError(f"--baseline {pattern!r} matches {len(matches)} runs on {runs[0].dataset}: {names}")
        if matches:
            used.add(pattern)
            return matches[0], "chosen with --baseline", used
    if len(runs) < 2:
        return None, "one run: nothing to compare", used
    weakest = min(runs, key=lambda r: (means.get(r.label, np.inf), r.label))
    return weakest, f"the weakest on {primary}; choose another with --baseline", used


def build_section(
    suite: str, dataset: str, runs: list[RunInfo], options: ReportOptions, baseline: RunInfo | None = None
) -> tuple[Section, set[str]]:
    """Align the runs, pick the baseline (unless given) and run every test; also returns the patterns used."""
    measures = _measures(runs, options.measures)
    if not measures:
        raise CascadeError(
            f"no run on {dataset} has the measures {', '.join(options.measures) or '(none)'}"
            if options.measures
            else f"the runs on {dataset} have no per-query values"
        )
    # the measure rows are ranked by and W/T/L counts: nDCG@10 when every run has it (a suite may leave a measure
    # out for a pipeline, e.g. the instructed run of one that cannot read instructions), else the first shared one
    shared = [m for m in [PRIMARY, *measures] if m in measures and all(m in r.measures for r in runs)]
    primary = shared[0] if shared else measures[0]
    expected = max((r.expected_queries or 0 for r in runs), default=0)
    aligned = align(
        {r.label: r.perquery for r in runs},
        missing=options.missing,
        expected=expected,
        measures=measures,
        what=f"{dataset} ({suite} suite)",
    )
    means = {
        r.label: float(aligned.scores[r.label][primary].mean()) if primary in aligned.scores[r.label] else -np.inf
        for r in runs
    }
    if baseline is None:
        baseline, note, used = _pick_baseline(runs, options.baselines, means, primary)
    else:
        note, used = "chosen with --baseline", set()
    ordered = sorted(runs, key=lambda r: (-means[r.label], r.label))
    analysis = analyse(
        {r.label: aligned.scores[r.label] for r in ordered},
        baseline.label if baseline else None,
        all_pairs=options.all_pairs,
        measures=measures,
        config=options.stats,
    )
    return Section(suite, dataset, ordered, baseline, note, measures, primary, aligned, analysis), used


def build_board(runs: list[RunInfo], options: ReportOptions) -> Board:
    """Sections in suite then dataset order; --baseline patterns that name no run at all are an error (a typo)."""
    groups: dict[tuple[str, str], list[RunInfo]] = {}
    for run in runs:
        groups.setdefault((run.suite, run.dataset), []).append(run)
    sections, used = [], set()
    order = {name: i for i, name in enumerate(SUITE_ORDER)}
    for (suite, dataset), members in sorted(groups.items(), key=lambda g: (order.get(g[0][0], len(order)), g[0])):
        section, matched = build_section(suite, dataset, members, options)
        sections.append(section)
        used |= matched
    if options.baselines and runs and not used:  # a typo, not a pattern meant for other runs
        names = ", ".join(sorted({r.name for r in runs}))
        raise CascadeError(f"--baseline {' / '.join(options.baselines)} names no run (names: {names})")
    return Board(sections, options)


def compare_section(runs: list[RunInfo], baseline: RunInfo, options: ReportOptions) -> Section:
    """The runs given on the command line: they must share a dataset and qrels."""
    datasets = {r.dataset for r in runs}
    if len(datasets) > 1:
        listing = "; ".join(f"{r.folder} is on {r.dataset}" for r in runs)
        raise CascadeError(f"runs on different datasets cannot be compared: {listing}")
    labels: dict[str, int] = {}
    for run in runs:
        labels[run.label] = labels.get(run.label, 0) + 1
    for run in runs:  # the same name twice (e.g. runs/x and old/x): tell them apart by folder
        if labels[run.label] > 1:
            run.label = str(run.folder)
    section, _ = build_section(runs[0].suite, runs[0].dataset, runs, options, baseline)
    return section
