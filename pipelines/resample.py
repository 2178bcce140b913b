"""Query embeddings for the extrapolation protocols: ReSample splits and query clusters (Zhan et al., CIKM 2022).

These need the MiniLM encoder (indexes/) and the bi-encoder's query text (rankers/), so they live on the top
floor; the split reading, the scoring of both sides and the holdout plans stay in `cascade.eval.extrapolation`, which
imports nothing above `eval/`.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cascade.core.digest import content_key, frame_digest
from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.extrapolation import CACHE_VERSION, QUERY_MAX_LENGTH, SIDES
from cascade.indexes.dense import encode, load_encoder
from cascade.indexes.models import model_fingerprint, resolve_model
from cascade.rankers.dense import query_text

# --- Query embeddings (MiniLM, cached) ----------------------------------------------------------------------


@functools.cache
def _cpu_encoder(resolved: str):
    # fp32: bf16 autocast depends on the CPU, and splits must not change from one machine to the next.
    return load_encoder(resolved, "cpu", "fp32")


def _query_texts(queries: pd.DataFrame) -> list[str]:
    if "qid" not in queries or "query" not in queries:
        raise CascadeError("a query frame needs the columns qid and query")
    return [query_text(row) for row in queries.to_dict("records")]


def _model_fingerprint(model: str) -> tuple[str, str]:
    resolved = resolve_model(model, where="model")
    return resolved, model_fingerprint(resolved)


def embed_queries(
    queries: pd.DataFrame, store: ArtifactStore, model: str = "minilm-l6", progress: bool = False
) -> np.ndarray:
    """Unit-length query vectors in row order, cached by (texts, model): clustering and resampling share them."""
    texts = _query_texts(queries)
    resolved, fingerprint = _model_fingerprint(model)
    made_from = {
        "model": fingerprint,
        "texts": frame_digest(pd.DataFrame({"text": texts}), ["text"]),
        "queries": len(texts),
        "max_length": QUERY_MAX_LENGTH,
        "precision": "fp32",
        "version": CACHE_VERSION,
    }

    def build(tmp: Path) -> dict:
        vectors = encode(
            _cpu_encoder(resolved), texts, batch_size=64, max_length=QUERY_MAX_LENGTH, progress=progress, desc="queries"
        )
        np.save(tmp / "embeddings.npy", vectors.astype(np.float32))
        return {"queries": len(texts), "dim": int(vectors.shape[1])}

    folder, _ = store.get_or_build("query-embeddings", content_key(made_from), build, made_from)
    return np.load(folder / "embeddings.npy")


def _save_frame(frame: pd.DataFrame, path: Path) -> None:
    """Columns as JSON lists: Python's float repr round-trips exactly, and ids stay strings."""
    path.write_text(json.dumps({c: frame[c].tolist() for c in frame.columns}))


def _load_frame(path: Path) -> pd.DataFrame:
    return pd.DataFrame(json.loads(path.read_text()))


def _query_digest(queries: pd.DataFrame) -> str:
    return frame_digest(
        pd.DataFrame({"qid": queries["qid"].astype(str), "text": _query_texts(queries)}), ["qid", "text"]
    )


# --- ReSample: split a test set by similarity to a training set ---------------------------------------------


