"""Interpolation versus extrapolation: does a trained stage only do well on queries like its training queries?

After Zhan et al., "Evaluating Interpolation and Extrapolation Performance of Neural Retrieval Models"
(CIKM 2022). A test query is *interpolation* when the training set holds a similar query, *extrapolation*
otherwise; a stage that only memorises shows a large gap between the two. Three ways to get the two sides:

- ReSTTest (published): `read_splits` reads the paper's five buckets for MS MARCO dev, DL19 and DL20;
- ReSample: `resample_split` splits any test set by its MiniLM similarity to a given training set;
- ReSTTest on cascade's own trainable stages: `cluster_queries` + `holdout_plan` + `bucket_sets` make K buckets,
  each holding out one query cluster from training.

`split_scores` then scores a per-query frame on both sides of every bucket and macro-averages over buckets.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from eval.digest import content_key, frame_digest
from eval.errors import CascadeError, warn
from eval.frames import open_text, read_qrels
from indexes.store import ArtifactStore

SIDES = ("interpolation", "extrapolation")
# The ReSTTest files name their test sets after the paper; cascade names datasets after its registry.
RESTTEST_TESTSETS = {
    "msmarco-passage/dev-small": "dev",
    "msmarco-passage/dl19": "trec19",
    "msmarco-passage/dl20": "trec20",
}
_SIDE_NAMES = {
    "interpolate": "interpolation",
    "extrapolate": "extrapolation",
    "interpolation": "interpolation",
    "extrapolation": "extrapolation",
}
QUERY_MAX_LENGTH = 64  # rankers.dense's default for queries
CACHE_VERSION = 1


# --- ReSTTest: the published splits -------------------------------------------------------------------------


def read_splits(path: Path, testset: str, known_qids: set[str] | None = None) -> pd.DataFrame:
    """Read ReSTTest splits for one test set as `bucket, side, qid` (side: interpolation | extrapolation).

    `path` is `resttest_query_splits.tsv` (`bucket, testset, split, query-id`, header optional) or a folder in
    the raw layout (`bucket-N/{interpolate,extrapolate}.<testset>-qrel.txt`). `testset` is the file's name
    (dev, trec19, trec20) or a cascade dataset name from `RESTTEST_TESTSETS`. Ids outside `known_qids` (e.g.
    dev queries without a judged passage in cascade's corpus) are dropped with one warning giving the count.
    """
    path = Path(path)
    name = RESTTEST_TESTSETS.get(testset, testset)
    splits = _read_split_folder(path, name) if path.is_dir() else _read_split_table(path, name)
    if known_qids is not None:
        unknown = ~splits["qid"].isin(known_qids)
        if unknown.any():
            ids = splits.loc[unknown, "qid"].nunique()
            warn(
                f"{ids} of {splits['qid'].nunique()} query ids in the {name} splits are not in the dataset; "
                "they are left out",
                where=str(path),
            )
            splits = splits[~unknown].reset_index(drop=True)
    return splits


def _read_split_table(path: Path, testset: str) -> pd.DataFrame:
    rows: list[tuple[int, str, str]] = []
    seen: dict[tuple[int, str], int] = {}
    testsets: set[str] = set()
    with open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields or (number == 1 and fields[0] == "bucket"):
                continue
            where = f"{path}:{number}"
            if len(fields) != 4:
                raise CascadeError(
                    f"expected 4 columns (bucket, testset, split, query-id), found {len(fields)}", where=where
                )
            bucket, name, split, qid = fields
            if not bucket.isdigit() or int(bucket) < 1:
                raise CascadeError(f"bucket {bucket!r} is not a positive integer", where=where)
            if split not in _SIDE_NAMES:
                raise CascadeError(f"split {split!r} is not interpolate or extrapolate", where=where)
            testsets.add(name)
            if name != testset:
                continue
            if (int(bucket), qid) in seen:
                raise CascadeError(
                    f"query {qid!r} appears twice in bucket {bucket} (first on line {seen[int(bucket), qid]})",
                    where=where,
                )
            seen[int(bucket), qid] = number
            rows.append((int(bucket), _SIDE_NAMES[split], qid))
    if not rows:
        known = ", ".join(sorted(testsets)) or "none"
        raise CascadeError(f"no splits for test set {testset!r} (the file has: {known})", where=str(path))
    return _splits_frame(rows)


def _read_split_folder(path: Path, testset: str) -> pd.DataFrame:
    """The raw ReSTTest layout: one TREC qrels file per bucket and side; only the query ids are used."""
    rows: list[tuple[int, str, str]] = []
    for folder in sorted(path.glob("bucket-*")):
        match = re.fullmatch(r"bucket-(\d+)", folder.name)
        if not match or not folder.is_dir():
            continue
        for raw, side in (("interpolate", "interpolation"), ("extrapolate", "extrapolation")):
            qrels_file = folder / f"{raw}.{testset}-qrel.txt"
            if not qrels_file.is_file():
                raise CascadeError(f"missing {qrels_file.name}", where=str(folder))
            qids = read_qrels(qrels_file)["qid"].drop_duplicates()
            rows.extend((int(match.group(1)), side, qid) for qid in qids)
    if not rows:
        raise CascadeError(f"no bucket-N folders with {testset} splits", where=str(path))
    splits = _splits_frame(rows)
    twice = splits.duplicated(["bucket", "qid"])
    if twice.any():
        bucket, qid = splits.loc[twice, ["bucket", "qid"]].iloc[0]
        raise CascadeError(f"query {qid!r} is on both sides of bucket {bucket}", where=str(path / f"bucket-{bucket}"))
    return splits


def _splits_frame(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["bucket", "side", "qid"]).astype({"bucket": "int64", "qid": str})
    order = frame["side"].map({s: i for i, s in enumerate(SIDES)})
    return frame.assign(_o=order).sort_values(["bucket", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


# --- Scoring both sides -------------------------------------------------------------------------------------


@dataclass
class SplitScores:
    """Per-bucket scores on both sides, and their macro average over buckets (the paper's summary)."""

    measure: str
    missing: str
    buckets: pd.DataFrame  # bucket, interpolation, extrapolation, gap, <side>_queries, <side>_missing
    average: dict[str, float]  # interpolation, extrapolation, gap, buckets


def split_scores(
    perquery: pd.DataFrame,
    splits: pd.DataFrame,
    measure: str,
    missing: Literal["exclude", "zero"] = "exclude",
) -> SplitScores:
    """Mean of `measure` on each side of each bucket, the gap (interpolation - extrapolation), and the averages.

    `perquery` is `evaluate`'s frame (`qid, measure, value`); with a `bucket` column its values are matched per
    bucket (one trained model per bucket, as ReSTTest on cascade's own stages needs). `splits` without a
    `bucket` column (e.g. `resample_split`'s) is one bucket, numbered 1.

    A split query with no per-query value (not in the run, or unjudged) is left out of its side's mean and counted
    in `<side>_missing`, as trec_eval leaves such queries out; `missing="zero"` scores it 0 instead, which is
    what a run that silently drops hard queries deserves. A side with no scored query has a NaN mean; the
    averages are over the buckets where that side has one, and the averaged gap is the difference of the two
    averages (equal to the mean per-bucket gap whenever every side is scored).
    """
    if missing not in ("exclude", "zero"):
        raise CascadeError(f"missing must be 'exclude' or 'zero', not {missing!r}")
    for frame, columns, what in (
        (perquery, ["qid", "measure", "value"], "per-query frame"),
        (splits, ["side", "qid"], "splits"),
    ):
        absent = [c for c in columns if c not in frame]
        if absent:
            raise CascadeError(f"the {what} has no column {absent[0]!r}")
    values = perquery[perquery["measure"] == measure]
    if values.empty:
        have = ", ".join(sorted(perquery["measure"].astype(str).unique())) or "none"
        raise CascadeError(f"measure {measure!r} is not in the per-query frame (it has: {have})")
    bad = ~splits["side"].isin(SIDES)
    if bad.any():
        raise CascadeError(f"side {splits['side'][bad].iloc[0]!r} is not one of {', '.join(SIDES)}")
    if "bucket" not in splits:
        splits = splits.assign(bucket=1)
    keys = ["bucket", "qid"] if "bucket" in values else ["qid"]
    if values.duplicated(keys).any():
        raise CascadeError(f"the per-query frame has two {measure} values for one query")
    joined = (
        splits[["bucket", "side", "qid"]]
        .astype({"qid": str})
        .merge(values.astype({"qid": str})[[*keys, "value"]], on=keys, how="left", validate="many_to_one")
    )
    absent = joined["value"].isna()
    if missing == "zero":
        joined["value"] = joined["value"].fillna(0.0)
    grouped = joined.assign(_missing=absent & (missing == "exclude")).groupby(["bucket", "side"])
    table = grouped.agg(mean=("value", "mean"), queries=("value", "count"), missing=("_missing", "sum"))
    rows = []
    for bucket in sorted(joined["bucket"].unique()):
        row: dict[str, float | int] = {"bucket": int(bucket)}
        for side in SIDES:
            stats = table.loc[(bucket, side)] if (bucket, side) in table.index else None
            row[side] = float(stats["mean"]) if stats is not None else math.nan
            row[f"{side}_queries"] = int(stats["queries"]) if stats is not None else 0
            row[f"{side}_missing"] = int(stats["missing"]) if stats is not None else 0
        row["gap"] = row["interpolation"] - row["extrapolation"]
        rows.append(row)
    columns = ["bucket", *SIDES, "gap", *(f"{s}_{c}" for c in ("queries", "missing") for s in SIDES)]
    buckets = pd.DataFrame(rows, columns=columns)
    average = {side: float(buckets[side].mean()) for side in SIDES}  # NaN buckets are skipped
    average["gap"] = average["interpolation"] - average["extrapolation"]
    average["buckets"] = len(buckets)
    return SplitScores(measure=measure, missing=missing, buckets=buckets, average=average)


# --- Query embeddings (MiniLM, cached) ----------------------------------------------------------------------


@functools.cache
def _cpu_encoder(resolved: str):
    from indexes.dense import load_encoder

    # fp32: bf16 autocast depends on the CPU, and splits must not change from one machine to the next.
    return load_encoder(resolved, "cpu", "fp32")


def _query_texts(queries: pd.DataFrame) -> list[str]:
    from rankers.dense import query_text

    if "qid" not in queries or "query" not in queries:
        raise CascadeError("a query frame needs the columns qid and query")
    return [query_text(row) for row in queries.to_dict("records")]


def _model_fingerprint(model: str) -> tuple[str, str]:
    from indexes.models import model_fingerprint, resolve_model

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
        from indexes.dense import encode

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

    model_config = ConfigDict(extra="forbid", frozen=True)

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


def holdout_plan(clusters: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    """Give each query a role, `train` or `test`, within its cluster: `qid, cluster, role` in input order.

    Each cluster's test part is `round(test_fraction * size)` of its queries, at least one and, for clusters of
    two or more, at most size - 1, drawn with a generator seeded by (seed, cluster) so that one cluster's draw
    does not depend on the others. See `bucket_sets` for how the roles make the buckets.
    """
    if not 0.0 < test_fraction < 1.0:
        raise CascadeError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    if "qid" not in clusters or "cluster" not in clusters:
        raise CascadeError("the clusters frame needs the columns qid and cluster")
    if clusters["qid"].duplicated().any():
        raise CascadeError(f"query {clusters['qid'][clusters['qid'].duplicated()].iloc[0]!r} is in two clusters")
    role = np.full(len(clusters), "train", dtype=object)
    for cluster, rows in clusters.groupby("cluster", sort=True).indices.items():
        size = len(rows)
        n_test = min(max(1, math.floor(test_fraction * size + 0.5)), max(size - 1, 1))
        picked = np.random.default_rng([seed, int(cluster)]).permutation(size)[:n_test]
        role[rows[picked]] = "test"
    return pd.DataFrame(
        {"qid": clusters["qid"].astype(str).to_numpy(), "cluster": clusters["cluster"].to_numpy(), "role": role}
    )


def bucket_sets(plan: pd.DataFrame, b: int) -> tuple[list[str], list[str], list[str]]:
    """(train, interpolation test, extrapolation test) query ids of bucket `b`, i.e. holding out cluster `b`.

    Training is the train part of every other cluster; interpolation tests on the test parts of those same
    clusters (queries like the training ones), extrapolation on the test part of cluster `b` (none like them).
    """
    if b not in set(plan["cluster"].tolist()):
        raise CascadeError(
            f"bucket {b} is not a cluster of this plan ({', '.join(map(str, sorted(set(plan['cluster']))))})"
        )
    inside = plan["cluster"] == b
    train = plan["role"] == "train"
    ids = plan["qid"].astype(str)
    return ids[~inside & train].tolist(), ids[~inside & ~train].tolist(), ids[inside & ~train].tolist()


def plan_splits(plan: pd.DataFrame) -> pd.DataFrame:
    """Every bucket's test sides as a `bucket, side, qid` frame, the shape `split_scores` reads."""
    frames = []
    for b in sorted(set(plan["cluster"].tolist())):
        _, interpolation, extrapolation = bucket_sets(plan, b)
        frames.append(pd.DataFrame({"bucket": int(b), "side": SIDES[0], "qid": interpolation}))
        frames.append(pd.DataFrame({"bucket": int(b), "side": SIDES[1], "qid": extrapolation}))
    return pd.concat(frames, ignore_index=True).astype({"bucket": "int64", "qid": str})
