"""Statistics you can trust: paired tests, multiple-comparison corrections, bootstrap CIs, effect sizes.

scipy does the resampling and the tests (`ttest_rel`, `permutation_test`, `bootstrap`), statsmodels the
corrections (`multipletests`). Every random step is seeded, so the same per-query values always give the same
numbers. Inputs are per-query values already aligned on one query set (`eval.align`): run -> measure -> array.

One design choice makes a whole leaderboard cheap: every mean, difference and test of one dataset shares a single
set of bootstrap resamples and a single set of random sign flips, and scipy's statistic evaluates all columns at
once as a matrix product. Each column's test or interval is exactly the one it would get alone; the shared random
draws only make the columns' Monte Carlo errors correlated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CORRECTIONS = {
    "holm": "Holm-Bonferroni",
    "bonferroni": "Bonferroni",
    "fdr_bh": "Benjamini-Hochberg (FDR)",
}


@dataclass(frozen=True)
class StatsConfig:
    """Everything that changes a number in the statistics; the report prints it."""

    seed: int = 42
    permutations: int = 10_000
    resamples: int = 10_000
    confidence: float = 0.95
    correction: str = "holm"
    alpha: float = 0.05
    batch: int = 1000  # resamples per vectorised call: bounds memory (about batch x queries x 32 bytes)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


@dataclass
class PairResult:
    """One system against one reference on one measure, over the same queries."""

    measure: str
    system: str
    baseline: str
    queries: int
    diff: Interval  # mean of system - baseline, with its bootstrap CI
    effect: float  # Cohen's d_z: mean difference / standard deviation of the differences
    wins: int
    ties: int
    losses: int
    t: float
    p_t: float
    p_t_adj: float = float("nan")
    p_perm: float = float("nan")
    p_perm_adj: float = float("nan")

    def significant(self, alpha: float) -> int:
        """+1 better, -1 worse, 0 neither, by the corrected permutation test."""
        if not self.p_perm_adj < alpha:
            return 0
        return 1 if self.diff.mean > 0 else -1 if self.diff.mean < 0 else 0


@dataclass
class Analysis:
    """The statistics of one set of runs over one query set."""

    runs: list[str]
    measures: list[str]
    queries: int
    config: StatsConfig
    baseline: str | None
    means: dict[tuple[str, str], Interval] = field(default_factory=dict)
    pairs: list[PairResult] = field(default_factory=list)

    def pair(self, system: str, measure: str, baseline: str | None = None) -> PairResult | None:
        reference = baseline or self.baseline
        for result in self.pairs:
            if result.system == system and result.measure == measure and result.baseline == reference:
                return result
        return None

    def family_size(self, measure: str) -> int:
        return sum(1 for p in self.pairs if p.measure == measure)


def _counts(indices: np.ndarray) -> np.ndarray:
    """How often each query appears in each resample: rows of query indices -> rows of counts (float)."""
    rows, n = indices.shape[:-1], indices.shape[-1]
    flat = indices.reshape(-1, n)
    offsets = (np.arange(flat.shape[0]) * n)[:, None]
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * n)
    return counts.reshape(*rows, n).astype(np.float32)


def bootstrap_ci(
    values: np.ndarray, *, seed: int, resamples: int = 10_000, confidence: float = 0.95, batch: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean of every column of `values` (queries x columns), resampling queries.

    `scipy.stats.bootstrap` draws the resamples of query indices (as it does itself for paired data) and takes the
    percentiles; the statistic turns each resample into per-query counts and computes every column's mean in one
    matrix product, so one call serves a whole leaderboard. Percentile rather than scipy's default BCa: BCa needs a
    jackknife over the queries (queries^2 x columns work), and for means of bounded per-query scores over tens of
    queries or more the percentile interval is the usual choice in IR evaluation.
    """
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError("values must be queries x columns")
    n, k = values.shape
    if n < 2 or k == 0:
        nan = np.full(k, np.nan)
        return nan, nan.copy()
    values32 = values.astype(np.float32)  # float32 halves the matrix products; its 1e-7 error is far below MC error

    def column_means(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        # indices: (n,) for the observed statistic, (batch, n) for resamples; return (k,) or (k, batch).
        if indices.ndim == 1:
            return values[indices].mean(axis=0)
        return (_counts(indices) @ values32).T.astype(np.float64) / indices.shape[-1]

    result = stats.bootstrap(
        (np.arange(n),),
        column_means,
        n_resamples=resamples,
        batch=batch,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng([seed, 1]),
    )
    low, high = result.confidence_interval
    return np.atleast_1d(low), np.atleast_1d(high)


def permutation_pvalues(diffs: np.ndarray, *, seed: int, permutations: int = 10_000, batch: int = 1000) -> np.ndarray:
    """Two-sided paired randomization test of "mean difference = 0" for every column of `diffs` (queries x tests).

    `scipy.stats.permutation_test` with one sample and `permutation_type="samples"` flips the sign of each
    observation at random. It is handed a vector of ones, so the statistic sees the random signs themselves and
    computes the mean of every column's sign-flipped differences in one matrix product: the same test as calling
    it once per column with `np.mean`, without materialising queries x tests x permutations. scipy computes the
    observed statistic, the null distribution and the p-value (with its +1 correction for a random test).
    """
    from scipy import stats

    diffs = np.asarray(diffs, dtype=np.float64)
    n, k = diffs.shape
    if n < 2 or k == 0:
        return np.full(k, np.nan)

    def signed_means(signs: np.ndarray, axis: int = -1) -> np.ndarray:
        return (signs @ diffs) / signs.shape[-1]  # (k,) or (batch, k)

    result = stats.permutation_test(
        (np.ones(n),),
        signed_means,
        permutation_type="samples",
        vectorized=True,
        n_resamples=permutations,
        batch=batch,
        alternative="two-sided",
        rng=np.random.default_rng([seed, 2]),
    )
    return np.atleast_1d(result.pvalue)


def paired_ttest(system: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided paired t-test per column (`scipy.stats.ttest_rel`); identical columns give t = 0 and p = 1.

    scipy returns NaN when every difference is zero (0/0); "no difference at all" is reported as p = 1 instead.
    """
    from scipy import stats

    system, baseline = np.asarray(system, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if system.shape[0] < 2:
        nan = np.full(system.shape[1:], np.nan)
        return nan, nan.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.ttest_rel(system, baseline, axis=0)
    t, p = np.atleast_1d(result.statistic).copy(), np.atleast_1d(result.pvalue).copy()
    same = np.all(system == baseline, axis=0)
    t[same], p[same] = 0.0, 1.0
    return t, p


def adjust(pvalues: np.ndarray, method: str = "holm") -> np.ndarray:
    """Corrected p-values (statsmodels `multipletests`) over one family; NaN entries stay NaN and do not count."""
    from statsmodels.stats.multitest import multipletests

    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}")
    pvalues = np.asarray(pvalues, dtype=np.float64)
    out = np.full(pvalues.shape, np.nan)
    finite = np.isfinite(pvalues)
    if finite.any():
        out[finite] = multipletests(pvalues[finite], method=method)[1]
    return out


def effect_size(diffs: np.ndarray) -> np.ndarray:
    """Cohen's d_z per column: mean difference over the standard deviation of the differences (paired design).

    Written here because neither scipy nor statsmodels computes a paired standardized effect from data; it is one
    line. Zero spread gives 0 (no difference) or +-inf (the same non-zero difference on every query).
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    if diffs.shape[0] < 2:
        return np.full(diffs.shape[1:], np.nan)
    mean, sd = diffs.mean(axis=0), diffs.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, mean / sd, np.where(mean == 0, 0.0, np.sign(mean) * np.inf))


def win_tie_loss(diffs: np.ndarray, tolerance: float = 1e-9) -> np.ndarray:
    """Per column, how many queries the system wins, ties and loses (|difference| <= tolerance is a tie)."""
    diffs = np.asarray(diffs, dtype=np.float64)
    wins = (diffs > tolerance).sum(axis=0)
    losses = (diffs < -tolerance).sum(axis=0)
    return np.stack([wins, diffs.shape[0] - wins - losses, losses], axis=-1)


def analyse(
    scores: dict[str, dict[str, np.ndarray]],
    baseline: str | None,
    *,
    all_pairs: bool = False,
    measures: list[str] | None = None,
    config: StatsConfig | None = None,
) -> Analysis:
    """Means with CIs for every run and measure; paired comparisons against `baseline` (or all pairs).

    Corrections apply per measure and per test, over all the comparisons made for that measure.
    """
    config = config or StatsConfig()
    runs = list(scores)
    if measures is None:
        measures = []
        for per_measure in scores.values():
            measures += [m for m in per_measure if m not in measures]
    lengths = {len(v) for per_measure in scores.values() for v in per_measure.values()}
    if len(lengths) > 1:
        raise ValueError("per-query values must be aligned on one query set")
    n = lengths.pop() if lengths else 0
    analysis = Analysis(runs, list(measures), n, config, baseline)

    if baseline is not None and not all_pairs:
        pairs = [(run, baseline) for run in runs if run != baseline]
    elif all_pairs:
        pairs = [(a, b) for i, b in enumerate(runs) for a in runs[i + 1 :]]
    else:
        pairs = []

    mean_keys = [(run, m) for run in runs for m in measures if m in scores[run]]
    pair_keys = [(a, b, m) for a, b in pairs for m in measures if m in scores[a] and m in scores[b]]
    if n == 0:
        analysis.means = {key: Interval(float("nan"), float("nan"), float("nan")) for key in mean_keys}
        return analysis

    mean_columns = np.column_stack([scores[r][m] for r, m in mean_keys]) if mean_keys else np.empty((n, 0))
    diff_columns = (
        np.column_stack([scores[a][m] - scores[b][m] for a, b, m in pair_keys]) if pair_keys else np.empty((n, 0))
    )
    low, high = bootstrap_ci(
        np.hstack([mean_columns, diff_columns]),
        seed=config.seed,
        resamples=config.resamples,
        confidence=config.confidence,
        batch=config.batch,
    )
    for i, key in enumerate(mean_keys):
        analysis.means[key] = Interval(float(mean_columns[:, i].mean()), float(low[i]), float(high[i]))
    if not pair_keys:
        return analysis

    offset = len(mean_keys)
    p_perm = permutation_pvalues(diff_columns, seed=config.seed, permutations=config.permutations, batch=config.batch)
    system = np.column_stack([scores[a][m] for a, _, m in pair_keys])
    reference = np.column_stack([scores[b][m] for _, b, m in pair_keys])
    t, p_t = paired_ttest(system, reference)
    effects = effect_size(diff_columns)
    wtl = win_tie_loss(diff_columns)
    for j, (a, b, m) in enumerate(pair_keys):
        analysis.pairs.append(
            PairResult(
                measure=m,
                system=a,
                baseline=b,
                queries=n,
                diff=Interval(float(diff_columns[:, j].mean()), float(low[offset + j]), float(high[offset + j])),
                effect=float(effects[j]),
                wins=int(wtl[j, 0]),
                ties=int(wtl[j, 1]),
                losses=int(wtl[j, 2]),
                t=float(t[j]),
                p_t=float(p_t[j]),
                p_perm=float(p_perm[j]),
            )
        )
    for m in measures:
        family = [p for p in analysis.pairs if p.measure == m]
        if not family:
            continue
        adj_t = adjust(np.array([p.p_t for p in family]), config.correction)
        adj_perm = adjust(np.array([p.p_perm for p in family]), config.correction)
        for p, at, ap in zip(family, adj_t, adj_perm, strict=True):
            p.p_t_adj, p.p_perm_adj = float(at), float(ap)
    return analysis