class SplitRule(BaseModel):
    """How ReSample calls a test query interpolation, from its highest cosine to any training query.

    `threshold`: interpolation when that cosine is >= `threshold`. `quantile`: the `fraction` of test queries with
    the highest cosine are interpolation (ties at the cut go by input order), so both sides have a chosen size.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    rule: Literal["threshold", "quantile"]
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    fraction: float | None = Field(None, gt=0.0, lt=1.0)
    model: str = Field("minilm-l6", min_length=1, description="bi-encoder alias, local folder or Hugging Face name")

    @model_validator(mode="after")
    def _one_parameter(self) -> SplitRule:
        needed, other = ("threshold", "fraction") if self.rule == "threshold" else ("fraction", "threshold")
        if getattr(self, needed) is None:
            raise ValueError(f"rule {self.rule!r} needs {needed}")
        if getattr(self, other) is not None:
            raise ValueError(f"rule {self.rule!r} does not take {other}")
        return self


def resample_split(
    train_queries: pd.DataFrame,
    test_queries: pd.DataFrame,
    rule: SplitRule,
    store: ArtifactStore,
    progress: bool = False,
) -> pd.DataFrame:
    """Split test queries into interpolation / extrapolation by MiniLM cosine to the training queries.

    Returns `qid, side, similarity, nearest` in test-query order: `similarity` is the highest cosine to any
    training query and `nearest` that training query's id. Deterministic (fp32 on CPU, exact search) and cached
    under (training texts, test texts, rule, model fingerprint), so a repeated call encodes nothing.
    """
    if len(train_queries) == 0 or len(test_queries) == 0:
        raise CascadeError("resampling needs at least one training and one test query")
    _, fingerprint = _model_fingerprint(rule.model)
    made_from = {
        "train": _query_digest(train_queries),
        "test": _query_digest(test_queries),
        "rule": rule.model_dump(mode="json"),
        "model": fingerprint,
        "version": CACHE_VERSION,
    }

    def build(tmp: Path) -> dict:
        train = embed_queries(train_queries, store, rule.model, progress)
        test = embed_queries(test_queries, store, rule.model, progress)
        best, nearest = _nearest(test, train)
        if rule.rule == "threshold":
            interpolation = best >= rule.threshold
        else:
            count = math.floor(rule.fraction * len(best) + 0.5)
            interpolation = np.zeros(len(best), dtype=bool)
            interpolation[np.argsort(-best, kind="stable")[:count]] = True
        frame = pd.DataFrame(
            {
                "qid": test_queries["qid"].astype(str).to_numpy(),
                "side": np.where(interpolation, SIDES[0], SIDES[1]),
                "similarity": best.astype(np.float64),
                "nearest": train_queries["qid"].astype(str).to_numpy()[nearest],
            }
        )
        _save_frame(frame, tmp / "split.json")
        return {"test_queries": len(frame), "interpolation": int(interpolation.sum())}

    folder, _ = store.get_or_build("resample-split", content_key(made_from), build, made_from)
    return _load_frame(folder / "split.json")


def _nearest(test: np.ndarray, train: np.ndarray, block: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
    """Highest inner product of each test vector over the training vectors, in blocks that bound memory."""
    rows = max(1, block // max(len(train), 1))
    best = np.empty(len(test), dtype=np.float32)
    index = np.empty(len(test), dtype=np.int64)
    for start in range(0, len(test), rows):
        sims = test[start : start + rows] @ train.T
        index[start : start + rows] = sims.argmax(axis=1)
        best[start : start + rows] = sims[np.arange(len(sims)), index[start : start + rows]]
    return best, index


# --- ReSTTest on cascade's own trainable stages -------------------------------------------------------------


def cluster_queries(
    queries: pd.DataFrame,
    k: int,
    seed: int,
    store: ArtifactStore,
    model: str = "minilm-l6",
    progress: bool = False,
    nredo: int = 5,
) -> pd.DataFrame:
    """Spherical k-means over MiniLM query vectors: `qid, cluster` with clusters numbered 1..k like buckets.

    `nredo` runs from that many seeded starts and keeps the tightest clustering: with one start, 9 of 30 seeds
    split three obvious topics of three paraphrases wrongly, which would make a held-out "cluster" a mixed bag.
    Runs on one FAISS thread so the clusters depend only on (queries, k, seed, nredo, model); cached on those.
    """
    import faiss

    if nredo < 1:
        raise CascadeError(f"nredo must be at least 1, not {nredo}")
    if not 1 <= k <= len(queries):
        raise CascadeError(f"k must be between 1 and the number of queries ({len(queries)}), not {k}")
    _, fingerprint = _model_fingerprint(model)
    made_from = {
        "queries": _query_digest(queries),
        "k": k,
        "seed": seed,
        "niter": 20,
        "nredo": nredo,
        "model": fingerprint,
        "version": CACHE_VERSION,
    }

    def build(tmp: Path) -> dict:
        vectors = np.ascontiguousarray(embed_queries(queries, store, model, progress), dtype=np.float32)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            # min_points_per_centroid=1: query sets are small, and FAISS would warn on every run below 39 per cluster.
            kmeans = faiss.Kmeans(
                vectors.shape[1], k, seed=seed, niter=20, nredo=nredo, spherical=True, min_points_per_centroid=1
            )
            kmeans.train(vectors)
            _, labels = kmeans.index.search(vectors, 1)
        finally:
            faiss.omp_set_num_threads(threads)
        frame = pd.DataFrame({"qid": queries["qid"].astype(str).to_numpy(), "cluster": labels[:, 0].astype(int) + 1})
        _save_frame(frame, tmp / "clusters.json")
        return {"queries": len(frame), "sizes": frame["cluster"].value_counts().sort_index().tolist()}

    folder, _ = store.get_or_build("query-clusters", content_key(made_from), build, made_from)
    return _load_frame(folder / "clusters.json")
