"""Learning to rank with the real LightGBM and Lucene on the built-in sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import load_dataset
from cascade.indexes.lexical import FEATURES
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config
from cascade.pipelines.train import ensure_trained
from cascade.rankers import BM25, Context
from cascade.rankers.base import carry_scores, with_queries
from cascade.rankers.ltr import feature_matrix

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "train" / "ltr-sample.yaml"


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


@pytest.fixture(scope="module")
def candidates(sample, cache_dir):
    ctx = Context(store=ArtifactStore(cache_dir), corpus=sample.corpus, progress=False)
    run = with_queries(BM25(k=20).transform(sample.queries, ctx), sample.queries)
    return carry_scores(run, sample.queries, "bm25"), ctx


def test_lexical_bm25_agrees_with_lucene(candidates):
    frame, ctx = candidates
    matrix = feature_matrix(frame, ["bm25", "lexical"], ctx)
    assert matrix.shape == (len(frame), 1 + len(FEATURES)) and len(FEATURES) >= 20
    lucene, ours = matrix[:, 0], matrix[:, 1 + FEATURES.index("bm25_sum")]
    # Lucene stores document lengths lossily (one byte), so the two differ slightly; the ranking must not.
    assert np.corrcoef(lucene, ours)[0, 1] > 0.98
    assert np.all(matrix[:, 1 + FEATURES.index("coverage")] <= 1.0)


def test_feature_no_upstream_stage_provides_is_refused(candidates):
    frame, ctx = candidates
    with pytest.raises(CascadeError, match=r"ltr\.features: feature 'dense' is not provided by any upstream stage"):
        feature_matrix(frame, ["dense", "lexical"], ctx)


def test_training_saves_a_text_model_and_is_reused(tmp_path):
    env = Context(ArtifactStore(tmp_path / "cache"), data_dir=None, threads=2, progress=False)
    folder = ensure_trained(TINY, env)
    text = (folder / "model.txt").read_text()
    assert text.startswith("tree") and "lambdarank" in text
    assert not list(folder.glob("*.pkl")) and not list(folder.glob("*.pickle"))
    card = json.loads((folder / "card.json").read_text())
    assert card["train_queries"] > 10 and card["dev_queries"] > 5
    assert set(card["feature_importance_gain"]) >= {"score:bm25", "lexical:bm25_sum"}
    trained_with = card["trained_with"]  # what a retrained model's bytes depend on
    assert trained_with["device"] == "cpu" and trained_with["threads"] == 2 and trained_with["versions"]["lightgbm"]
    assert isinstance(trained_with["cpu"]["features"], list) and trained_with["precision"]
    mtime = (folder / "model.txt").stat().st_mtime_ns
    assert ensure_trained(TINY, env) == folder and (folder / "model.txt").stat().st_mtime_ns == mtime


def test_training_is_deterministic(tmp_path):
    first = ensure_trained(TINY, Context(ArtifactStore(tmp_path / "a"), data_dir=None, threads=2, progress=False))
    second = ensure_trained(TINY, Context(ArtifactStore(tmp_path / "b"), data_dir=None, threads=1, progress=False))

    def trees(folder: Path) -> str:  # the text ends with the parameters, thread count included
        return (folder / "model.txt").read_text().split("\nparameters:")[0]

    assert trees(first) == trees(second)


def test_overlapping_training_queries_are_refused(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(TINY.read_text().replace("test_datasets: []", "test_datasets: [sample]"))
    pattern = r"bad\.yaml:\d+: train\.dataset: \d+ training queries are test queries of .sample."
    with pytest.raises(CascadeError, match=pattern):
        ensure_trained(config, Context(ArtifactStore(tmp_path / "cache"), data_dir=None, threads=2, progress=False))


def test_pipeline_trains_then_reranks_and_records_importances(tmp_path, cache_dir):
    path = ROOT / "configs" / "sample" / "bm25-ltr.yaml"
    result = run_config(load_config(path), path, tmp_path, cache_dir=cache_dir, progress=False)
    manifest = json.loads((result.folder / "manifest.json").read_text())
    ltr = manifest["stages"][-1]
    assert ltr["stage"] == "ltr" and "score:bm25" in ltr["stats"]["feature_importance_gain"]
    assert 0.5 < result.measures["nDCG@10"] <= 1.0


def test_groups_without_relevant_candidates_are_skipped_and_counted(tmp_path):
    config = tmp_path / "few.yaml"
    config.write_text(TINY.read_text().replace("bm25: {k: 30}", "bm25: {k: 2}"))
    env = Context(ArtifactStore(tmp_path / "cache"), threads=2, progress=False)
    folder = ensure_trained(config, env)
    assert json.loads((folder / "card.json").read_text())["skipped_groups_without_relevant"] > 0


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (("num_leaves: 7", "num_leavez: 7"), r"bad\.yaml:9: lightgbm\.num_leavez: unknown key"),
        (("dev_fraction: 0.3", "dev_fraction: 3"), r"bad\.yaml:4: train\.dev_fraction: Input should be less than 1"),
        (("  - bm25: {k: 30}", "  - bm26: {k: 30}"), r"bad\.yaml:7: candidates\[0\]: one stage per item, one of "),
        (("  - bm25: {k: 30}", "  - bm25: {k: ten}"), r"bad\.yaml:7: candidates\[0\]\.bm25\.k: Input should be"),
        (("kind: ltr", "kind: ltrr"), r"bad\.yaml:2: kind: unknown trainer 'ltrr'; known: cross-encoder, ltr"),
        (("kind: ltr\n", ""), r"bad\.yaml:2: kind: required key is missing: the trainer, one of cross-encoder, ltr"),
    ],
)
def test_training_config_errors_name_file_line_and_key(tmp_path, change, pattern):
    config = tmp_path / "bad.yaml"
    text = TINY.read_text()
    assert change[0] in text
    config.write_text(text.replace(*change))
    with pytest.raises(CascadeError, match=pattern):
        ensure_trained(config, Context(ArtifactStore(tmp_path / "cache"), data_dir=None, threads=2, progress=False))


def test_a_standardised_stage_score_is_per_query(candidates):
    """`z:bm25` is BM25's score standardised within each query: mean 0 and std 1 per query, the same order."""
    frame, ctx = candidates
    matrix = feature_matrix(frame, ["bm25", "z:bm25"], ctx)
    per_query = pd.DataFrame({"qid": frame["qid"], "raw": matrix[:, 0], "z": matrix[:, 1]}).groupby("qid")
    assert np.allclose(per_query["z"].mean(), 0.0) and np.allclose(per_query["z"].std(ddof=0), 1.0)
    assert (per_query.apply(lambda g: g["raw"].corr(g["z"], method="spearman")) > 0.999).all()
    with pytest.raises(CascadeError, match=r"ltr\.features: feature 'z:dense' is not provided by any upstream stage"):
        feature_matrix(frame, ["z:dense"], ctx)
