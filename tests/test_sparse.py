"""Learned sparse retrieval on the built-in sample with the real splade-tiny: encoder, three indexes, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import doc_text, load_dataset
from cascade.eval.report.runs import read_run_folder
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config
from cascade.rankers import Context
from cascade.rankers.sparse import Sparse, corpus_vectors, load_vectors

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {name: ROOT / "configs" / "sample" / f"splade-{name}.yaml" for name in ("exact", "seismic", "lucene-impact")}


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


@pytest.fixture(scope="module")
def ctx(sample, cache_dir):
    return Context(store=ArtifactStore(cache_dir), corpus=sample.corpus, progress=False, threads=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir):
    """The three sample configs through the runner: results and manifests."""
    out = tmp_path_factory.mktemp("sparse-runs")
    results = {}
    for name, path in CONFIGS.items():
        result = run_config(load_config(path), path, out, cache_dir=cache_dir, threads=2, progress=False)
        results[name] = (result, json.loads((result.folder / "manifest.json").read_text()))
    return results


def splade_folder() -> Path:
    from cascade.indexes.models import resolve_model

    return Path(resolve_model("splade-tiny"))


# --------------------------------------------------------------------------- encoder


def test_fast_encoder_gives_the_reference_vectors(sample):
    from cascade.indexes.sparse_encoder import encode, encode_reference, load_reference_model, load_sparse_encoder

    texts = [doc_text(d) for d in sample.corpus.docs()][:24]
    encoder = load_sparse_encoder("splade-tiny", "cpu", "fp32")
    fast = encode(encoder, texts, max_length=256, batch_size=16).csr()
    tokenizer, model = load_reference_model("splade-tiny")
    reference = encode_reference(model.eval(), tokenizer, texts, max_length=256, batch_size=16).csr()
    assert fast.shape == reference.shape == (24, 30522)
    assert (fast != 0).sum() == (reference != 0).sum() > 24 * 50  # SPLADE expands: ~130-170 terms per passage
    assert abs(fast - reference).max() < 1e-4
    again = encode(encoder, texts, max_length=256, batch_size=16).csr()
    assert (again != fast).nnz == 0  # deterministic


def test_local_model_folder_is_the_same_encoder(sample, ctx):
    from cascade.indexes.sparse_encoder import load_sparse_encoder

    by_alias = load_sparse_encoder("splade-tiny", "cpu", "auto")
    by_path = load_sparse_encoder(str(splade_folder()), "cpu", "auto")
    assert by_alias.fingerprint == by_path.fingerprint  # content-addressed: same files, same vectors cache
    _, key_alias = corpus_vectors(Sparse(index="exact").params, ctx)
    _, key_path = corpus_vectors(Sparse(index="exact", encoder=str(splade_folder())).params, ctx)
    assert key_alias == key_path


def test_corpus_vectors_are_cached_as_csr_arrays(sample, ctx):
    path, _ = corpus_vectors(Sparse(index="exact").params, ctx)
    names = sorted(p.name for p in path.iterdir())
    assert names == ["card.json", "data.npy", "docnos.txt", "indices.npy", "indptr.npy"]
    vectors = load_vectors(path)
    assert vectors.docnos == [d["docno"] for d in sample.corpus.docs()]
    assert vectors.indices.dtype == np.int32 and vectors.data.dtype == np.float32
    assert (np.asarray(vectors.data) > 0).all()
    card = json.loads((path / "card.json").read_text())
    assert card["made_from"]["corpus"] == sample.corpus.fingerprint


# --------------------------------------------------------------------------- indexes


def test_exact_search_equals_dense_numpy(ctx):
    from cascade.indexes.sparse_exact import build_exact, search_exact

    path, _ = corpus_vectors(Sparse(index="exact").params, ctx)
    vectors = load_vectors(path, mmap=False)
    dense = vectors.csr().toarray()
    rng = np.random.default_rng(0)
    queries = [(np.sort(rng.choice(30522, 20, replace=False)), rng.random(20).astype(np.float32)) for _ in range(5)]
    queries.append(vectors.row(7))  # a document as the query: it must come first
    results = search_exact(build_exact(vectors), queries, 10)
    for (terms, weights), (docs, scores) in zip(queries, results, strict=True):
        full = dense[:, terms] @ weights
        positive = np.flatnonzero(full > 0)
        expected = positive[np.lexsort((positive, -full[positive]))][:10]
        assert list(docs) == list(expected)
        np.testing.assert_allclose(scores, full[docs], rtol=1e-5)
    assert results[-1][0][0] == 7


def test_all_three_indexes_run_and_agree_with_exact(runs):
    exact = runs["exact"][0].measures["nDCG@10"]
    assert 0.4 < exact < 1.0
    for name in ("seismic", "lucene-impact"):
        result, manifest = runs[name]
        stats = manifest["stages"][0]["stats"]
        assert stats["accuracy@10"] >= 0.95, (name, stats)
        assert abs(result.measures["nDCG@10"] - exact) < 0.02, name


def test_manifest_records_accuracy_latency_and_index_facts(runs):
    for name, (_, manifest) in runs.items():
        stats = manifest["stages"][0]["stats"]
        for key in ("latency_1t_mean_ms", "latency_1t_p50_ms", "latency_1t_p99_ms", "latency_mt_p50_ms", "qps_mt"):
            assert stats[key] > 0, (name, key)
        assert stats["index_bytes"] > 0 and stats["build_seconds"] is not None
        assert stats["query_encode_qps"] > 0 and stats["empty_queries"] == 0
        if name != "exact":
            assert "accuracy@100" in stats and stats["build_memory_bytes"] is not None
        # the leaderboard's columns: the same figures as the stage stats, the wall-clock ones in the manifest only
        result, _ = runs[name]
        summary = json.loads((result.folder / "metrics.json").read_text())["summary"]
        timed = manifest["summary"]
        assert timed["p50 ms, 1 thread"] == pytest.approx(stats["latency_1t_p50_ms"], abs=1e-4)
        assert not {"p50 ms, 1 thread", "p99 ms, 1 thread", "build s"} & set(summary)  # nor any timing
        assert summary["index MB"] == pytest.approx(stats["index_bytes"] * 1e-6, abs=1e-4)
        if "accuracy@10" in stats:
            assert summary["accuracy@10 vs exact"] == pytest.approx(stats["accuracy@10"], abs=1e-4)
        board = read_run_folder(result.folder).summary  # what the report shows: both
        assert board["p50 ms, 1 thread"] == timed["p50 ms, 1 thread"] and board["index MB"] == summary["index MB"]


def test_cached_rerun_keeps_the_stats(runs, tmp_path, cache_dir):
    again = run_config(load_config(CONFIGS["seismic"]), CONFIGS["seismic"], tmp_path, cache_dir=cache_dir)
    assert [t.cached for t in again.timings] == [True]
    manifest = json.loads((again.folder / "manifest.json").read_text())
    assert manifest["stages"][0]["stats"] == runs["seismic"][1]["stages"][0]["stats"]


def cache_with_vectors(cache_dir: Path, target: Path) -> Path:
    """A fresh cache holding only the session's encoded sample vectors: indexes get built, nothing is re-encoded."""
    shutil.copytree(cache_dir / "sparse_vectors", target / "sparse_vectors", ignore=shutil.ignore_patterns(".*"))
    return target


