"""From run folders to the numbers a report shows: one section per suite and dataset, with its statistics."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace

import numpy as np

from cascade.core.errors import CascadeError
from cascade.eval.align import Aligned, align
from cascade.eval.report.pool import pooled_groups
from cascade.eval.report.runs import RunInfo, unique_labels
from cascade.eval.stats import Analysis, Interval, PairResult, StatsConfig, adjust, analyse

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
    pools: tuple[tuple[str, str], ...] = ()  # --pool A+B: datasets whose runs also pool into one section per suite
    references: tuple[str, ...] = ()  # --reference: run names or globs every run is also tested against


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
    pooled_from: str = ""  # a pooled section's datasets and their queries, for its header line
    left_out: str = ""  # and the runs of those datasets it leaves out (a sentence)
    references: list[RunInfo] = field(default_factory=list)  # --reference runs here, besides the baseline
    reference_measure: str = ""  # the measure they are tested on
    reference_pairs: int = 0  # comparisons they add to that measure's correction

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

    def versus(self, run: RunInfo, reference: RunInfo) -> PairResult | None:
        """`run` against a --reference run on the reference measure; `diff` is run minus reference.

        The pair is tested once: when the reverse comparison is already in the family (the reference against the
        baseline, or one reference against another) it is that one, negated: a two-sided paired test gives the
        same p-value either way round.
        """
        pair = self.analysis.pair(run.label, self.reference_measure, reference.label)
        if pair is not None or run is reference:
            return pair
        other = self.analysis.pair(reference.label, self.reference_measure, run.label)
        if other is None:
            return None
        diff = Interval(-other.diff.mean, -other.diff.high, -other.diff.low)
        return replace(
            other,
            system=run.label,
            baseline=reference.label,
            diff=diff,
            effect=-other.effect,
            wins=other.losses,
            losses=other.wins,
            t=-other.t,
        )

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


def _named(runs: list[RunInfo], option: str, pattern: str, dataset: str) -> RunInfo | None:
    """The one run of a section a name or glob names (by name or label); several is an error naming them."""
    matches = [r for r in runs if fnmatch.fnmatchcase(r.name, pattern) or fnmatch.fnmatchcase(r.label, pattern)]
    if len(matches) > 1:
        names = ", ".join(r.label for r in matches)
        raise CascadeError(f"{option} {pattern!r} matches {len(matches)} runs on {dataset}: {names}")
    return matches[0] if matches else None


def _pick_baseline(
    runs: list[RunInfo], patterns: tuple[str, ...], means: dict[str, float], primary: str
) -> tuple[RunInfo | None, str, set[str]]:
    """The run that the patterns name in this section, else the weakest on the primary measure."""
    used: set[str] = set()
    for pattern in patterns:
        match = _named(runs, "--baseline", pattern, runs[0].dataset)
        if match is not None:
            used.add(pattern)
            return match, "chosen with --baseline", used
    if len(runs) < 2:
        return None, "one run: nothing to compare", used
    weakest = min(runs, key=lambda r: (means.get(r.label, np.inf), r.label))
    return weakest, f"the weakest on {primary}; choose another with --baseline", used


def _pick_references(
    runs: list[RunInfo], patterns: tuple[str, ...], baseline: RunInfo | None, dataset: str
) -> tuple[list[RunInfo], set[str]]:
    """The runs the --reference patterns name in this section (each at most one), except the baseline itself."""
    found: list[RunInfo] = []
    used: set[str] = set()
    for pattern in patterns:
        match = _named(runs, "--reference", pattern, dataset)
        if match is not None:
            used.add(pattern)
            if match is not baseline and match not in found:
                found.append(match)
    return (found if baseline is not None else []), used


def _test_references(
    analysis: Analysis, scores: dict[str, dict[str, np.ndarray]], references: list[RunInfo], measure: str
) -> int:
    """Add every run's comparison with each reference on `measure` to the analysis, then correct that measure's
    family anew, baseline and reference comparisons together; returns how many comparisons were added.

    Each reference gets the same `analyse` as a baseline does (same seed, so the same sign flips and resamples as
    `cascade compare` of the two runs); a comparison already in the family the other way round is not repeated.
    """
    config = analysis.config
    family = {(p.system, p.baseline) for p in analysis.pairs if p.measure == measure}
    added = 0
    for reference in references:
        for pair in analyse(scores, reference.label, measures=[measure], config=config).pairs:
            if (pair.baseline, pair.system) in family or (pair.system, pair.baseline) in family:
                continue
            family.add((pair.system, pair.baseline))
            analysis.pairs.append(pair)
            added += 1
    together = [p for p in analysis.pairs if p.measure == measure]
    adj_t = adjust(np.array([p.p_t for p in together]), config.correction)
    adj_perm = adjust(np.array([p.p_perm for p in together]), config.correction)
    for p, at, ap in zip(together, adj_t, adj_perm, strict=True):
        p.p_t_adj, p.p_perm_adj = float(at), float(ap)
    return added


def build_section(
    suite: str,
    dataset: str,
    runs: list[RunInfo],
    options: ReportOptions,
    baseline: RunInfo | None = None,
    pooled: tuple[str, str] = ("", ""),
) -> tuple[Section, set[str], set[str]]:
    """Align the runs, pick the baseline (unless given) and run every test; also returns the --baseline and the
    --reference patterns used."""
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
        baseline, base_note, used = _pick_baseline(runs, options.baselines, means, primary)
    else:
        base_note, used = "chosen with --baseline", set()
    ordered = sorted(runs, key=lambda r: (-means[r.label], r.label))
    scores = {r.label: aligned.scores[r.label] for r in ordered}
    analysis = analyse(
        scores,
        baseline.label if baseline else None,
        all_pairs=options.all_pairs,
        measures=measures,
        config=options.stats,
    )
    section = Section(suite, dataset, ordered, baseline, base_note, measures, primary, aligned, analysis, *pooled)
    section.references, used_references = _pick_references(ordered, options.references, baseline, dataset)
    if section.references:
        section.reference_measure = PRIMARY if PRIMARY in measures else measures[0]
        section.reference_pairs = _test_references(analysis, scores, section.references, section.reference_measure)
    return section, used, used_references


def build_board(runs: list[RunInfo], options: ReportOptions) -> Board:
    """Sections in suite then dataset order, each suite's pooled sections (--pool) after its own; --baseline or
    --reference patterns that name no run at all are an error (a typo)."""
    groups: dict[tuple[str, str], list[RunInfo]] = {}
    for run in runs:
        groups.setdefault((run.suite, run.dataset), []).append(run)
    pooled: dict[tuple[str, str], tuple[list[RunInfo], tuple[str, str]]] = {}
    order = {name: i for i, name in enumerate(SUITE_ORDER)}
    for group in pooled_groups(runs, options.pools, lambda suite: (order.get(suite, len(order)), suite)):
        # run folders already pooled by hand (bench/pool_runs.py) on the same title join the section
        members = [*groups.pop((group.suite, group.dataset), []), *group.runs]
        unique_labels(members)
        pooled[(group.suite, group.dataset)] = (members, (group.pooled_from, group.left_out))
    sections, used, used_references = [], set(), set()
    entries = [(suite, 0, dataset, members, ("", "")) for (suite, dataset), members in groups.items()]
    entries += [(suite, 1, i, members, notes) for i, ((suite, _), (members, notes)) in enumerate(pooled.items())]
    for suite, _, _, members, notes in sorted(entries, key=lambda e: (order.get(e[0], len(order)), e[0], e[1], e[2])):
        section, matched, referenced = build_section(suite, members[0].dataset, members, options, pooled=notes)
        sections.append(section)
        used |= matched
        used_references |= referenced
    if options.baselines and runs and not used:  # a typo, not a pattern meant for other runs
        names = ", ".join(sorted({r.name for r in runs}))
        raise CascadeError(f"--baseline {' / '.join(options.baselines)} names no run (names: {names})")
    if options.references and runs and not used_references:
        names = ", ".join(sorted({r.label for s in sections for r in s.runs}))
        raise CascadeError(f"--reference {' / '.join(options.references)} names no run (names: {names})")
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
    section, _, _ = build_section(runs[0].suite, runs[0].dataset, runs, options, baseline)
    return section
