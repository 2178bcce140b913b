"""Dense stages with the real MiniLM weights and FAISS on the built-in sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import doc_text, load_dataset
from cascade.indexes.dense import encode, load_embeddings, load_encoder
from cascade.indexes.models import resolve_model
from cascade.rankers import BM25, Context, Dense, DenseRerank


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


@pytest.fixture(scope="module")
def ctx(sample, cache_dir):
    return Context(store=ArtifactStore(cache_dir), corpus=sample.corpus, progress=False)


def test_vectors_equal_sentence_transformers(sample):
    from sentence_transformers import SentenceTransformer

    texts = [doc_text(d) for d in list(sample.corpus.docs())[:24]]
    path = resolve_model("minilm-l6")
    ours = encode(load_encoder(path, "cpu", "fp32"), texts, batch_size=8, max_length=256)
    theirs = SentenceTransformer(path, device="cpu").encode(texts, batch_size=8)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_flat_search_equals_brute_force_over_cached_float16_embeddings(sample, ctx):
    stage = Dense(k=10)
    run = stage.transform(sample.queries, ctx)
    docnos, matrix = load_embeddings(stage.embeddings(ctx))
    assert matrix.dtype == np.float16 and isinstance(matrix, np.memmap)
    queries = stage.encode_queries(sample.queries, ctx)
    brute = queries @ np.asarray(matrix, dtype=np.float32).T
    for i, qid in enumerate(sample.queries["qid"][:20]):
        top = [docnos[j] for j in np.argsort(-brute[i], kind="stable")[:10]]
        got = run[run.qid == qid].sort_values("rank")["docno"].tolist()
        assert got[:5] == top[:5]


def test_hnsw_agrees_with_flat(sample, ctx):
    flat = Dense(k=10).transform(sample.queries, ctx)
    hnsw = Dense(k=10, index="hnsw", hnsw_m=16, ef_construction=100, ef_search=64).transform(sample.queries, ctx)
    overlap = [len(set(flat[flat.qid == q].docno) & set(hnsw[hnsw.qid == q].docno)) / 10 for q in sample.queries["qid"]]
    assert np.mean(overlap) >= 0.95


def test_dense_rerank_only_reorders_the_top_k(sample, ctx):
    queries = sample.queries.head(10)
    bm25 = BM25(k=30).transform(queries, ctx).merge(queries, on="qid")
    reranked = DenseRerank(k=10).transform(bm25, ctx)
    for qid in queries["qid"]:
        before = bm25[bm25.qid == qid].sort_values("rank")
        after = reranked[reranked.qid == qid].sort_values("rank")
        assert set(after.docno[:10]) == set(before.docno[:10])
        assert after.docno[10:].tolist() == before.docno[10:].tolist()
    assert not reranked["docno"].equals(bm25["docno"])


def test_dense_beats_nothing_but_is_a_real_ranker(sample, ctx):
    from cascade.eval.measures import evaluate, parse_measures

    run = Dense(k=100).transform(sample.queries, ctx)
    ndcg = evaluate(run, sample.qrels, parse_measures(["nDCG@10"]))[0]["nDCG@10"]
    assert 0.5 < ndcg < 1.0


def test_unknown_model_and_folder_without_weights(tmp_path, ctx, sample):
    with pytest.raises(CascadeError, match="unknown model 'nobody/nothing'"):
        Dense(model="nobody/nothing").transform(sample.queries.head(2), ctx)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CascadeError, match="has no weights"):
        Dense(model=str(tmp_path)).transform(sample.queries.head(2), ctx)


def test_bad_model_through_the_cli_is_one_line(cascade, tmp_path):
    config = tmp_path / "d.yaml"
    config.write_text("name: d\ndataset: sample\npipeline:\n  - dense: {model: nobody/nothing}\n")
    result = cascade("run", config, "--out", tmp_path / "runs", "--cache", tmp_path / "c")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "dense.model: unknown model 'nobody/nothing'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_queries_with_instructions_are_encoded_with_them(sample, ctx):
    with_instr = sample.queries[sample.queries["instruction"] != ""].head(3)
    assert len(with_instr) == 3
    stage = Dense(k=5)
    plain = stage.encode_queries(with_instr.assign(instruction=""), ctx)
    full = stage.encode_queries(with_instr, ctx)
    assert not np.allclose(plain, full)
    assert isinstance(pd.DataFrame(full), pd.DataFrame)


def test_rerank_from_stored_corpus_embeddings_matches_fresh_encoding(sample, ctx):
    queries = sample.queries.head(8)
    bm25 = BM25(k=20).transform(queries, ctx).merge(queries, on="qid")
    fresh = DenseRerank(k=20).transform(bm25, ctx)
    stored = DenseRerank(k=20, corpus_embeddings=True).transform(bm25, ctx)
    merged = fresh.merge(stored, on=["qid", "docno"], suffixes=("", "_stored"))
    assert len(merged) == len(fresh)
    assert (merged["score"] - merged["score_stored"]).abs().max() < 5e-3  # float16 storage


def test_a_long_query_cannot_push_its_instruction_out_of_the_window():
    from transformers import AutoTokenizer

    from cascade.indexes.models import resolve_model
    from cascade.rankers.base import fit_instruction
    from cascade.rankers.cross_encoder import pair_segments

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))
    query = " ".join(f"word{i}" for i in range(300))  # a paragraph-long query, as in BIRCO
    instruction = "find the passage that refutes the argument"
    text = fit_instruction(query, instruction, tokenizer, 62, 192)
    assert text.endswith(instruction) and len(tokenizer.tokenize(text)) <= 62 + 192
    assert fit_instruction("short query", instruction, tokenizer, 62, 192) == f"short query {instruction}"
    (first,) = pair_segments([query], [instruction], tokenizer.sep_token, tokenizer, 256)
    pair = tokenizer(first, "a passage " * 300, truncation=True, max_length=256)
    assert instruction in tokenizer.decode(pair["input_ids"])  # truncation cuts the passage, not the instruction


def test_length_sorted_batches_are_longest_first_and_stable():
    from cascade.indexes.batching import length_sorted_batches, pad_rows

    batches = length_sorted_batches([2, 5, 2, 7, 5, 2], 4)
    assert [b.tolist() for b in batches] == [[3, 1, 4, 0], [2, 5]]  # ties keep input order
    assert length_sorted_batches([], 4) == []
    ids, mask = pad_rows([[1, 2], [3, 4, 5], [6]], [1, 2], pad_id=0)
    assert ids.tolist() == [[3, 4, 5], [6, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == mask.dtype == np.int64