def test_only_the_chosen_index_knobs_enter_the_cache_key(ctx):
    base = Sparse(index="exact").cache_parts(ctx)
    assert base == Sparse(index="exact", seismic={"heap_factor": 0.3}).cache_parts(ctx)
    seismic = Sparse(index="seismic").cache_parts(ctx)
    assert seismic != Sparse(index="seismic", seismic={"heap_factor": 0.3}).cache_parts(ctx)


@pytest.mark.parametrize("stage", ["sparse", "sparse_rerank", "dense", "dense_rerank", "cross_encoder"])
def test_neural_cache_keys_hold_the_resolved_precision_not_auto(ctx, stage):
    """`precision: auto` is bf16 on CPUs with AMX and fp32 elsewhere; a cache shared between them must not mix."""
    from cascade.indexes.models import autocast_dtype
    from cascade.rankers import STAGES

    def compute(precision: str) -> str:
        extra = {"model": "minilm-l6"} if stage == "cross_encoder" else {}
        return STAGES[stage](device="cpu", precision=precision, **extra).cache_parts(ctx)["compute"]

    fp32, bf16, auto = compute("fp32"), compute("bf16"), compute("auto")
    assert fp32 == "cpu/fp32" and bf16 == "cpu/torch.bfloat16"
    assert auto == (bf16 if autocast_dtype("cpu", "auto") is not None else fp32)


