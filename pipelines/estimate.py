"""`cascade estimate CONFIG`: before any work, what each stage finds cached and what it must build, with the
corpus size and a time, memory and disk estimate for each build.

Figures come from this machine's own earlier builds when the cache holds one of that kind (the largest: its
card records documents and build seconds), else from `bench/scale.py` measured on a 2-core CPU (BENCH). Peak
memory follows the power law fitted there; what grows with the corpus is said per artifact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascade.core.env import Context
from cascade.indexes.docstore import docstore_address
from cascade.pipelines.config import Config
from cascade.rankers.base import build_pipeline


@dataclass(frozen=True)
class Rate:
    """A kind of build as bench/scale.py measured it (2 cores, 2026-12-04): documents per second, peak RSS of the
    process at 1M documents and its growth exponent, and bytes on disk per document."""

    per_s: float
    rss_mb_1m: float
    rss_exponent: float
    disk_bytes_per_doc: float
    what: str


BENCH: dict[str, Rate] = {
    "docstore": Rate(162_750, 400, 0.0, 418, "SQLite document store"),
    "lucene": Rate(16_854, 1_897, 0.14, 650, "Lucene index (Anserini IndexCollection, 2 threads)"),
    "dense-embeddings": Rate(319, 997, 0.0, 768, "MiniLM-L6 corpus embeddings on CPU (bounded by the shard)"),
    "faiss": Rate(531_133, 2_983, 1.0, 1_536, "FAISS flat index (HNSW builds at ~1,300 vectors/s)"),
    "sparse_vectors": Rate(256, 1_173, 0.0, 1_040, "SPLADE-tiny corpus vectors on CPU (bounded by the shard)"),
    "seismic": Rate(4_481, 7_048, 0.63, 2_893, "Seismic index over the corpus vectors"),
}
OWN_MIN_DOCUMENTS = 10_000  # below this a build's time is mostly loading a model: no rate to extrapolate


@dataclass
class Line:
    stage: str
    kind: str
    cached: bool
    documents: int
    seconds: float | None
    rss_mb: float | None
    disk_mb: float | None
    source: str


def _machine_rate(store_root: Path, kind: str) -> tuple[float, str] | None:
    """Documents per second of this machine's largest earlier build of `kind`, if the cache holds one."""
    best = None
    for card_path in (store_root / kind).glob("*/card.json"):
        try:
            card = json.loads(card_path.read_text())
            docs, seconds = int(card.get("documents") or card.get("rows") or 0), float(card["build_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if docs >= OWN_MIN_DOCUMENTS and seconds > 0 and (best is None or docs > best[0]):
            best = (docs, seconds)
    if best is None:
        return None
    return best[0] / best[1], f"this machine ({best[0]:,} documents in {best[1]:,.1f} s)"


def _needs(stage: Any, ctx: Context) -> list[tuple[str, str]]:
    """(store kind, content key) of each corpus artifact a stage reads, known without building anything."""
    from cascade.rankers.lucene import lucene_address

    corpus = ctx.corpus
    name = stage.name
    docstore = ("docstore", docstore_address(corpus)[1])
    if name in ("bm25", "rm3"):
        return [("lucene", lucene_address(ctx)[1])]
    if name == "ltr":
        return [("lucene", lucene_address(ctx)[1])]
    if name == "dense":
        from cascade.core.digest import content_key

        p, key = stage.params, stage.embeddings_address(ctx)[1]
        hnsw = {"hnsw_m": p.hnsw_m, "ef_construction": p.ef_construction} if p.index == "hnsw" else {}
        faiss = content_key({"embeddings": key, "index": p.index, **hnsw})  # as Dense.faiss_index addresses it
        return [docstore, ("dense-embeddings", key), ("faiss", faiss)]
    if name == "dense_rerank":
        if stage.params.corpus_embeddings:
            from cascade.rankers.dense import Dense

            p = stage.params
            dense = Dense(model=p.model, batch_size=p.batch_size, max_length=p.max_length, device=p.device,
                          precision=p.precision, shard_size=p.shard_size)  # fmt: skip
            return [("dense-embeddings", dense.embeddings_address(ctx)[1])]
        return [docstore]
    if name == "sparse":
        from cascade.rankers.sparse_index import sparse_encoder, vectors_address

        p = stage.params
        encoder = sparse_encoder(p.encoder, p.device, p.precision)
        key = vectors_address(encoder.identity(), corpus.fingerprint, p.max_length, p.batch_size, p.shard_size)[1]
        needs = [docstore, ("sparse_vectors", key)]
        if p.index == "seismic":
            from cascade.core.digest import content_key
            from cascade.indexes.seismic import seismic_version
            from cascade.rankers.sparse_index import INDEX_VERSION

            knobs = p.seismic.build_knobs()
            made_from = {"vectors": key, "knobs": knobs, "seismic": seismic_version(), "version": INDEX_VERSION}
            needs.append(("seismic", content_key(made_from)))  # as sparse_index.seismic_index addresses it
        return needs
    if name in ("sparse_rerank", "cross_encoder"):
        return [docstore]
    return []


def corpus_size(ctx: Context) -> int:
    """The document count: the store's when built, else counted without keeping any text."""
    corpus = ctx.corpus
    _, key = docstore_address(corpus)
    if ctx.store.has("docstore", key):
        return int(ctx.store.card("docstore", key)["documents"])
    return corpus.size


def estimate(config: Config, dataset: Any, ctx: Context) -> tuple[int, list[Line]]:
    """(corpus size, one line per artifact each stage needs), nothing built or trained."""
    ctx = ctx.for_run(dataset.corpus, config.seed)
    if dataset.corpus is None:
        return 0, []
    size = corpus_size(ctx)
    lines, seen = [], set()
    for stage in build_pipeline(config.pipeline).walk():
        for kind, key in _needs(stage, ctx):
            if (kind, key) in seen:
                continue
            seen.add((kind, key))
            cached = ctx.store.has(kind, key)
            rate = BENCH[kind]
            own = _machine_rate(ctx.store.root, kind)
            per_s, source = own if own else (rate.per_s, "bench/scale.py, 2-core CPU")
            rss = rate.rss_mb_1m * (max(size, 1) / 1e6) ** rate.rss_exponent
            lines.append(
                Line(
                    stage.name,
                    kind,
                    cached,
                    size,
                    None if cached else size / per_s,
                    rss,
                    size * rate.disk_bytes_per_doc / 1e6,
                    source,
                )  # fmt: skip
            )
    return size, lines


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.0f} min"
    return f"{seconds / 3600:,.1f} h"


def estimate_text(name: str, size: int, lines: list[Line]) -> str:
    out = [f"{name}: corpus of {size:,} documents"]
    if not lines:
        out.append("  nothing to build from the corpus (every stage reads runs or queries only)")
    for line in lines:
        status = "cached" if line.cached else "to build"
        out.append(
            f"  {line.stage:<14} {BENCH[line.kind].what:<60} {status:<9} time {_duration(line.seconds):>8}  "
            f"peak RSS ~{line.rss_mb / 1024:,.1f} GB  disk ~{line.disk_mb / 1024:,.2f} GB  ({line.source})"
        )
    total = sum(line.seconds or 0 for line in lines)
    out.append(f"  to build: {_duration(total) if total else 'nothing'}")
    return "\n".join(out) + "\n"
