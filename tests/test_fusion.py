"""Fusion stages against their formulas, and fusion configs through the real runner."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from cascade.core.errors import CascadeError
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config
from cascade.rankers import RRF, CombMNZ, CombSUM

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
