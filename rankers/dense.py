"""Dense retrieval (`dense`: FAISS over corpus embeddings) and dense reranking (`dense_rerank`: no index)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from cascade.core.digest import content_key
from cascade.core.errors import CascadeError
from cascade.core.executor import WorkerSpec
from cascade.eval.datasets import doc_text
from cascade.eval.runs import normalise_run
from cascade.indexes.dense import (
    assemble_embeddings,
    build_faiss,
    encode,
    encode_spread,
    load_embeddings,
    load_faiss,
    save_faiss,
    search_faiss,
    shared_encoder,
    text_encoder,
    write_embeddings,
)
from cascade.indexes.docstore import docstore
from cascade.indexes.models import compute_label, model_fingerprint, pick_device, resolve_model
from cascade.indexes.shards import ShardKind, encode_in_shards
from cascade.indexes.shards import discard as discard_shards
from cascade.rankers.base import Context, Output, Params, Stage, fit_instruction

EMBEDDINGS_VERSION = 2  # 2: encoded in shards, docnos.txt


class EncoderParams(Params):
    model: str = Field("minilm-l6", min_length=1, description="alias, local folder or Hugging Face name")
    batch_size: int = Field(64, gt=0)
    max_length: int = Field(256, gt=8, description="document tokens")
    query_max_length: int = Field(64, gt=4)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    shard_size: int = Field(
        100_000, gt=0, description="passages per corpus-encoding shard: bounds memory; a killed encode resumes"
    )


class DenseParams(EncoderParams):
    k: int = Field(1000, gt=0)
    index: Literal["flat", "hnsw"] = "flat"
    hnsw_m: int = Field(32, ge=4, le=128)
    ef_construction: int = Field(200, gt=0)
    ef_search: int = Field(128, gt=0)


class DenseRerankParams(EncoderParams):
    k: int = Field(100, gt=0, description="rerank the top k of the upstream run")
    corpus_embeddings: bool = Field(
        False, description="read document vectors from the corpus embeddings `dense` builds (float16, built once)"
    )


class _EncoderStage(Stage):
    reads_instruction = "appended to the query text"

    def encoder(self):
        p = self.params
        return shared_encoder(resolve_model(p.model, where=f"{self.name}.model"), pick_device(p.device), p.precision)

    def worker(self, ctx: Context, dtype: str = "float32") -> WorkerSpec:
        """What the executor's workers run: this stage's model on texts (`auto` device resolved on the worker)."""
        p = self.params
        resolved = resolve_model(p.model, where=f"{self.name}.model")
        args = (resolved, p.device, p.precision, p.batch_size, p.max_length, ctx.threads, dtype)
        return WorkerSpec(self.name, text_encoder, args)

    def cache_parts(self, ctx: Context) -> dict:
        """The model's content, and where and in what precision it runs (`auto` resolves per machine)."""
        return {
            **super().cache_parts(ctx),
            "model": model_fingerprint(resolve_model(self.params.model, where=f"{self.name}.model")),
            "compute": ctx.executor.call(compute_label, self.params.device, self.params.precision),
        }

    def encode_queries(self, queries: pd.DataFrame, ctx: Context) -> np.ndarray:
        texts = [query_text(row) for row in queries.to_dict("records")]
        max_length = self.params.query_max_length
        encoder = self.encoder()
        if "instruction" in queries and (queries["instruction"].fillna("") != "").any():
            # the query keeps its own budget and the instruction gets the rest of the document window
            # (`cascade.rankers.base.fit_instruction`): appended as is, a long query would push it out of the window
            p = self.params
            texts = [
                fit_instruction(
                    q, i, encoder.tokenizer, p.query_max_length - 2, max(p.max_length - p.query_max_length, 8)
                )
                for q, i in zip(queries["query"], queries["instruction"].fillna(""), strict=True)
            ]
            max_length = max(p.max_length, p.query_max_length)
        return encode(
            encoder,
            texts,
            batch_size=self.params.batch_size,
            max_length=max_length,
            progress=ctx.progress,
            desc=f"{self.name}: queries",
        )


