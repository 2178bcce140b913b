"""`sparse_rerank` on the built-in sample with the real splade-tiny: exact inner products, the cached corpus
vectors reused exactly when `sparse` made them, only the candidates encoded otherwise, and agreement with `sparse`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.core.store import ArtifactStore
from cascade.eval.datasets import doc_text, load_dataset
from cascade.indexes.sparse_encoder import encode, load_sparse_encoder
from cascade.rankers import BM25, Context, Sparse, SparseRerank
from cascade.rankers.engine import execute

FP32 = {"precision": "fp32", "device": "cpu"}


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


def fresh(sample, folder: Path) -> Context:
    return Context(store=ArtifactStore(folder), corpus=sample.corpus, progress=False, threads=2)


def direct_scores(sample, run: pd.DataFrame) -> np.ndarray:
    """Each (query, document) pair's inner product, from the same encoder's vectors of the run's queries and
    documents (each list encoded in one call, as the stage batches them: batching moves weights by float noise)."""
    encoder = load_sparse_encoder("splade-tiny", "cpu", "fp32")
    queries = dict(zip(sample.queries["qid"], sample.queries["query"], strict=True))

    def vectors(texts: list[str], max_length: int) -> list[dict[int, float]]:
        found = encode(encoder, texts, max_length=max_length)
        rows = (found.row(i) for i in range(len(found)))
        return [dict(zip(t.tolist(), w.astype(np.float64).tolist(), strict=True)) for t, w in rows]

    qids, docnos = list(pd.unique(run["qid"])), list(pd.unique(run["docno"]))
    qvec = dict(zip(qids, vectors([queries[q] for q in qids], 64), strict=True))
    texts = {d["docno"]: doc_text(d) for d in sample.corpus.docs()}
    dvec = dict(zip(docnos, vectors([texts[d] for d in docnos], 256), strict=True))
    return np.array(
        [
            sum(w * dvec[d].get(t, 0.0) for t, w in qvec[q].items())
            for q, d in zip(run["qid"], run["docno"], strict=True)
        ]
    )


def vector_entries(store: Path) -> list[str]:
    folder = store / "sparse_vectors"
    return sorted(p.name for p in folder.iterdir() if (p / "card.json").is_file()) if folder.is_dir() else []


def test_scores_are_inner_products_and_only_candidates_are_encoded(sample, tmp_path):
    ctx = fresh(sample, tmp_path / "cache")
    done = execute(BM25(k=20) >> SparseRerank(k=20, **FP32), sample.queries, ctx)
    run = done.frame
    assert set(run["qid"]) == set(sample.queries["qid"])
    np.testing.assert_allclose(run["score"].to_numpy(), direct_scores(sample, run), rtol=0, atol=1e-5)
    # ranked by that score, ranks 1..n per query
    for _, group in run.groupby("qid", sort=False):
        assert (np.diff(group["score"].to_numpy()) <= 0).all()
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
    # no corpus encode: the candidates only, and nothing written to the store's vectors
    stats = done.timings[-1].stats
    assert stats["corpus_vectors"] is None
    assert 0 < stats["encoded_documents"] == run["docno"].nunique() < len(list(sample.corpus.docs()))
    assert vector_entries(tmp_path / "cache") == []


def test_corpus_vectors_are_read_only_when_asked_and_the_default_ignores_the_cache(sample, tmp_path):
    """`corpus_vectors: true` reads (building when missing) the vectors `sparse` caches; the default encodes the
    candidates whether or not the store holds them, so a config's run never depends on what ran before it."""
    ctx = fresh(sample, tmp_path / "cache")
    queries = sample.queries.head(12).reset_index(drop=True)
    encoded = execute(BM25(k=20) >> SparseRerank(k=20, **FP32), queries, ctx)
    assert vector_entries(tmp_path / "cache") == []
    read = execute(BM25(k=20) >> SparseRerank(k=20, corpus_vectors=True, **FP32), queries, ctx)
    entries = vector_entries(tmp_path / "cache")
    assert len(entries) == 1  # built here, since nothing had made them
    assert read.timings[-1].stats == {"corpus_vectors": entries[0], "encoded_documents": 0}
    execute(Sparse(index="exact", k=20, measure=False, **FP32), queries, ctx)
    assert vector_entries(tmp_path / "cache") == entries  # `sparse` reads the same entry: nothing encoded again
    # the default, with the vectors now in the store: a fresh cache key is not made, the first run is served
    again = execute(BM25(k=20) >> SparseRerank(k=20, **FP32), queries, ctx)
    assert again.timings[-1].cached and again.frame.equals(encoded.frame)
    fresh_ctx = fresh(sample, tmp_path / "other")
    recomputed = execute(BM25(k=20) >> SparseRerank(k=20, **FP32), queries, fresh_ctx)
    assert recomputed.frame.equals(encoded.frame) and recomputed.timings[-1].stats["corpus_vectors"] is None
    # the same scores either way (one candidate's vector encoded alone or in the corpus batch: float noise only)
    merged = encoded.frame.merge(read.frame, on=["qid", "docno"])
    assert len(merged) == len(read.frame)
    np.testing.assert_allclose(merged["score_x"], merged["score_y"], rtol=0, atol=1e-5)
    # other encoding settings are other vectors
    other = execute(BM25(k=20) >> SparseRerank(k=20, max_length=128, corpus_vectors=True, **FP32), queries, ctx)
    assert other.timings[-1].stats["corpus_vectors"] not in (None, entries[0])


def test_agrees_with_exact_sparse_search(sample, tmp_path):
    """`sparse` (exact) and BM25 >> sparse_rerank rank the documents both return in the same order."""
    ctx = fresh(sample, tmp_path / "cache")
    first = execute(Sparse(index="exact", k=20, measure=False, **FP32), sample.queries, ctx).frame
    reranked = execute(BM25(k=1000) >> SparseRerank(k=1000, **FP32), sample.queries, ctx).frame
    compared = 0
    for qid, group in first.groupby("qid", sort=False):
        mine = reranked[reranked["qid"] == qid]
        both = set(group["docno"]) & set(mine["docno"])
        a = [d for d in group["docno"] if d in both]
        b = [d for d in mine["docno"] if d in both]
        assert a == b, qid
        scores = mine.set_index("docno")["score"]
        np.testing.assert_allclose(group.set_index("docno")["score"][a], scores[a], rtol=1e-5, atol=1e-6)
        compared += len(both)
    assert compared > 10 * len(first["qid"].unique())
