"""What the `sparse` stage (`cascade.rankers.sparse`) builds and reuses: its encoder, the corpus's vectors, the
three indexes over them, and the quantisation of query vectors into Lucene impacts.

The vectors and the Seismic and Lucene impact indexes are content-addressed artifacts whose cards record build
time, peak memory and size on disk; the exact index is built in memory. Opened indexes and loaded encoders are
kept in `_OPEN` for the process (sweeps).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cascade.core.digest import content_key, file_digest
from cascade.core.errors import CascadeError
from cascade.core.executor import WorkerSpec
from cascade.eval.datasets import doc_text
from cascade.indexes import jvm, lucene, sparse_vectors
from cascade.indexes.docstore import docstore
from cascade.indexes.models import model_fingerprint, resolve_model
from cascade.indexes.process import PeakMemory, folder_bytes
from cascade.indexes.seismic import build_seismic, open_seismic, seismic_version
from cascade.indexes.shards import ShardKind, encode_in_shards
from cascade.indexes.shards import discard as discard_shards
from cascade.indexes.sparse_encoder import encode, load_sparse_encoder
from cascade.indexes.sparse_exact import build_exact
from cascade.indexes.sparse_vectors import quantize
from cascade.rankers.base import Context
from cascade.rankers.sparse_params import SparseParams

VECTORS_VERSION = 2  # 2: encoded in shards
INDEX_VERSION = 1
_OPEN: dict[tuple, Any] = {}  # opened indexes and loaded encoders, reused within a process (sweeps)


# --------------------------------------------------------------------------- encoder and corpus vectors


def sparse_encoder(name: str, device: str, precision: str):
    key = ("encoder", name, device, precision)
    if key not in _OPEN:
        _OPEN[key] = load_sparse_encoder(name, device, precision)
    return _OPEN[key]


def sparse_identity(name: str, device: str, precision: str) -> dict:
    """The encoder's identity as resolved where the executor's workers run (`auto` may be their GPU)."""
    return sparse_encoder(name, device, precision).identity()


def sparse_text_encoder(name: str, device: str, precision: str, max_length: int, batch_size: int, threads: int):
    """A worker's function (`cascade.core.executor.WorkerSpec`): texts -> sparse vectors, on the run's `threads`."""
    import torch

    encoder = sparse_encoder(name, device, precision)

    def encode_texts(texts: list[str]) -> sparse_vectors.SparseVectors:
        torch.set_num_threads(threads)
        return encode(encoder, texts, max_length=max_length, batch_size=batch_size)

    return encode_texts


def vectors_address(
    identity: dict, corpus_fingerprint: str, max_length: int, batch_size: int, shard_size: int
) -> tuple[dict, str]:
    """What the corpus vectors are made from (the encoder's `identity()`, ...) and their content key:
    `sparse_rerank` reads the same entry."""
    made_from = {
        **identity,
        "corpus": corpus_fingerprint,
        "max_length": max_length,
        "batch_size": batch_size,
        "shard_size": shard_size,
        "version": VECTORS_VERSION,
    }
    return made_from, content_key(made_from)


def corpus_vectors(params: SparseParams, ctx: Context) -> tuple[Path, str]:
    """The folder of the corpus's vectors (encoded once per encoder and corpus content) and its content key."""
    corpus = ctx.require_corpus("sparse")
    if params.vectors is not None:
        return given_vectors(Path(params.vectors).expanduser(), corpus.fingerprint, params)
    identity = ctx.executor.call(sparse_identity, params.encoder, params.device, params.precision)
    made_from, key = vectors_address(
        identity, corpus.fingerprint, params.max_length, params.batch_size, params.shard_size
    )

    shards = ctx.store.root / "shards" / "sparse_vectors" / key

    def build(tmp: Path) -> dict:
        p = params
        args = (p.encoder, p.device, p.precision, p.max_length, p.batch_size, ctx.threads)
        worker = WorkerSpec("sparse", sparse_text_encoder, args)
        kind = ShardKind("sparse", worker, sparse_vectors.write_shard)
        total = docstore(ctx, "sparse").size
        with PeakMemory() as memory:
            started = time.perf_counter()
            report = encode_in_shards(
                shards,
                corpus.docs(),
                params.shard_size,
                kind,
                doc_text,
                total=total,
                progress=ctx.corpus_progress,
                executor=ctx.executor,
            )
            seconds = time.perf_counter() - started
        if not report.records:
            raise CascadeError("the corpus has no documents to encode")
        facts = sparse_vectors.assemble(shards, report, tmp, sparse_encoder(p.encoder, p.device, p.precision).dim)
        encoded = sum(r["documents"] for r in report.records if r["index"] in report.workers)
        return {
            **facts,
            "encode_seconds": round(seconds, 3),
            "encode_passages_per_s": round(encoded / seconds, 2) if encoded else None,
            "memory_bytes": memory.extra_bytes,
            "bytes": folder_bytes(tmp),
        }

    path, built = ctx.store.get_or_build("sparse_vectors", key, build, made_from)
    if built:
        discard_shards(shards)
    sparse_vectors.load(path, corpus.fingerprint)  # a cache entry is checked like a user's folder
    return path, key


def given_vectors(folder: Path, corpus_fingerprint: str, params: SparseParams) -> tuple[Path, str]:
    """A user's vectors folder, checked against the corpus first (no model load needed), then the encoder."""
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
    return sparse_vectors.load(path, mmap=mmap)


# --------------------------------------------------------------------------- indexes


def _memory_facts(memory: Any) -> dict:
    """Peak memory a build added to the process (RSS rise over its start), and the process's peak RSS."""
    return {"build_memory_bytes": memory.extra_bytes, "peak_rss_bytes": memory.peak_bytes}


def _measured_build(build) -> Any:
    """Wrap a store build so its card records peak memory and size on disk."""

    def wrapped(tmp: Path) -> dict:
        with PeakMemory() as memory:
            facts = build(tmp)
        return {**facts, **_memory_facts(memory), "index_bytes": folder_bytes(tmp)}

    return wrapped


def seismic_index(params: SparseParams, ctx: Context, vectors_path: Path, vectors_key: str) -> tuple[Path, dict]:
    knobs = params.seismic.build_knobs()
    made_from = {"vectors": vectors_key, "knobs": knobs, "seismic": seismic_version(), "version": INDEX_VERSION}
    key = content_key(made_from)
    log = ctx.log_dir / f"seismic-{key}.log"

    def build(tmp: Path) -> dict:
        return build_seismic(load_vectors(vectors_path, mmap=False), tmp, knobs, ctx.threads, log)

    path, built = ctx.store.get_or_build("seismic", key, _measured_build(build), made_from)
    return path, {**ctx.store.card("seismic", key), "built_now": built}


def lucene_impact_index(params: SparseParams, ctx: Context, vectors_path: Path, vectors_key: str) -> tuple[Path, dict]:
    scale = params.lucene.scale
    made_from = {"vectors": vectors_key, "scale": scale, "jar": jvm.anserini_jar().name, "version": INDEX_VERSION}
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
    key = ("exact", str(vectors_path))
    if key not in _OPEN:
        with PeakMemory() as memory:
            started = time.perf_counter()
            index = build_exact(load_vectors(vectors_path, mmap=False))
            seconds = time.perf_counter() - started
        _OPEN[key] = (index, {"build_seconds": round(seconds, 3), **_memory_facts(memory)})
    return _OPEN[key]


def opened_seismic(path: Path, log: Path) -> Any:
    """The Seismic index at `path`, opened once per process."""
    key = ("seismic", str(path))
    if key not in _OPEN:
        _OPEN[key] = open_seismic(path, log)
    return _OPEN[key]


def lucene_queries(qids: list[str], queries: list, scale: float) -> list[tuple[str, dict[str, int]]]:
    """Query vectors as Lucene impacts, round(weight x scale), as the documents' impacts were made."""
    out = []
    for qid, (terms, weights) in zip(qids, queries, strict=True):
        impacts = quantize(weights, scale)
        out.append((qid, {str(t): int(w) for t, w in zip(terms, impacts, strict=True) if w > 0}))
    return out