def query_text(row: dict) -> str:
    """A bi-encoder has one text slot: an instruction, when present, is appended to the query."""
    instruction = row.get("instruction") or ""
    return f"{row['query']} {instruction}".strip()


class Dense(_EncoderStage):
    """First-stage dense retrieval: corpus embeddings (float16, cached) searched with FAISS."""

    name = "dense"
    depth_param = "k"
    Params = DenseParams
    uses_corpus = True

    def embeddings_address(self, ctx: Context) -> tuple[dict, str]:
        """What the corpus embeddings are made from, and their content key (known before anything is built)."""
        p = self.params
        corpus = ctx.require_corpus(self.name)
        resolved = resolve_model(p.model, where=f"{self.name}.model")
        made_from = {
            "model": model_fingerprint(resolved),
            "corpus": corpus.fingerprint,
            "max_length": p.max_length,
            "batch_size": p.batch_size,
            "shard_size": p.shard_size,
            "precision": ctx.executor.call(compute_label, p.device, p.precision),
            "version": EMBEDDINGS_VERSION,
        }
        return made_from, content_key(made_from)

    def embeddings(self, ctx: Context) -> Path:
        p = self.params
        corpus = ctx.require_corpus(self.name)
        made_from, key = self.embeddings_address(ctx)
        shards = ctx.store.root / "shards" / "dense-embeddings" / key

        def build(tmp: Path) -> dict:
            kind = ShardKind("dense", self.worker(ctx, "float16"), write_embeddings)
            total = docstore(ctx, self.name).size
            report = encode_in_shards(
                shards,
                corpus.docs(),
                p.shard_size,
                kind,
                doc_text,
                total=total,
                progress=ctx.corpus_progress,
                executor=ctx.executor,
            )
            if not report.records:
                raise CascadeError("the corpus has no documents to encode")
            return assemble_embeddings(shards, report, tmp)

        folder, built = ctx.store.get_or_build("dense-embeddings", key, build, made_from)
        if built:
            discard_shards(shards)
        return folder

    def faiss_index(self, ctx: Context) -> tuple[list[str], object]:
        p = self.params
        emb_folder = self.embeddings(ctx)
        made_from = {
            "embeddings": emb_folder.name,
            "index": p.index,
            **({"hnsw_m": p.hnsw_m, "ef_construction": p.ef_construction} if p.index == "hnsw" else {}),
        }

        def build(tmp: Path) -> dict:
            _, vectors = load_embeddings(emb_folder)
            save_faiss(build_faiss(vectors, p.index, p.hnsw_m, p.ef_construction, ctx.threads), tmp / "index.faiss")
            return {"documents": int(vectors.shape[0])}

        folder, _ = ctx.store.get_or_build("faiss", content_key(made_from), build, made_from)
        docnos, _ = load_embeddings(emb_folder)
        return docnos, load_faiss(folder / "index.faiss")

    def prepare(self, ctx: Context) -> None:
        self.faiss_index(ctx)

    def apply(self, inp: pd.DataFrame, ctx: Context, inputs: list[pd.DataFrame]) -> Output:
        """The run, with what building the corpus embeddings took (shards encoded now and reused) as statistics."""
        run = self.transform(inp, ctx)
        card = ctx.store.card("dense-embeddings", self.embeddings(ctx).name)
        keys = ("documents", "shards", "shards_encoded", "shards_reused", "shards_repaired")
        keys += ("encode_peak_rss_mb", "shard_workers", "build_seconds")
        return Output(run, {"embeddings": {k: card[k] for k in keys if k in card}})

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        queries = inp.drop_duplicates("qid")
        docnos, index = self.faiss_index(ctx)
        vectors = self.encode_queries(queries, ctx)
        k = min(self.params.k, len(docnos))
        scores, ids = search_faiss(index, vectors, k, self.params.ef_search, ctx.threads)
        keep = ids >= 0
        docno_arr = np.asarray(docnos, dtype=object)
        run = pd.DataFrame(
            {
                "qid": np.repeat(queries["qid"].to_numpy(), k)[keep.ravel()],
                "docno": docno_arr[ids[keep]],
                "score": scores[keep].astype("float64"),
            }
        )
        return _ranked(run)


