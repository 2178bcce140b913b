"""Fusion stages against their formulas, and fusion configs through the real runner."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import load_dataset
from cascade.eval.measures import evaluate, parse_measures
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config
from cascade.rankers import BM25, RM3, RRF, CombMNZ, CombSUM, Context
from cascade.rankers.engine import execute
from cascade.rankers.fusion import weight_grid
from tests.test_cli_errors import assert_clean_failure

A = pd.DataFrame({"qid": ["1"] * 3, "docno": ["x", "y", "z"], "score": [3.0, 2.0, 1.0], "rank": [1, 2, 3]})
B = pd.DataFrame({"qid": ["1"] * 2, "docno": ["z", "w"], "score": [10.0, 0.0], "rank": [1, 2]})
INPUTS = [[{"bm25": {}}], [{"bm25": {}}]]


def scores(run: pd.DataFrame) -> dict[str, float]:
    return dict(zip(run["docno"], run["score"], strict=True))


def test_rrf_is_the_sum_of_reciprocal_ranks():
    fused = RRF(inputs=INPUTS, k=60).fuse([A, B])
    expected = {"x": 1 / 61, "y": 1 / 62, "z": 1 / 63 + 1 / 61, "w": 1 / 62}
    assert scores(fused) == pytest.approx(expected)
    assert fused["docno"].tolist()[0] == "z" and fused["rank"].tolist() == [1, 2, 3, 4]


def test_combsum_and_combmnz_with_minmax():
    a_norm = {"x": 1.0, "y": 0.5, "z": 0.0}
    b_norm = {"z": 1.0, "w": 0.0}
    fused = scores(CombSUM(inputs=INPUTS, norm="minmax").fuse([A, B]))
    assert fused == pytest.approx({"x": 1.0, "y": 0.5, "z": 1.0, "w": 0.0})
    mnz = scores(CombMNZ(inputs=INPUTS, norm="minmax", weights=[1.0, 2.0]).fuse([A, B]))
    assert mnz == pytest.approx({"x": a_norm["x"], "y": a_norm["y"], "z": 2 * (0.0 + 2 * b_norm["z"]), "w": 0.0})


def test_combsum_zscore():
    fused = scores(CombSUM(inputs=INPUTS, norm="zscore").fuse([A, B]))
    za = {"x": 1.224744871, "y": 0.0, "z": -1.224744871}
    assert fused == pytest.approx({"x": za["x"], "y": 0.0, "z": za["z"] + 1.0, "w": -1.0})


def test_weights_must_match_inputs():
    """Refused when the stage is made (from a config: when it is read), not when the runs are fused."""
    with pytest.raises(ValidationError, match="2 weights for 3 inputs"):
        RRF(inputs=INPUTS + INPUTS[:1], weights=[1.0, 1.0])


def test_fusion_config_runs_and_caches_each_input(tmp_path, cache_dir):
    path = tmp_path / "rrf.yaml"
    path.write_text(
        "name: rrf\ndataset: sample\nmeasures: [nDCG@10]\npipeline:\n  - rrf:\n      k: 60\n      inputs:\n"
        "        - [bm25: {k: 100}]\n        - [rm3: {k: 100}]\n"
    )
    result = run_config(load_config(path), path, tmp_path / "runs", cache_dir=cache_dir, progress=False)
    assert [t.stage for t in result.timings] == ["rrf/0/bm25", "rrf/1/rm3", "rrf"]
    again = run_config(load_config(path), path, tmp_path / "again", cache_dir=cache_dir, progress=False)
    assert all(t.cached for t in again.timings)
    assert (Path(result.folder) / "run.trec").read_bytes() == (Path(again.folder) / "run.trec").read_bytes()


def test_bad_parameter_inside_fusion_input_names_its_key(tmp_path):
    path = tmp_path / "rrf.yaml"
    path.write_text(
        "name: rrf\ndataset: sample\npipeline:\n  - rrf:\n      inputs:\n        - [bm25: {k: 100}]\n"
        "        - [bm25: {k: lots}]\n"
    )
    with pytest.raises(CascadeError, match=r"rrf\.yaml:7: pipeline\[0\]\.rrf\.inputs\[1\]\[0\]\.bm25\.k: "):
        load_config(path)


def test_the_tuning_grid_is_rankxs() -> None:
    """Weights that are multiples of the step and sum to 1: 11 points for two inputs, 66 for three."""
    assert len(weight_grid(2, 0.1)) == 11 and len(weight_grid(3, 0.1)) == 66
    assert weight_grid(2, 0.5) == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    assert all(sum(w) == pytest.approx(1.0) for w in weight_grid(3, 0.25))


def test_tuned_weights_are_the_grids_best_on_the_dev_fold(cache_dir: Path) -> None:
    """Tuned on one fold of the sample, applied to the other: the weights are the grid's best on the dev fold (the
    first of equals), recorded in the stage's stats, and the evaluated run is the fusion with exactly them."""
    sample = load_dataset("sample")
    qids = sorted(sample.queries["qid"])
    dev, test = qids[:50], qids[50:]
    ctx = Context(store=ArtifactStore(cache_dir), corpus=sample.corpus, progress=False, threads=2)
    inputs = [[{"bm25": {"k": 100}}], [{"rm3": {"k": 100}}]]
    stage = CombSUM(inputs=inputs, weights="tune", tune={"dataset": "sample", "queries": dev, "step": 0.25})
    test_queries = sample.queries[sample.queries["qid"].isin(test)].reset_index(drop=True)
    done = execute(stage, test_queries, ctx)
    stats = done.timings[-1].stats
    assert stats["tune"]["dev_queries"] == 50 and stats["tune"]["grid_points"] == 5

    dev_queries = sample.queries[sample.queries["qid"].isin(dev)].reset_index(drop=True)
    dev_runs = [execute(BM25(k=100), dev_queries, ctx).frame, execute(RM3(k=100), dev_queries, ctx).frame]
    dev_qrels = sample.qrels[sample.qrels["qid"].isin(dev)]
    measure = parse_measures(["nDCG@10"])
    grid = weight_grid(2, 0.25)
    values = {w: evaluate(stage.fuse(dev_runs, list(w)), dev_qrels, measure)[0]["nDCG@10"] for w in grid}
    best = max(values.values())
    assert stats["tune"]["value"] == pytest.approx(best, abs=1e-6)
    assert tuple(stats["tuned_weights"]) == next(w for w in grid if values[w] == best)

    test_runs = [execute(BM25(k=100), test_queries, ctx).frame, execute(RM3(k=100), test_queries, ctx).frame]
    expected = stage.fuse(test_runs, stats["tuned_weights"])
    assert done.frame["docno"].tolist() == expected["docno"].tolist()


