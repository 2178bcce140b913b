"""Interpolation versus extrapolation: does a trained stage only do well on queries like its training queries?

After Zhan et al., "Evaluating Interpolation and Extrapolation Performance of Neural Retrieval Models"
(CIKM 2022). A test query is *interpolation* when the training set holds a similar query, *extrapolation*
otherwise; a stage that only memorises shows a large gap between the two. Three ways to get the two sides:

- ReSTTest (published): `read_splits` reads the paper's five buckets for MS MARCO dev, DL19 and DL20;
- ReSample: `cascade.pipelines.resample.resample_split` splits any test set by its MiniLM similarity to a training set;
- ReSTTest on cascade's own trainable stages: `cascade.pipelines.resample.cluster_queries` + `holdout_plan` +
  `bucket_sets` make K buckets, each holding out one query cluster from training.

`split_scores` then scores a per-query frame on both sides of every bucket and macro-averages over buckets.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cascade.core.errors import CascadeError, warn
from cascade.eval.textfiles import open_text, reading
from cascade.eval.topics import read_qrels

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
QUERY_MAX_LENGTH = 64  # cascade.rankers.dense's default for queries
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
    with reading(path, "ReSTTest splits"), open_text(path) as handle:
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
