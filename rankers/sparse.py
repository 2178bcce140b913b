"""Learned sparse retrieval: one first stage, `sparse`, over three indexes of the same SPLADE vectors.

    - sparse: {encoder: splade-tiny, index: seismic, k: 1000, seismic: {query_cut: 10, heap_factor: 0.7}}

- `index: exact`: scipy sparse products, the oracle;
- `index: seismic`: the blocked inverted index of Bruch et al. (SIGIR 2024) through pyseismic-lsr;
- `index: lucene_impact`: a Lucene impact index through Anserini, weights quantised as round(w x scale).

One stage with an `index` switch, not three stages, because everything but the index is shared: the encoder, the
cached corpus vectors, the queries' vectors and the measurements. Only the chosen index's block of knobs enters
the cache key, so changing a Seismic knob never re-runs an exact config.

With `measure: true` (the default) the stage reports, through its `Output.stats` (the engine records them under the
stage in the manifest): accuracy@10 and accuracy@k against exact search on the same vectors (approximate
indexes), per-query latency single- and multi-threaded, build time, index size on disk, peak memory of the
build, encoding speeds, and the queries that matched no document.

This module is the stage; its parameters are in `sparse_params`, what it builds and reuses (the encoder, the corpus
vectors, the three indexes) in `sparse_index`, and its measurements in `sparse_stats`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cascade.indexes import lucene, seismic, sparse_exact
from cascade.indexes.models import compute_label
from cascade.indexes.process import folder_bytes
from cascade.indexes.sparse_encoder import encode
from cascade.rankers.base import Context, Output, Params, Stage
from cascade.rankers.sparse_index import (
    corpus_vectors,
    exact_index,
    given_vectors,
    load_vectors,
    lucene_impact_index,
    lucene_queries,
    opened_seismic,
    seismic_index,
    sparse_encoder,
)
from cascade.rankers.sparse_params import LuceneImpactParams, SeismicParams, SparseParams
from cascade.rankers.sparse_stats import measure

__all__ = [  # the parameters and the corpus vectors are part of this module's interface, as before the split
    "LuceneImpactParams",
    "SeismicParams",
    "Sparse",
    "SparseParams",
    "corpus_vectors",
    "load_vectors",
]


class Sparse(Stage):
    """SPLADE first stage over an exact, Seismic or Lucene impact index of the same cached corpus vectors."""

    name = "sparse"
    depth_param = "k"
    Params = SparseParams
    version = 2  # 2: latency is each query's median of 3 runs
    uses_corpus = True

    def __init__(self, params: Params | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._opened: tuple[Any, Path, dict] | None = None
        self._opened_store: Any = None

    def cache_parts(self, ctx: Context) -> dict:
        parts = super().cache_parts(ctx)
        params = dict(parts["params"])
        for block, index in (("seismic", "seismic"), ("lucene", "lucene_impact")):
            if params["index"] != index:
                params.pop(block)
        if params["vectors"] is not None:
            folder = Path(params["vectors"]).expanduser()
            params["vectors"] = given_vectors(folder, ctx.require_corpus(self.name).fingerprint, self.params)[1]
        # queries are encoded at search time, so bf16 or fp32 (which `auto` picks per machine) changes the run
        return {**parts, "params": params, "compute": compute_label(self.params.device, self.params.precision)}

    def prepare(self, ctx: Context) -> None:
        self._opened = self._open(ctx)

    def _open(self, ctx: Context) -> tuple[Any, Path, dict]:
        """(searcher handle, vectors folder, build facts) for the configured index; builds what is missing."""
        if getattr(self, "_opened", None) is not None and self._opened_store is ctx.store:
            return self._opened
        self._opened_store = ctx.store
        p = self.params
        vectors_path, vectors_key = corpus_vectors(p, ctx)
        if p.index == "exact":
            index, facts = exact_index(vectors_path)
            return index, vectors_path, {**facts, "index_bytes": folder_bytes(vectors_path), "built_now": True}
        if p.index == "seismic":
            path, card = seismic_index(p, ctx, vectors_path, vectors_key)
            return opened_seismic(path, ctx.log_dir / "seismic-open.log"), vectors_path, card
        path, card = lucene_impact_index(p, ctx, vectors_path, vectors_key)
        return path, vectors_path, card

    def encode_queries(self, queries: pd.DataFrame, ctx: Context) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
        """Query vectors as (term ids, weights) and the encoding speed in queries/s."""
        p = self.params
        encoder = sparse_encoder(p.encoder, p.device, p.precision)
        started = time.perf_counter()
        vectors = encode(encoder, list(queries["query"]), max_length=p.query_max_length, batch_size=p.batch_size)
        seconds = time.perf_counter() - started
        return [vectors.row(i) for i in range(len(vectors))], len(queries) / max(seconds, 1e-9)

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        return self.apply(inp, ctx, []).run

    def apply(self, inp: pd.DataFrame, ctx: Context, inputs: list[pd.DataFrame]) -> Output:
        """The run, with what the stage measured about itself (accuracy, latency, index facts) as its statistics."""
        p = self.params
        handle, vectors_path, build = self._open(ctx)
        queries, query_qps = self.encode_queries(inp, ctx)
        vectors = load_vectors(vectors_path)
        docnos = np.asarray(vectors.docnos, dtype=object)
        qids = list(inp["qid"])
        started = time.perf_counter()
        if p.index == "lucene_impact":
            run = self._search_lucene(handle, qids, queries, ctx)
            search_seconds = time.perf_counter() - started
            found = {qid: group.to_numpy() for qid, group in run.groupby("qid", sort=False)["docno"]}
            hits = [found.get(q, np.zeros(0, dtype=object)) for q in qids]
        else:
            results = self._search_rows(handle, queries, ctx)
            search_seconds = time.perf_counter() - started
            run = _run_frame(qids, results, docnos)
            hits = [docnos[docs] for docs, _ in results]
        started = time.perf_counter()
        stats = measure(p, ctx, handle, vectors_path, build, qids, queries, hits, run, query_qps, search_seconds)
        # measuring (oracle search, latency loops, term counts) is left out of the run's ms/query by the engine
        stats["measure_seconds"] = round(time.perf_counter() - started, 4)
        _report_empty(stats)
        return Output(run, stats)

    def _search_rows(self, handle: Any, queries: list, ctx: Context) -> list[tuple[np.ndarray, np.ndarray]]:
        p = self.params
        if p.index == "exact":
            return sparse_exact.search_exact(handle, queries, p.k)
        return seismic.search_batch(handle, queries, p.seismic.search_knobs(p.k), ctx.threads)

    def _search_lucene(self, index: Path, qids: list[str], queries: list, ctx: Context) -> pd.DataFrame:
        run = lucene.search_impact(
            index,
            lucene_queries(qids, queries, self.params.lucene.scale),
            k=self.params.k,
            threads=ctx.threads,
            log=ctx.log_dir / "lucene-impact-search.log",
        )
        scale = self.params.lucene.scale
        return run.assign(score=run["score"] / (scale * scale))  # back to the inner product's units


def _run_frame(qids: list[str], results: list[tuple[np.ndarray, np.ndarray]], docnos: np.ndarray) -> pd.DataFrame:
    sizes = [len(docs) for docs, _ in results]
    if not sum(sizes):
        return pd.DataFrame({"qid": pd.Series(dtype=str), "docno": pd.Series(dtype=str), "score": [], "rank": []})
    return pd.DataFrame(
        {
            "qid": np.repeat(np.asarray(qids, dtype=object), sizes),
            "docno": docnos[np.concatenate([docs for docs, _ in results])],
            "score": np.concatenate([scores for _, scores in results]).astype(np.float64),
            "rank": np.concatenate([np.arange(1, n + 1) for n in sizes]).astype(np.int64),
        }
    )


def _report_empty(stats: dict) -> None:
    """Queries without hits are counted in the manifest and said once on stderr: a result, not an error."""
    if stats["empty_queries"]:
        shown = ", ".join(map(str, stats["empty_qids"][:5])) + (" ..." if stats["empty_queries"] > 5 else "")
        print(
            f"cascade: sparse({stats['index']}): {stats['empty_queries']} of {stats['queries']} queries matched no "
            f"document ({stats['unknown_term_queries']} with every term unknown to the index): {shown}",
            file=sys.stderr,
        )
