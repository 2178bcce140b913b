"""The runner end to end on the built-in sample: outputs, cache, reproducibility, interruption."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cascade.core.store import ArtifactStore
from cascade.eval.datasets import load_dataset
from cascade.eval.frames import read_qrels, read_run
from cascade.eval.measures import evaluate, parse_measures
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config
from cascade.rankers import BM25, RM3, Context, Pipeline, RunFile
from tests.conftest import paused_cascade, run_cascade, wait_for

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_BM25 = ROOT / "configs" / "sample" / "bm25.yaml"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("runs")
    result = run_config(load_config(SAMPLE_BM25), SAMPLE_BM25, out, cache_dir=cache_dir, progress=False)
    return result, out


def test_run_folder_has_every_output(first_run):
    result, _ = first_run
    names = sorted(p.name for p in result.folder.iterdir())
    assert names == ["config.json", "manifest.json", "metrics.json", "perquery.tsv", "run.trec", "topdocs.jsonl"]
    metrics = json.loads((result.folder / "metrics.json").read_text())
    assert list(metrics["measures"]) == ["nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000", "AP(rel=2)"]
    manifest = json.loads((result.folder / "manifest.json").read_text())
    for key in ("config_hash", "seed", "versions", "git", "stages", "ms_per_query"):
        assert key in manifest
    assert manifest["versions"]["pyserini"] == "1.6.0"
    assert manifest["stages"][0]["queries"] == len(load_dataset("sample").queries)


def test_metrics_match_an_independent_evaluation_of_run_trec(first_run):
    result, _ = first_run
    run = read_run(result.folder / "run.trec")
    qrels = read_qrels(ROOT / "eval" / "datasets" / "sample" / "qrels" / "test.tsv")
    aggregate, _ = evaluate(run, qrels, parse_measures(["nDCG@10", "AP(rel=2)"]))
    assert aggregate["nDCG@10"] == pytest.approx(result.measures["nDCG@10"], abs=1e-12)
    perquery = pd.read_csv(result.folder / "perquery.tsv", sep="\t", dtype={"qid": str})
    ndcg = perquery[perquery.measure == "nDCG@10"]
    assert ndcg["value"].mean() == pytest.approx(result.measures["nDCG@10"], abs=1e-6)
    # BM25 is a real ranker on this sample: far from random, far from perfect.
    assert 0.4 < result.measures["nDCG@10"] < 0.95


def test_second_run_is_cached_and_byte_identical(first_run, tmp_path, cache_dir):
    result, _ = first_run
    again = run_config(load_config(SAMPLE_BM25), SAMPLE_BM25, tmp_path, cache_dir=cache_dir, progress=False)
    assert [t.cached for t in again.timings] == [True]
    assert (again.folder / "run.trec").read_bytes() == (result.folder / "run.trec").read_bytes()
    assert again.timings[0].seconds < 0.5 * (result.timings[0].prepare_seconds + result.timings[0].compute_seconds)


def test_changed_parameter_is_not_served_from_cache(first_run, tmp_path, cache_dir):
    text = SAMPLE_BM25.read_text().replace("b: 0.4", "b: 0.75")
    path = tmp_path / "b075.yaml"
    path.write_text(text)
    changed = run_config(load_config(path), path, tmp_path / "runs", cache_dir=cache_dir, progress=False)
    assert [t.cached for t in changed.timings] == [False]
    assert changed.timings[0].prepare_seconds < 5  # the index is reused, only search ran
    original = read_run(first_run[0].folder / "run.trec")
    assert not read_run(changed.folder / "run.trec")["score"].equals(original["score"])


def test_python_api_composes_stages_with_rshift(cache_dir):
    dataset = load_dataset("sample")
    ctx = Context(store=ArtifactStore(cache_dir), corpus=dataset.corpus, progress=False)
    queries = dataset.queries.head(5)
    first = BM25(k=20)
    pipeline = first >> BM25(k=5)
    assert isinstance(pipeline, Pipeline) and len(pipeline.stages) == 2
    assert repr(pipeline) == "bm25(k1=0.9, b=0.4, k=20) >> bm25(k1=0.9, b=0.4, k=5)"
    run = first.transform(queries, ctx)
    assert run.groupby("qid").size().max() == 20
    assert list(run["qid"].unique()) == list(queries["qid"])
    assert (run.groupby("qid")["rank"].min() == 1).all()


def test_rm3_changes_the_ranking_but_keeps_the_run_shape(cache_dir):
    dataset = load_dataset("sample")
    ctx = Context(store=ArtifactStore(cache_dir), corpus=dataset.corpus, progress=False)
    bm25 = BM25(k=50).transform(dataset.queries, ctx)
    rm3 = RM3(k=50).transform(dataset.queries, ctx)
    assert set(rm3["qid"]) == set(bm25["qid"])
    assert not rm3["score"].equals(bm25["score"])


def test_run_file_stage_keeps_given_queries_and_top_k(tmp_path, cache_dir):
    (tmp_path / "r.trec").write_text("a Q0 x 1 3 t\na Q0 y 2 2 t\na Q0 z 3 1 t\nb Q0 x 1 1 t\n")
    ctx = Context(store=ArtifactStore(cache_dir), progress=False)
    queries = pd.DataFrame({"qid": ["a"], "query": ["q"]})
    run = RunFile(path=str(tmp_path / "r.trec"), k=2).transform(queries, ctx)
    assert run[["qid", "docno", "rank"]].values.tolist() == [["a", "x", 1], ["a", "y", 2]]


def test_killed_run_leaves_no_corrupt_cache_entry(tmp_path):
    """SIGKILL during the index build (made to wait there); the next run redoes the work and gives the clean run's
    bytes."""
    cache, out, marker = tmp_path / "cache", tmp_path / "runs", tmp_path / "building"
    args = ["run", str(SAMPLE_BM25), "--out", str(out), "--cache", str(cache), "-q"]
    proc = paused_cascade("lucene", marker, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(marker, proc)
    assert Path(marker.read_text()).is_dir(), "the build's temp folder exists while it waits"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = ArtifactStore(cache)
    assert not [p for p in (cache / "lucene").iterdir() if not p.name.startswith(".")]
    assert not (out / "sample-bm25").exists()
    assert not any(store.has("runs", p.name) for p in (cache / "runs").glob("*")) if (cache / "runs").exists() else True

    rerun = run_cascade(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert not list((cache / "lucene").glob(".*.tmp-*")), "the killed build's temp folder is swept"
    clean = run_cascade("run", SAMPLE_BM25, "--out", tmp_path / "clean", "--cache", tmp_path / "c2", "-q")
    assert clean.returncode == 0, clean.stderr
    assert (out / "sample-bm25" / "run.trec").read_bytes() == (
        tmp_path / "clean" / "sample-bm25" / "run.trec"
    ).read_bytes()


def test_ctrl_c_exits_cleanly_and_leaves_no_temp_folders(tmp_path):
    """Ctrl-C while the index build waits: exit 130, one line, no temp folder, no run folder."""
    cache, out, marker = tmp_path / "cache", tmp_path / "runs", tmp_path / "building"
    args = ["run", str(SAMPLE_BM25), "--out", str(out), "--cache", str(cache), "-q"]
    proc = paused_cascade("lucene", marker, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(marker, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not list((cache / "lucene").glob(".*.tmp-*"))
    assert not (out / "sample-bm25").exists()


def test_damaged_outputs_entry_is_said_and_rebuilt(tmp_path):
    """A cut measures.json in the cached outputs (run.trec, per-query values, aggregates): one warning, rebuilt."""
    args = ["run", SAMPLE_BM25, "--out", tmp_path / "runs", "--cache", tmp_path / "cache", "-q"]
    first = run_cascade(*args)
    assert first.returncode == 0, first.stderr
    clean = (tmp_path / "runs" / "sample-bm25" / "metrics.json").read_bytes()
    (entry,) = (tmp_path / "cache" / "outputs").glob("[!.]*")
    (entry / "measures.json").write_text('{"nD')
    again = run_cascade(*args)
    assert again.returncode == 0, again.stderr
    warnings = [line for line in again.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "damaged cache entry" in warnings[0] and str(entry.name) in warnings[0]
    assert (tmp_path / "runs" / "sample-bm25" / "metrics.json").read_bytes() == clean
