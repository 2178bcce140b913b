"""Statistics you can trust: cascade's numbers against independent computations.

On the official TREC DL 2019 runs (through the real runner and run folders), every p-value and interval is
recomputed from the TREC files with ir_measures alone, then with scipy.stats.ttest_rel, a plain numpy
permutation loop and scipy.stats.bootstrap. The synthetic tests pin the behaviour the report relies on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cascade.core.errors import CascadeError
from cascade.eval.align import align
from cascade.eval.report import ReportOptions, compare_section, read_run_folder
from cascade.eval.stats import StatsConfig, analyse, bootstrap_ci, permutation_pvalues
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config

SYSTEMS = ["bm25", "bm25-rm3", "tasb", "splade-pp-ed"]
MEASURES = ["nDCG@10", "AP(rel=2)"]
B = 10_000


@pytest.fixture(scope="module")
def dl19(data_dir, cache_dir, tmp_path_factory):
    """Run folders for four official DL19 runs (re-scored with the official qrels), and the compare section."""
    tmp = tmp_path_factory.mktemp("dl19")
    folders = []
    for system in SYSTEMS:
        config = tmp / f"{system}.yaml"
        config.write_text(
            f"name: dl19-{system}\n"
            "dataset: {name: msmarco-passage/dl19, qrels: official}\n"
            f"measures: [{', '.join(MEASURES)}]\n"
            "pipeline:\n"
            f'  - run_file: {{path: "data:msmarco-passage/runs/dl19.{system}.trec.gz"}}\n'
        )
        result = run_config(
            load_config(config), config, tmp / "runs", data_dir=data_dir, cache_dir=cache_dir, progress=False
        )
        folders.append(result.folder)
    runs = [read_run_folder(f) for f in folders]
    section = compare_section(runs, runs[0], ReportOptions())
    return data_dir, section


def independent_values(data_dir, system: str, measure: str) -> dict[str, float]:
    """Per-query values straight from the TREC files with ir_measures: nothing of cascade in between."""
    import ir_measures

    qrels = list(ir_measures.read_trec_qrels(str(data_dir / "msmarco-passage/raw/qrels.dl19-passage.txt")))
    run = list(ir_measures.read_trec_run(str(data_dir / f"msmarco-passage/runs/dl19.{system}.trec.gz")))
    return {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.parse_measure(measure)], qrels, run)}


def paired(data_dir, system: str, measure: str) -> tuple[np.ndarray, np.ndarray]:
    mine, base = independent_values(data_dir, system, measure), independent_values(data_dir, "bm25", measure)
    qids = sorted(base)
    assert sorted(mine) == qids and len(qids) == 43
    return np.array([mine[q] for q in qids]), np.array([base[q] for q in qids])


def permutation_loop(diffs: np.ndarray, permutations: int, seed: int) -> float:
    """A plain two-sided sign-flip randomization test, one permutation at a time."""
    rng = np.random.default_rng(seed)
    observed = abs(diffs.mean())
    hits = 0
    for _ in range(permutations):
        signs = rng.choice(np.array([-1.0, 1.0]), size=len(diffs))
        hits += abs((signs * diffs).mean()) >= observed - 1e-12
    return (hits + 1) / (permutations + 1)


def endpoint_tolerance(standard_error: float, confidence: float = 0.95, resamples: int = B) -> float:
    """4 sigma of the difference of two independent Monte Carlo estimates of a percentile-interval endpoint."""
    alpha = (1 - confidence) / 2
    density = stats.norm.pdf(stats.norm.ppf(alpha)) / standard_error
    return 4 * math.sqrt(2) * math.sqrt(alpha * (1 - alpha) / resamples) / density


@pytest.mark.realdata
@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("system", SYSTEMS[1:])
def test_ttest_matches_scipy_ttest_rel_to_three_decimals(dl19, system, measure):
    data_dir, section = dl19
    values, base = paired(data_dir, system, measure)
    pair = section.analysis.pair(f"dl19-{system}", measure, "dl19-bm25")
    expected = stats.ttest_rel(values, base)
    assert pair.queries == 43
    assert abs(pair.p_t - expected.pvalue) < 5e-4, (pair.p_t, expected.pvalue)
    assert pair.t == pytest.approx(expected.statistic, abs=1e-3)
    assert pair.diff.mean == pytest.approx((values - base).mean(), abs=1e-5)


@pytest.mark.realdata
@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("system", SYSTEMS[1:])
def test_permutation_p_matches_a_plain_loop_within_monte_carlo_error(dl19, system, measure):
    data_dir, section = dl19
    values, base = paired(data_dir, system, measure)
    pair = section.analysis.pair(f"dl19-{system}", measure, "dl19-bm25")
    expected = permutation_loop(values - base, B, seed=2024)
    p = max(expected, 1 / B)
    tolerance = 4 * math.sqrt(2 * p * (1 - p) / B) + 3 / B
    assert abs(pair.p_perm - expected) <= tolerance, (pair.p_perm, expected, tolerance)


@pytest.mark.realdata
@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("system", SYSTEMS)
def test_mean_ci_matches_scipy_bootstrap_within_monte_carlo_error(dl19, system, measure):
    data_dir, section = dl19
    values = np.array(list(independent_values(data_dir, system, measure).values()))
    run = next(r for r in section.runs if r.name == f"dl19-{system}")
    mine = section.mean(run, measure)
    expected = stats.bootstrap((values,), np.mean, n_resamples=B, method="percentile", rng=np.random.default_rng(7))
    tolerance = endpoint_tolerance(expected.standard_error)
    assert mine.mean == pytest.approx(values.mean(), abs=1e-5)
    assert abs(mine.low - expected.confidence_interval.low) <= tolerance
    assert abs(mine.high - expected.confidence_interval.high) <= tolerance


@pytest.mark.realdata
@pytest.mark.parametrize("system", SYSTEMS[1:])
def test_difference_ci_matches_paired_scipy_bootstrap(dl19, system):
    data_dir, section = dl19
    values, base = paired(data_dir, system, "nDCG@10")
    pair = section.analysis.pair(f"dl19-{system}", "nDCG@10", "dl19-bm25")
    expected = stats.bootstrap(
        (values, base),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        paired=True,
        n_resamples=B,
        method="percentile",
        rng=np.random.default_rng(11),
    )
    tolerance = endpoint_tolerance(expected.standard_error)
    assert abs(pair.diff.low - expected.confidence_interval.low) <= tolerance
    assert abs(pair.diff.high - expected.confidence_interval.high) <= tolerance
    diffs = values - base
    assert (pair.wins, pair.ties, pair.losses) == (
        int((diffs > 0).sum()),
        int((diffs == 0).sum()),
        int((diffs < 0).sum()),
    )
    assert pair.effect == pytest.approx(diffs.mean() / diffs.std(ddof=1), abs=1e-4)


@pytest.mark.realdata
def test_holm_correction_is_over_the_comparisons_of_one_measure(dl19):
    _, section = dl19
    family = [p for p in section.analysis.pairs if p.measure == "nDCG@10"]
    assert len(family) == 3
    # Holm by hand: sorted p-values times (m, m-1, ...), running maximum, capped at 1.
    ordered = sorted(family, key=lambda p: p.p_t)
    running = 0.0
    for rank, p in enumerate(ordered):
        running = max(running, min(1.0, (3 - rank) * p.p_t))
        assert p.p_t_adj == pytest.approx(running)


# Synthetic data: behaviour the report relies on, no data dir needed.


def scores(rng: np.random.Generator, n: int = 60) -> dict[str, dict[str, np.ndarray]]:
    base = rng.random(n)
    return {
        "base": {"m": base},
        "better": {"m": np.clip(base + rng.normal(0.08, 0.1, n), 0, 1)},
        "same": {"m": base.copy()},
    }


def test_same_inputs_give_the_same_numbers_and_the_seed_matters():
    data = scores(np.random.default_rng(3))
    first = analyse(data, "base")
    again = analyse(data, "base")
    assert [p.__dict__ for p in first.pairs] == [p.__dict__ for p in again.pairs]
    assert first.means == again.means
    other = analyse(data, "base", config=StatsConfig(seed=7))
    assert other.pair("better", "m").p_perm != first.pair("better", "m").p_perm or other.means != first.means


def test_identical_runs_are_not_significant_and_tie_everywhere():
    analysis = analyse(scores(np.random.default_rng(4)), "base")
    same = analysis.pair("same", "m")
    assert (same.p_t, same.p_perm, same.effect) == (1.0, 1.0, 0.0)
    assert (same.wins, same.ties, same.losses) == (0, 60, 0)
    assert same.diff == type(same.diff)(0.0, 0.0, 0.0)
    assert analysis.pair("better", "m").significant(0.05) == 1


def test_bonferroni_and_benjamini_hochberg_are_applied_over_the_family():
    data = scores(np.random.default_rng(5))
    raw = analyse(data, "base", config=StatsConfig(correction="bonferroni"))
    for p in raw.pairs:
        assert p.p_t_adj == pytest.approx(min(1.0, 2 * p.p_t))
    bh = analyse(data, "base", config=StatsConfig(correction="fdr_bh"))
    ps = sorted(p.p_t for p in bh.pairs)
    assert max(p.p_t_adj for p in bh.pairs) == pytest.approx(ps[-1])  # BH leaves the largest p as it is


def test_all_pairs_compares_every_pair_once():
    analysis = analyse(scores(np.random.default_rng(6)), None, all_pairs=True)
    assert sorted((p.system, p.baseline) for p in analysis.pairs) == [
        ("better", "base"),
        ("same", "base"),
        ("same", "better"),
    ]


def test_vectorised_permutation_and_bootstrap_equal_one_column_at_a_time():
    rng = np.random.default_rng(8)
    diffs = rng.normal(0.02, 0.2, (80, 3))
    together = permutation_pvalues(diffs, seed=1, permutations=2000)
    low, high = bootstrap_ci(diffs, seed=1, resamples=2000)
    for j in range(3):
        assert permutation_pvalues(diffs[:, [j]], seed=1, permutations=2000)[0] == pytest.approx(together[j])
        alone = bootstrap_ci(diffs[:, [j]], seed=1, resamples=2000)
        assert (alone[0][0], alone[1][0]) == pytest.approx((low[j], high[j]), abs=1e-6)


def perquery(qids: list[str], values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"qid": qids, "measure": "nDCG@10", "value": values})


def test_missing_queries_score_zero_or_are_refused_never_dropped():
    full = perquery(["a", "b", "c"], [0.5, 0.6, 0.7])
    short = perquery(["a", "c"], [0.9, 0.9])
    aligned = align({"full": full, "short": short}, missing="zero")
    assert aligned.qids == ["a", "b", "c"]
    assert aligned.scores["short"]["nDCG@10"].tolist() == [0.9, 0.0, 0.9]
    assert aligned.coverage == {"full": 3, "short": 2}
    assert "short covers 2/3" in aligned.note()
    with pytest.raises(CascadeError, match="short covers 2 of 3"):
        align({"full": full, "short": short}, missing="refuse")


def test_judged_queries_that_no_run_has_still_count():
    aligned = align({"x": perquery(["a", "b"], [1.0, 1.0])}, missing="zero", expected=4)
    assert aligned.queries == 4 and aligned.unseen == 2
    assert aligned.scores["x"]["nDCG@10"].mean() == 0.5
    assert "2 judged queries are in no run" in aligned.note()
    with pytest.raises(CascadeError):
        align({"x": perquery(["a", "b"], [1.0, 1.0])}, missing="refuse", expected=4)