# --------------------------------------------------------------------------- bad input


def test_query_with_only_unknown_terms_gets_an_empty_result(sample, ctx, capsys):
    queries = sample.queries.head(3).reset_index(drop=True)
    path, _ = corpus_vectors(Sparse(index="exact").params, ctx)
    vectors = load_vectors(path)
    unused = np.setdiff1d(np.arange(vectors.dim), np.asarray(vectors.indices))[:3].astype(np.int32)
    for index in ("exact", "seismic", "lucene_impact"):
        stage = Sparse(index=index, k=10, seismic={"n_postings": 200, "query_cut": 20, "heap_factor": 0.9})
        real = Sparse.encode_queries

        def fake(self, frame, context, real=real):
            rows, qps = real(self, frame, context)
            return [rows[0], (unused, np.ones(3, np.float32)), rows[2]], qps

        stage.encode_queries = fake.__get__(stage)
        out = stage.apply(queries, ctx, [])
        run, stats = out.run, out.stats
        assert list(run["qid"].unique()) == [queries.qid[0], queries.qid[2]], index
        assert stats["empty_queries"] == 1 and stats["unknown_term_queries"] == 1, index
        assert stats["empty_qids"] == [queries.qid[1]]
        assert "1 of 3 queries matched no document" in capsys.readouterr().err


def write_config(tmp_path: Path, params: str, dataset: str = "sample") -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\ndataset: {dataset}\nmeasures: [nDCG@10]\npipeline:\n  - sparse: {params}\n")
    return path


def assert_one_line_error(result, pattern: str) -> None:
    import re

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ("{index: seismic, seismic: {heap_factor: 1.5}}", r"bad\.yaml:5: pipeline\[0\]\.sparse\.seismic\.heap_factor"),
        ("{index: seismic, seismic: {centroid_fraction: 0}}", r"sparse\.seismic\.centroid_fraction: .*greater than 0"),
        ("{index: seismic, seismic: {n_knn: 5}}", r"sparse\.seismic: .*n_knn=5 needs an index built with nknn >= 5"),
        ("{index: faiss}", r"pipeline\[0\]\.sparse\.index: "),
    ],
)
def test_parameter_out_of_range(cascade, tmp_path, params, pattern):
    result = cascade("run", write_config(tmp_path, params), "--out", tmp_path / "runs", "--cache", tmp_path / "c")
    assert_one_line_error(result, pattern)
    assert not (tmp_path / "runs").exists()


def test_encoder_that_is_not_a_masked_lm(cascade, tmp_path):
    from transformers import BertConfig, BertModel

    folder = tmp_path / "not-mlm"
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)  # fmt: skip
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(splade_folder() / name, folder / name)
    with pytest.raises(CascadeError, match="not a masked language model"):
        from cascade.indexes.sparse_encoder import load_sparse_encoder

        load_sparse_encoder(str(folder))
    config = write_config(tmp_path, "{encoder: " + str(folder) + ", index: exact}")
    result = cascade("run", config, "--out", tmp_path / "runs", "--cache", tmp_path / "c")
    assert_one_line_error(result, r"encoder: encoder '.*not-mlm' is not a masked language model \(BertModel\)")


