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
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from cascade.core.digest import content_key, file_digest
from cascade.core.errors import CascadeError
from cascade.eval.datasets import doc_text
from cascade.rankers.base import Context, Output, Params, Stage

VECTORS_VERSION = 1
INDEX_VERSION = 1
_OPEN: dict[tuple, Any] = {}  # opened indexes and loaded encoders, reused within a process (sweeps)


class SeismicParams(Params):
    """Seismic's knobs; defaults are the paper's MS MARCO settings, scaled for small corpora by the configs."""

    n_postings: int = Field(3500, gt=0, description="average postings kept per term (build)")
    centroid_fraction: float = Field(0.1, gt=0, le=1, description="blocks per posting list / its length (build)")
    summary_energy: float = Field(0.4, gt=0, le=1, description="share of each block's mass its summary keeps (build)")
    doc_cut: int = Field(15, gt=0, description="document terms used to cluster postings into blocks (build)")
    max_fraction: float = Field(1.5, ge=1, description="longest posting list / n_postings (build)")
    nknn: int = Field(0, ge=0, description="neighbours per document in the k-NN graph; 0: none (build)")
    query_cut: int = Field(10, gt=0, description="query terms used, largest weights first (search)")
    heap_factor: float = Field(
        0.7, gt=0, le=1, description="skip a block unless summary x factor beats the k-th (search)"
    )
    n_knn: int = Field(0, ge=0, description="k-NN refinement at search; needs nknn >= n_knn (search)")

    @model_validator(mode="after")
    def _knn_needs_graph(self) -> SeismicParams:
        if self.n_knn > self.nknn:
            raise ValueError(f"n_knn={self.n_knn} needs an index built with nknn >= {self.n_knn} (nknn={self.nknn})")
        return self

    def build_knobs(self) -> dict:
        keys = ("n_postings", "centroid_fraction", "summary_energy", "doc_cut", "max_fraction", "nknn")
        return {k: getattr(self, k) for k in keys}

    def search_knobs(self, k: int) -> dict:
        return {"k": k, "query_cut": self.query_cut, "heap_factor": self.heap_factor, "n_knn": self.n_knn}


class LuceneImpactParams(Params):
    scale: float = Field(100.0, gt=0, description="impacts are round(weight x scale), for documents and queries")


