"""SPLADE as a reranker: `sparse_rerank` scores the upstream top k by the inner product of sparse vectors.

    - bm25: {k: 1000}
    - sparse_rerank: {encoder: splade-tiny, k: 100}

By default only the candidates are encoded, and nothing is written to the store. With `corpus_vectors: true` the
documents' vectors come from the corpus vectors the `sparse` stage caches (`.cascade/sparse_vectors/<key>/`, the
same content key, so the same encoder, corpus, max_length, batch_size and compute read the same entry), encoded
here first when the store lacks them. The choice is a parameter, as `dense_rerank`'s `corpus_embeddings`, and not
whatever the store happens to hold: a candidate encoded in its own batch and its corpus vector may differ in the
last bits, enough to flip a tree split downstream (the cv suite's LambdaMART moved by 2e-3 nDCG@10), and a config
must give the same run whatever ran before it. Which vectors were read is in the stage's cache key and statistics.
Queries are encoded as `sparse` encodes them (the query text only, no instruction), so over the same documents its
scores are the `sparse` stage's inner products, accumulated in float64. Ties keep the upstream order, as every
reranker's.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from cascade.core.errors import CascadeError
from cascade.indexes.docstore import docstore
from cascade.indexes.models import compute_label
from cascade.indexes.sparse_encoder import encode
from cascade.indexes.sparse_vectors import SparseVectors
from cascade.rankers.base import Context, Output, Params, Stage
from cascade.rankers.dense import rerank_merge, split_top_k
from cascade.rankers.sparse_index import corpus_vectors, load_vectors, sparse_encoder, vectors_address
from cascade.rankers.sparse_params import SparseParams


class SparseRerankParams(Params):
    encoder: str = Field("splade-tiny", min_length=1, description="splade-tiny, a local folder or a Hugging Face id")
    k: int = Field(100, gt=0, description="rerank the top k of the upstream run")
    max_length: int = Field(256, gt=8, le=512, description="document tokens")
    query_max_length: int = Field(64, gt=4, le=512)
    batch_size: int = Field(32, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    shard_size: int = Field(100_000, gt=0, description="the `sparse` stage's shard size, to find its corpus vectors")
    corpus_vectors: bool = Field(
        False, description="read document vectors from the corpus vectors `sparse` builds (encoded here if missing)"
    )


class SparseRerank(Stage):
    """Scores the upstream top k with SPLADE inner products: cached corpus vectors, or the candidates encoded."""

    name = "sparse_rerank"
    depth_param = "k"
    reranks = True
    Params = SparseRerankParams
    uses_corpus = True

    def encoder(self) -> Any:
        p = self.params
        return sparse_encoder(p.encoder, p.device, p.precision)

    def sparse_params(self) -> SparseParams:
        """The `sparse` stage's parameters that address the same corpus vectors."""
        p = self.params
        return SparseParams(
            encoder=p.encoder,
            index="exact",
            max_length=p.max_length,
            batch_size=p.batch_size,
            device=p.device,
            precision=p.precision,
            shard_size=p.shard_size,
        )

    def vectors_key(self, ctx: Context) -> str | None:
        """The content key of the corpus vectors it reads (with `corpus_vectors: true`), built or not yet."""
        if not self.params.corpus_vectors:
            return None
        p = self.params
        fingerprint = ctx.require_corpus(self.name).fingerprint
        _, key = vectors_address(self.encoder().identity(), fingerprint, p.max_length, p.batch_size, p.shard_size)
        return key

    def cache_parts(self, ctx: Context) -> dict:
        return {
            **super().cache_parts(ctx),
            "compute": compute_label(self.params.device, self.params.precision),
            "corpus_vectors": self.vectors_key(ctx),
        }

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        return self.apply(inp, ctx, []).run

    def apply(self, inp: pd.DataFrame, ctx: Context, inputs: list[pd.DataFrame]) -> Output:
        p = self.params
        head, tail = split_top_k(inp, p.k)
        folder, key = corpus_vectors(self.sparse_params(), ctx) if p.corpus_vectors and not head.empty else (None, None)
        stats: dict[str, Any] = {"corpus_vectors": key, "encoded_documents": 0}
        if head.empty:
            return Output(rerank_merge(head.assign(score=np.zeros(0)), tail), stats)
        encoder = self.encoder()
        qids = pd.unique(head["qid"])
        first = head.drop_duplicates("qid").set_index("qid")["query"]
        queries = encode(encoder, [str(first[q]) for q in qids], max_length=p.query_max_length, batch_size=p.batch_size)
        if key is not None:
            docs = load_vectors(folder)
            row_of = {d: i for i, d in enumerate(docs.docnos or [])}
            missing = [d for d in pd.unique(head["docno"]) if d not in row_of]
            if missing:  # a run from elsewhere (a run file) may name documents the corpus lacks
                raise CascadeError(f"document {missing[0]!r} of the upstream run is not in the corpus", where=self.name)
            doc_rows = np.fromiter((row_of[d] for d in head["docno"]), dtype=np.int64, count=len(head))
        else:
            unique = list(pd.unique(head["docno"]))
            docs = encode(
                encoder,
                docstore(ctx, self.name).texts(unique),
                max_length=p.max_length,
                batch_size=p.batch_size,
                progress=ctx.progress,
                desc="sparse_rerank: docs",
            )
            stats["encoded_documents"] = len(unique)
            row_of = {d: i for i, d in enumerate(unique)}
            doc_rows = np.fromiter((row_of[d] for d in head["docno"]), dtype=np.int64, count=len(head))
        query_of = {q: i for i, q in enumerate(qids)}
        query_rows = np.fromiter((query_of[q] for q in head["qid"]), dtype=np.int64, count=len(head))
        scores = pair_dots(queries, query_rows, docs, doc_rows)
        return Output(rerank_merge(head.assign(score=scores), tail), stats)


def pair_dots(queries: SparseVectors, query_rows: np.ndarray, docs: SparseVectors, doc_rows: np.ndarray) -> np.ndarray:
    """The inner product of query row `query_rows[i]` and document row `doc_rows[i]`, for each i, in float64."""
    q = queries.csr()[query_rows].astype(np.float64)
    d = docs.csr()[doc_rows].astype(np.float64)  # only the candidates' rows of a (memory-mapped) corpus
    return np.asarray(q.multiply(d).sum(axis=1), dtype=np.float64).ravel()