def test_corpus_vectors_of_another_corpus(cascade, ctx, tmp_path):
    vectors, _ = corpus_vectors(Sparse(index="exact").params, ctx)
    other = tmp_path / "other"
    (other / "qrels").mkdir(parents=True)
    (other / "corpus.jsonl").write_text('{"_id": "a", "title": "", "text": "a small text about seismic data"}\n')
    (other / "queries.jsonl").write_text('{"_id": "1", "text": "seismic"}\n')
    (other / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\ta\t1\n")
    params = "{index: exact, vectors: " + str(vectors) + "}"
    config = write_config(tmp_path, params, dataset="{path: " + str(other) + "}")
    result = cascade("run", config, "--out", tmp_path / "runs", "--cache", tmp_path / "c")
    assert_one_line_error(result, r"card\.json: corpus vectors were encoded from corpus 'sha256:.*', not from this")


def test_corpus_vectors_file_that_does_not_match_its_card(cascade, ctx, tmp_path):
    vectors, _ = corpus_vectors(Sparse(index="exact").params, ctx)
    broken = tmp_path / "vectors"
    shutil.copytree(vectors, broken)
    lines = (broken / "docnos.txt").read_text().splitlines()
    (broken / "docnos.txt").write_text("\n".join(lines[:-1]) + "\n")
    config = write_config(tmp_path, "{index: seismic, vectors: " + str(broken) + "}")
    result = cascade("run", config, "--out", tmp_path / "runs", "--cache", tmp_path / "c")
    assert_one_line_error(result, r"docnos\.txt: \d+ document ids, but the card says \d+ rows")


def test_given_vectors_folder_gives_the_same_run_as_encoding(ctx, sample, tmp_path):
    vectors, _ = corpus_vectors(Sparse(index="exact").params, ctx)
    copy = tmp_path / "copy"
    shutil.copytree(vectors, copy)
    queries = sample.queries.head(5)
    encoded = Sparse(index="exact", k=20, measure=False).transform(queries, ctx)
    given = Sparse(index="exact", k=20, measure=False, vectors=str(copy)).transform(queries, ctx)
    pd.testing.assert_frame_equal(encoded, given)


# --------------------------------------------------------------------------- sweep


def test_sweep_reuses_the_index_and_keeps_seismic_output_in_its_log(cascade, runs, cache_dir, tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(CONFIGS["seismic"].read_text())
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: s\nbase: base.yaml\ngrid:\n  sparse.seismic.heap_factor: [0.5, 1.0]\n"
        "  sparse.seismic.query_cut: [5, 20]\ntarget: {accuracy@10: 0.9}\n"
    )
    cache = cache_with_vectors(cache_dir, tmp_path / "c")
    result = cascade("sweep", sweep, "--out", tmp_path / "sweeps", "--cache", cache, "-q")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "sweeps" / "s"
    assert (folder / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (folder / "sweep.md").read_text()
    assert table.count("\n| 0.5 |") + table.count("\n| 1.0 |") == 4
    assert "Pareto frontier: latency vs nDCG@10" in table and "Pareto frontier: latency vs accuracy@10" in table
    assert "**Target accuracy@10 >= 0.9:**" in table
    points = json.loads((folder / "sweep.json").read_text())["points"]
    assert len(points) == 4 and all(p["latency_ms"] > 0 for p in points)
    best = max(points, key=lambda p: (p["knobs"]["sparse.seismic.heap_factor"], p["knobs"]["sparse.seismic.query_cut"]))
    assert best["accuracy@10"] >= 0.9
    assert len([p for p in (cache / "seismic").iterdir() if not p.name.startswith(".")]) == 1  # built once
    # Seismic's own progress (printed from Rust) went to its log, not to cascade's output
    assert "Building" not in result.stdout + result.stderr and "posting" not in result.stdout + result.stderr
    assert len(result.stdout.strip().splitlines()) == 5  # one line per point, then where the sweep went
    (build_log,) = [p for p in (cache / "logs").glob("seismic-*.log") if p.name != "seismic-open.log"]
    assert "Building the index" in build_log.read_text()


def test_sweep_config_errors_are_one_line(cascade, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: s\nbase: {CONFIGS['seismic']}\ngrid:\n  sparse.seismic.heap_factor: [0.5, 2.0]\n")
    result = cascade("sweep", sweep, "--out", tmp_path / "sweeps", "--cache", tmp_path / "c")
    assert_one_line_error(result, r"sweep\.yaml:4: grid\.sparse\.seismic\.heap_factor\[1\]: value 2\.0: ")


def test_pareto_frontier_keeps_points_no_other_beats():
    from cascade.pipelines.sweep import pareto

    def row(latency, acc):
        return {"latency_ms": latency, "accuracy@10": acc, "measures": {"nDCG@10": acc}}

    rows = [row(1.0, 0.90), row(2.0, 0.85), row(0.5, 0.80), row(3.0, 0.99), row(1.0, 0.95), row(None, 1.0)]
    assert pareto(rows, "accuracy@10") == [2, 4, 3]
    assert pareto(rows, "nDCG@10") == [2, 4, 3]
