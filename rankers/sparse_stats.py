"""What the `sparse` stage (`cascade.rankers.sparse`) measures about itself, returned as its `Output.stats`.

Accuracy@10 and accuracy@k against exact search on the same vectors (approximate indexes), per-query latency
single- and multi-threaded, the build's facts from the index card, encoding speeds, and the queries that matched
no document or whose every term is unknown to the index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cascade.indexes import seismic, sparse_exact
from cascade.indexes.lucene import ImpactSearcher
from cascade.indexes.search_stats import accuracy_at, latency_stats
from cascade.rankers.base import Context
from cascade.rankers.sparse_index import exact_index, load_vectors, lucene_queries
from cascade.rankers.sparse_params import SparseParams


def measure(
    p: SparseParams,
    ctx: Context,
    handle: Any,
    vectors_path: Path,
    build: dict,
    qids: list[str],
    queries: list,
    hits: list,
    run: pd.DataFrame,
    query_qps: float,
    search_seconds: float,
) -> dict:
    """The stage's statistics for one run: `build` is the index's facts, `hits` each query's docnos in rank order."""
    card = ctx.store.card("sparse_vectors", vectors_path.name) if p.vectors is None else {}
    answered = set(run["qid"])
    empty = [q for q in qids if q not in answered]
    stats: dict[str, Any] = {
        "index": p.index,
        "queries": len(qids),
        "empty_queries": len(empty),
        "empty_qids": empty[:20],
        "unknown_term_queries": _unknown_term_queries(handle, vectors_path, queries, p.index),
        "search_seconds": round(search_seconds, 4),
        "query_encode_qps": round(query_qps, 1),
        "corpus_encode_passages_per_s": card.get("encode_passages_per_s"),
        "corpus_nnz_per_doc": card.get("nnz_per_row"),
        "build_seconds": build.get("build_seconds"),
        "index_bytes": build.get("index_bytes"),
        "build_memory_bytes": build.get("build_memory_bytes"),
        "peak_rss_bytes": build.get("peak_rss_bytes"),
        "index_built_now": build.get("built_now"),
    }
    if not p.measure:
        return stats
    if p.index != "exact":
        exact, _ = exact_index(vectors_path)
        docnos = np.asarray(load_vectors(vectors_path).docnos, dtype=object)
        truth = [docnos[d] for d, _ in sparse_exact.search_exact(exact, queries, p.k)]
        for at in sorted({10, p.k}):
            value, counted = _accuracy(hits, truth, at)
            stats[f"accuracy@{at}"] = value
        stats["accuracy_queries"] = counted
    stats.update(latency(p, handle, qids, queries, ctx))
    return stats


def latency(p: SparseParams, handle: Any, qids: list[str], queries: list, ctx: Context) -> dict:
    """Per-query latency of the configured index, single- and multi-threaded (`search_stats.latency_stats`)."""
    if p.index == "exact":
        return latency_stats(lambda q: sparse_exact.search_one(handle, q, p.k), queries, ctx.threads)
    if p.index == "seismic":
        knobs = p.seismic.search_knobs(p.k)
        return latency_stats(lambda q: seismic.search_one(handle, q, knobs), queries, ctx.threads)
    searcher = ImpactSearcher(handle)
    try:
        vectors = [v for _, v in lucene_queries(qids, queries, p.lucene.scale)]
        return latency_stats(lambda v: searcher.search(v, p.k), vectors, ctx.threads, ImpactSearcher.detach)
    finally:
        searcher.close()


def _accuracy(hits: list, truth: list, at: int) -> tuple[float | None, int]:
    value, counted = accuracy_at(hits, truth, at)
    return (round(value, 6) if value is not None else None), counted


def _unknown_term_queries(handle: Any, vectors_path: Path, queries: list, index: str) -> int:
    """Queries none of whose terms any document has: they cannot match, whatever the index."""
    vectors = load_vectors(vectors_path)
    known = np.zeros(vectors.dim, dtype=bool)
    known[np.unique(np.asarray(vectors.indices))] = True
    return sum(1 for terms, _ in queries if not known[terms[(terms >= 0) & (terms < vectors.dim)]].any())
