"""Real data from the shared data dir: published numbers and the MS MARCO pipelines end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascade.eval.datasets import availability, load_dataset

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.realdata


def test_official_bm25_run_reproduces_the_published_dl19_ndcg(cascade, data_dir, tmp_path):
    config = ROOT / "configs" / "msmarco" / "dl19-official-bm25-run.yaml"
    result = cascade("run", config, "--out", tmp_path, "--cache", tmp_path / "cache", "--data-dir", data_dir, "-q")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "dl19-official-bm25-run" / "metrics.json").read_text())
    assert round(metrics["measures"]["nDCG@10"], 4) == 0.5058
    assert metrics["queries"] == 43 and metrics["qrels"] == "official"


def test_cascade_eval_scores_any_run_against_any_qrels(cascade, data_dir):
    result = cascade(
        "eval",
        data_dir / "msmarco-passage/raw/qrels.dl19-passage.txt",
        data_dir / "msmarco-passage/runs/dl19.bm25.trec.gz",
        "-m",
        "nDCG@10",
        "-m",
        "AP(rel=2)",
    )
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()
    assert header.split("\t")[1:] == ["nDCG@10", "AP(rel=2)"]
    assert row.split("\t")[1] == "0.5058"


def test_msmarco_datasets_are_registered_and_filtered(data_dir):
    dl19 = load_dataset("msmarco-passage/dl19", data_dir)
    assert len(dl19.queries) == 43 and len(dl19.qrels) == 4343
    official = load_dataset("msmarco-passage/dl20", data_dir, qrels="official")
    assert len(official.queries) == 54 and len(official.qrels) == 11386
    dev = load_dataset("msmarco-passage/dev-small", data_dir)
    assert len(dev.queries) == 1779
    names = {name for name, ok, _ in availability(data_dir) if ok}
    assert {
        "sample",
        "msmarco-passage/dl19",
        "msmarco-passage/dl20",
        "msmarco-passage/dev-small",
        "beir/scifact",
        "cranfield",
        "nevir",
    } <= names


def test_other_named_datasets_load(data_dir):
    for name, queries in [("beir/scifact", 300), ("cranfield", 225), ("nevir", 2766)]:
        dataset = load_dataset(name, data_dir)
        assert len(dataset.queries) == queries
        assert next(dataset.corpus.docs())["docno"]