def tuned_config(tmp_path: Path, tune: str) -> Path:
    path = tmp_path / "tuned.yaml"
    path.write_text(
        "name: tuned\ndataset: sample\nmeasures: [nDCG@10]\npipeline:\n  - combsum:\n      weights: tune\n"
        f"{tune}      inputs:\n        - [bm25: {{k: 100}}]\n        - [rm3: {{k: 100}}]\n"
    )
    return path


@pytest.mark.parametrize(
    ("tune", "pattern"),
    [
        ("", r"tuned\.yaml:5: pipeline\[0\]\.combsum: weights: tune needs a dev set to choose them on"),
        (
            "      tune: {dataset: sample, queries: [q01, q02]}\n",
            r"tuned\.yaml:7: pipeline\[0\]\.combsum\.tune: 2 dev queries are queries being ranked \(same id, e\.g\. "
            r"'q01', 'q02'\); tuning on the evaluated queries is refused",
        ),
        ("      tune: {dataset: sample, queries: [q01, nope]}\n", r"combsum\.tune\.queries: 1 ids are not queries"),
        ("      tune: {dataset: sample, step: 0.3}\n", r"pipeline\[0\]\.combsum: tune\.step: 0\.3 does not divide 1"),
    ],
)
def test_bad_tuning_is_one_line_before_any_work(tmp_path: Path, cascade, tune: str, pattern: str) -> None:
    out = tmp_path / "out"
    result = cascade("run", tuned_config(tmp_path, tune), "--out", out, "--cache", tmp_path / "cache", "-q")
    assert_clean_failure(result, pattern, out)
    assert not (tmp_path / "cache" / "runs").exists()  # refused before any stage ran