class DenseRerank(_EncoderStage):
    """Scores the upstream top-k by query-document inner product, encoding only those documents."""

    name = "dense_rerank"
    depth_param = "k"
    reranks = True
    Params = DenseRerankParams
    uses_corpus = True

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        head, tail = split_top_k(inp, self.params.k)
        queries = head.drop_duplicates("qid")
        qvec = dict(zip(queries["qid"], self.encode_queries(queries, ctx), strict=True))
        if self.params.corpus_embeddings:
            return rerank_merge(head.assign(score=self._score_from_corpus(head, qvec, ctx)), tail)
        unique = pd.unique(head["docno"])
        texts = docstore(ctx, self.name).texts(unique)
        p, encoder = self.params, self.encoder()
        if ctx.executor.distributed:
            dim = encoder.model.config.hidden_size
            dvecs = encode_spread(
                ctx.executor, self.worker(ctx), encoder.tokenizer, texts, batch_size=p.batch_size,
                max_length=p.max_length, dim=dim,
            )  # fmt: skip
        else:
            dvecs = encode(
                encoder,
                texts,
                batch_size=p.batch_size,
                max_length=p.max_length,
                progress=ctx.progress,
                desc="dense_rerank: docs",
            )
        row_of = {d: i for i, d in enumerate(unique)}
        doc_matrix = dvecs[[row_of[d] for d in head["docno"]]]
        query_matrix = np.stack([qvec[q] for q in head["qid"]])
        head = head.assign(score=(doc_matrix * query_matrix).sum(1).astype("float64"))
        return rerank_merge(head, tail)

    def _score_from_corpus(self, head: pd.DataFrame, qvec: dict, ctx: Context) -> np.ndarray:
        """Inner products with the stored corpus vectors: no document is encoded twice across runs."""
        p = self.params
        dense = Dense(
            model=p.model,
            batch_size=p.batch_size,
            max_length=p.max_length,
            device=p.device,
            precision=p.precision,
            shard_size=p.shard_size,
        )
        docnos, matrix = load_embeddings(dense.embeddings(ctx))
        row_of = {d: i for i, d in enumerate(docnos)}
        rows = [row_of[d] for d in head["docno"]]
        doc_matrix = np.asarray(matrix[rows], dtype=np.float32)
        query_matrix = np.stack([qvec[q] for q in head["qid"]])
        return (doc_matrix * query_matrix).sum(1).astype("float64")


def split_top_k(run: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The candidates a reranker scores (rank <= k) and the rest, which keep their order below them."""
    top = run["rank"] <= k
    return run[top].copy(), run[~top].copy()


def rerank_merge(head: pd.DataFrame, tail: pd.DataFrame) -> pd.DataFrame:
    """Reranked head first, then the untouched tail, per query; scores of the tail are shifted below the head."""
    head = normalise_run(head[["qid", "docno", "score"]].assign(rank=0))
    if tail.empty:
        return head
    floor = head.groupby("qid")["score"].min()
    tail = tail[["qid", "docno", "score", "rank"]].copy()
    offset = tail.groupby("qid")["score"].transform("max") - tail["qid"].map(floor).fillna(0) + 1.0
    tail["score"] = tail["score"] - offset
    order = {q: i for i, q in enumerate(pd.unique(pd.concat([head["qid"], tail["qid"]])))}
    both = pd.concat([head, tail], ignore_index=True)
    both = both.assign(_q=both["qid"].map(order), _h=np.r_[np.zeros(len(head)), np.ones(len(tail))])
    both = both.sort_values(["_q", "_h", "score"], ascending=[True, True, False], kind="mergesort")
    return normalise_run(both.drop(columns=["_q", "_h"]).reset_index(drop=True))


def _ranked(run: pd.DataFrame) -> pd.DataFrame:
    return normalise_run(run.assign(rank=0))