class SparseParams(Params):
    encoder: str = Field("splade-tiny", min_length=1, description="splade-tiny, a local folder or a Hugging Face id")
    index: Literal["seismic", "lucene_impact", "exact"] = "seismic"
    k: int = Field(1000, gt=0)
    max_length: int = Field(256, gt=8, le=512, description="document tokens")
    query_max_length: int = Field(64, gt=4, le=512)
    batch_size: int = Field(32, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    vectors: str | None = Field(None, description="a corpus vectors folder made by cascade, instead of encoding")
    measure: bool = Field(True, description="accuracy against exact search and latency, into the manifest")
    seismic: SeismicParams = Field(default_factory=SeismicParams)
    lucene: LuceneImpactParams = Field(default_factory=LuceneImpactParams)


# --------------------------------------------------------------------------- encoder and corpus vectors


def sparse_encoder(name: str, device: str, precision: str):
    key = ("encoder", name, device, precision)
    if key not in _OPEN:
        from cascade.indexes.sparse_encoder import load_sparse_encoder

        _OPEN[key] = load_sparse_encoder(name, device, precision)
    return _OPEN[key]


def corpus_vectors(params: SparseParams, ctx: Context) -> tuple[Path, str]:
    """The folder of the corpus's vectors (encoded once per encoder and corpus content) and its content key."""
    from cascade.indexes import sparse_vectors
    from cascade.indexes.process import PeakMemory, folder_bytes

    corpus = ctx.require_corpus("sparse")
    if params.vectors is not None:
        return _given_vectors(Path(params.vectors).expanduser(), corpus.fingerprint, params)
    encoder = sparse_encoder(params.encoder, params.device, params.precision)
    made_from = {
        **encoder.identity(),
        "corpus": corpus.fingerprint,
        "max_length": params.max_length,
        "batch_size": params.batch_size,
        "version": VECTORS_VERSION,
    }
    key = content_key(made_from)

    def build(tmp: Path) -> dict:
        from cascade.indexes.sparse_encoder import encode

        docs = list(corpus.docs())
        if not docs:
            raise CascadeError("the corpus has no documents to encode")
        with PeakMemory() as memory:
            started = time.perf_counter()
            vectors = encode(
                encoder,
                [doc_text(d) for d in docs],
                max_length=params.max_length,
                batch_size=params.batch_size,
                progress=ctx.progress,
                desc="sparse: encoding corpus",
            )
            seconds = time.perf_counter() - started
        vectors.docnos = [d["docno"] for d in docs]
        facts = sparse_vectors.save(vectors, tmp)
        return {
            **facts,
            "encode_seconds": round(seconds, 3),
            "encode_passages_per_s": round(len(docs) / seconds, 2),
            "memory_bytes": memory.extra_bytes,
            "bytes": folder_bytes(tmp),
        }

    path, _ = ctx.store.get_or_build("sparse_vectors", key, build, made_from)
    sparse_vectors.load(path, corpus.fingerprint)  # a cache entry is checked like a user's folder
    return path, key


def _given_vectors(folder: Path, corpus_fingerprint: str, params: SparseParams) -> tuple[Path, str]:
    """A user's vectors folder, checked against the corpus first (no model load needed), then the encoder."""
    import json

    from cascade.indexes import sparse_vectors
    from cascade.indexes.models import model_fingerprint, resolve_model

    vectors = sparse_vectors.load(folder, corpus_fingerprint)
    card = folder / "card.json"
    encoder = json.loads(card.read_text()).get("made_from", {}).get("encoder")
    encoder_fingerprint = model_fingerprint(resolve_model(params.encoder, where="encoder"))
    if encoder != encoder_fingerprint:
        raise CascadeError(
            f"corpus vectors were made by encoder {encoder!r}, not by this stage's encoder ({encoder_fingerprint})",
            where=str(card),
        )
    del vectors
    digests = {name: file_digest(folder / name) for name in ("indptr.npy", "indices.npy", "data.npy", "docnos.txt")}
    return folder, content_key(digests)


def load_vectors(path: Path, mmap: bool = True):
    from cascade.indexes import sparse_vectors

    return sparse_vectors.load(path, mmap=mmap)


# --------------------------------------------------------------------------- indexes


def _memory_facts(memory: Any) -> dict:
    """Peak memory a build added to the process (RSS rise over its start), and the process's peak RSS."""
    return {"build_memory_bytes": memory.extra_bytes, "peak_rss_bytes": memory.peak_bytes}


def _measured_build(build) -> Any:
    """Wrap a store build so its card records peak memory and size on disk."""
    from cascade.indexes.process import PeakMemory, folder_bytes

    def wrapped(tmp: Path) -> dict:
        with PeakMemory() as memory:
            facts = build(tmp)
        return {**facts, **_memory_facts(memory), "index_bytes": folder_bytes(tmp)}

    return wrapped


def seismic_index(params: SparseParams, ctx: Context, vectors_path: Path, vectors_key: str) -> tuple[Path, dict]:
    from cascade.indexes.seismic import build_seismic, seismic_version

    knobs = params.seismic.build_knobs()
    made_from = {"vectors": vectors_key, "knobs": knobs, "seismic": seismic_version(), "version": INDEX_VERSION}
    key = content_key(made_from)
    log = ctx.log_dir / f"seismic-{key}.log"

    def build(tmp: Path) -> dict:
        return build_seismic(load_vectors(vectors_path, mmap=False), tmp, knobs, ctx.threads, log)

    path, built = ctx.store.get_or_build("seismic", key, _measured_build(build), made_from)
    return path, {**ctx.store.card("seismic", key), "built_now": built}


def lucene_impact_index(params: SparseParams, ctx: Context, vectors_path: Path, vectors_key: str) -> tuple[Path, dict]:
    from cascade.indexes import lucene
    from cascade.indexes.sparse_vectors import quantize

    scale = params.lucene.scale
    made_from = {"vectors": vectors_key, "scale": scale, "jar": lucene.anserini_jar().name, "version": INDEX_VERSION}
    key = content_key(made_from)
    log = ctx.log_dir / f"lucene-impact-{key}.log"

    def rows():
        vectors = load_vectors(vectors_path)
        for i, docno in enumerate(vectors.docnos or []):
            terms, weights = vectors.row(i)
            impacts = quantize(weights, scale)
            yield docno, {str(t): int(w) for t, w in zip(terms, impacts, strict=True) if w > 0}

    def build(tmp: Path) -> dict:
        return lucene.build_impact_index(rows(), tmp, ctx.threads, log, ctx.progress)

    path, built = ctx.store.get_or_build("lucene_impact", key, _measured_build(build), made_from)
    return path, {**ctx.store.card("lucene_impact", key), "built_now": built}


def exact_index(vectors_path: Path):
    """The exact index is the transposed vectors, built in memory (seconds) and reused within the process."""
    from cascade.indexes.process import PeakMemory
    from cascade.indexes.sparse_exact import build_exact

    key = ("exact", str(vectors_path))
    if key not in _OPEN:
        with PeakMemory() as memory:
            started = time.perf_counter()
            index = build_exact(load_vectors(vectors_path, mmap=False))
            seconds = time.perf_counter() - started
        _OPEN[key] = (index, {"build_seconds": round(seconds, 3), **_memory_facts(memory)})
    return _OPEN[key]


# --------------------------------------------------------------------------- the stage


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
            params["vectors"] = _given_vectors(folder, ctx.require_corpus(self.name).fingerprint, self.params)[1]
        from cascade.indexes.models import compute_label

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
            from cascade.indexes.process import folder_bytes

            return index, vectors_path, {**facts, "index_bytes": folder_bytes(vectors_path), "built_now": True}
        if p.index == "seismic":
            path, card = seismic_index(p, ctx, vectors_path, vectors_key)
            key = ("seismic", str(path))
            if key not in _OPEN:
                from cascade.indexes.seismic import open_seismic

                _OPEN[key] = open_seismic(path, ctx.log_dir / "seismic-open.log")
            return _OPEN[key], vectors_path, card
        path, card = lucene_impact_index(p, ctx, vectors_path, vectors_key)
        return path, vectors_path, card

    def encode_queries(self, queries: pd.DataFrame, ctx: Context) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
        """Query vectors as (term ids, weights) and the encoding speed in queries/s."""
        from cascade.indexes.sparse_encoder import encode

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
        stats = self._stats(ctx, handle, vectors_path, build, qids, queries, hits, run, query_qps, search_seconds)
        # measuring (oracle search, latency loops, term counts) is left out of the run's ms/query by the engine
        stats["measure_seconds"] = round(time.perf_counter() - started, 4)
        _report_empty(stats)
        return Output(run, stats)

    def _search_rows(self, handle: Any, queries: list, ctx: Context) -> list[tuple[np.ndarray, np.ndarray]]:
        p = self.params
        if p.index == "exact":
            from cascade.indexes.sparse_exact import search_exact

            return search_exact(handle, queries, p.k)
        from cascade.indexes.seismic import search_batch

        return search_batch(handle, queries, p.seismic.search_knobs(p.k), ctx.threads)

    def _lucene_queries(self, qids: list[str], queries: list) -> list[tuple[str, dict[str, int]]]:
        from cascade.indexes.sparse_vectors import quantize

        out = []
        for qid, (terms, weights) in zip(qids, queries, strict=True):
            impacts = quantize(weights, self.params.lucene.scale)
            out.append((qid, {str(t): int(w) for t, w in zip(terms, impacts, strict=True) if w > 0}))
        return out

    def _search_lucene(self, index: Path, qids: list[str], queries: list, ctx: Context) -> pd.DataFrame:
        from cascade.indexes import lucene

        run = lucene.search_impact(
            index,
            self._lucene_queries(qids, queries),
            k=self.params.k,
            threads=ctx.threads,
            log=ctx.log_dir / "lucene-impact-search.log",
        )
        scale = self.params.lucene.scale
        return run.assign(score=run["score"] / (scale * scale))  # back to the inner product's units

    # ----------------------------------------------------------------------- measurements

    def _stats(self, ctx, handle, vectors_path, build, qids, queries, hits, run, query_qps, search_seconds) -> dict:
        p = self.params
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
            from cascade.indexes.sparse_exact import search_exact

            docnos = np.asarray(load_vectors(vectors_path).docnos, dtype=object)
            truth = [docnos[d] for d, _ in search_exact(exact, queries, p.k)]
            for at in sorted({10, p.k}):
                value, counted = _accuracy(hits, truth, at)
                stats[f"accuracy@{at}"] = value
            stats["accuracy_queries"] = counted
        stats.update(self._latency(handle, qids, queries, ctx))
        return stats

    def _latency(self, handle: Any, qids: list[str], queries: list, ctx: Context) -> dict:
        from cascade.indexes.search_stats import latency_stats

        p = self.params
        if p.index == "exact":
            from cascade.indexes.sparse_exact import search_one

            return latency_stats(lambda q: search_one(handle, q, p.k), queries, ctx.threads)
        if p.index == "seismic":
            from cascade.indexes.seismic import search_one

            knobs = p.seismic.search_knobs(p.k)
            return latency_stats(lambda q: search_one(handle, q, knobs), queries, ctx.threads)
        from cascade.indexes.lucene import ImpactSearcher

        searcher = ImpactSearcher(handle)
        try:
            vectors = [v for _, v in self._lucene_queries(qids, queries)]
            return latency_stats(lambda v: searcher.search(v, p.k), vectors, ctx.threads, ImpactSearcher.detach)
        finally:
            searcher.close()


def _accuracy(hits: list, truth: list, at: int) -> tuple[float | None, int]:
    from cascade.indexes.search_stats import accuracy_at

    value, counted = accuracy_at(hits, truth, at)
    return (round(value, 6) if value is not None else None), counted


def _unknown_term_queries(handle: Any, vectors_path: Path, queries: list, index: str) -> int:
    """Queries none of whose terms any document has: they cannot match, whatever the index."""
    vectors = load_vectors(vectors_path)
    known = np.zeros(vectors.dim, dtype=bool)
    known[np.unique(np.asarray(vectors.indices))] = True
    return sum(1 for terms, _ in queries if not known[terms[(terms >= 0) & (terms < vectors.dim)]].any())


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
