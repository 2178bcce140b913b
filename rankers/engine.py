"""The one engine: it runs a pipeline's stages in order, each through the cache, and checks what each returns.

`execute` is what `cascade run`, the suites, the trainers and `Pipeline.transform` all call. The content address
of a stage's output is a hash of the stage's config and version (`Stage.cache_parts`) and of the address of its
input: a hash of the input frame for a first stage, else the upstream stage's address, or, for a stage with child
pipelines (fusion), the addresses of its children's runs. A hit loads `runs/<key>/run.parquet`; a miss calls
`stage.prepare(ctx)` (timed apart) and `stage.apply(frame, ctx, inputs)`, checks the run (`check_run`) and
stores it with the stage's statistics in the entry's card. An empty input gives an empty run without calling the
stage. An entry that cannot be read (a truncated run.parquet) is said on one warning line and rebuilt.

This module also holds how frames flow between stages (`with_queries`, `carry_scores`); it imports nothing of the
stages themselves, so `rankers.base` can build `Pipeline.transform` on it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cascade.core.digest import content_key, frame_digest
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.eval.runs import RUN_COLUMNS

if TYPE_CHECKING:  # annotations only: the engine drives stages through their declared protocol
    from cascade.rankers.base import Stage

RUN_CACHE = "runs"
SCORE_PREFIX = "score:"


@dataclass
class StageTiming:
    stage: str
    key: str
    cached: bool
    seconds: float  # wall time in this invocation
    prepare_seconds: float  # building or opening indexes/models when the output was computed
    compute_seconds: float  # per-query work when the output was computed: what ms/query is made of
    queries: int
    stats: dict | None = None  # what the stage returned with its run (`Output.stats`) when it was computed

    @property
    def ms_per_query(self) -> float:
        return 1000.0 * self.compute_seconds / max(self.queries, 1)


@dataclass
class Executed:
    """A chain's final frame (with `score:<stage>` columns), its content address and the stages' timings."""

    frame: pd.DataFrame
    run_key: str
    timings: list[StageTiming]
    stages: list[Stage]


def execute(pipeline: Stage | list[Stage], queries: pd.DataFrame, ctx: Context) -> Executed:
    """Run a pipeline (a stage, a `Pipeline` or a list of them) over queries, every stage through the cache.

    The input may also be a run (`docno`, `score`, `rank` and carried `score:*` columns): the pipeline's first
    stage then reranks it.
    """
    stages = [stage for item in (pipeline if isinstance(pipeline, list) else [pipeline]) for stage in item.stages]
    if not stages:
        raise CascadeError("a pipeline needs at least one stage")
    random.seed(ctx.seed)
    np.random.seed(ctx.seed)
    upstream = input_key(queries)
    timings: list[StageTiming] = []
    frame, upstream = _run_chain(stages, queries, query_part(queries), upstream, ctx, timings)
    return Executed(frame, upstream, timings, stages)


def input_key(frame: pd.DataFrame) -> str:
    """The content address of a pipeline's input: its queries, or a whole upstream run with its carried scores."""
    if "docno" not in frame.columns:
        return "queries:" + frame_digest(frame, ["qid", "query", "instruction"])
    carried = [c for c in frame.columns if c.startswith(SCORE_PREFIX)]
    return "run:" + frame_digest(frame, ["qid", "query", "instruction", *RUN_COLUMNS, *carried])


def query_part(frame: pd.DataFrame) -> pd.DataFrame:
    """The queries of an input frame: the frame itself for queries, one row per query of a run."""
    if "docno" not in frame.columns:
        return frame
    keep = [c for c in frame.columns if c not in RUN_COLUMNS[1:] and not c.startswith(SCORE_PREFIX)]
    return frame[keep].drop_duplicates("qid").reset_index(drop=True)


def _run_chain(
    stages: list[Stage],
    frame: pd.DataFrame,
    queries: pd.DataFrame,
    upstream: str,
    ctx: Context,
    timings: list[StageTiming],
    label: str = "",
) -> tuple[pd.DataFrame, str]:
    """Stages in order, each addressed by its config and its input's address."""
    for stage in stages:
        run, upstream = _run_stage(stage, frame, queries, upstream, ctx, timings, label)
        frame = carry_scores(run, frame, stage.name)
    return frame, upstream


def _run_stage(
    stage: Stage,
    frame: pd.DataFrame,
    queries: pd.DataFrame,
    upstream: str,
    ctx: Context,
    timings: list[StageTiming],
    label: str,
) -> tuple[pd.DataFrame, str]:
    """Run (or load from the cache) one stage; a stage with child pipelines first runs each of them."""
    where = label + stage.name
    if stage.reranks and "docno" not in frame.columns:
        raise CascadeError(f"stage '{where}' reranks an upstream run, and it has none: put a first stage before it")
    inputs: list[pd.DataFrame] = []
    keys: list[str] = []
    for number, child in enumerate(stage.children()):
        run, key = _run_chain(child.stages, frame, queries, upstream, ctx, timings, f"{where}/{number}/")
        inputs.append(run)
        keys.append(key)
    parts = stage.cache_parts(ctx)
    made_from: dict = {"stage": parts, "inputs": keys} if keys else {"stage": parts, "upstream": upstream}
    key = content_key(made_from)
    store = ctx.store
    started = time.perf_counter()
    cached = store.has(RUN_CACHE, key)
    computed: dict[str, float] = {}

    def build(tmp: Path) -> dict:
        run, stats = empty_run(), None  # nothing to rank: no stage is asked to handle (or index for) no input
        t0 = t1 = time.perf_counter()
        if len(frame):
            stage.prepare(ctx)
            t1 = time.perf_counter()
            out = stage.apply(frame, ctx, inputs)
            run, stats = out.run, out.stats
        # time a stage spent measuring itself (e.g. latency loops) is not time spent serving the queries
        overhead = float((stats or {}).get("measure_seconds") or 0.0)
        computed.update(
            prepare_seconds=round(t1 - t0, 6), compute_seconds=round(max(time.perf_counter() - t1 - overhead, 0.0), 6)
        )
        check_run(run, frame, where)
        run = run[RUN_COLUMNS] if len(run) else empty_run()  # an empty frame's column types are anyone's guess
        run.to_parquet(tmp / "run.parquet", index=False)
        return {"stage": repr(stage), "queries": len(queries), "rows": len(run), **computed, "stats": stats}

    def load(entry: Path) -> tuple[pd.DataFrame, dict]:
        return pd.read_parquet(entry / "run.parquet"), store.card(RUN_CACHE, key)

    # a damaged entry (e.g. a truncated run.parquet) is said on one warning line and rebuilt
    (stored, card), _, built = store.get_or_load(RUN_CACHE, key, build, made_from, load)
    run = with_queries(stored, queries)
    seconds = time.perf_counter() - started
    if not built:
        computed = {k: float(card.get(k, 0.0)) for k in ("prepare_seconds", "compute_seconds")}
    timing = StageTiming(
        where,
        key,
        cached and not built,
        round(seconds, 6),
        computed["prepare_seconds"],
        computed["compute_seconds"],
        len(queries),
        card.get("stats"),
    )
    timings.append(timing)
    return run, key


def check_run(run: pd.DataFrame, inp: pd.DataFrame, where: str) -> None:
    """What every stage must return: the run columns, one row per (qid, docno), each query's rows together with
    ranks 1..n in row order and scores that never rise with rank, and only the input's queries."""

    def fail(message: str) -> CascadeError:
        return CascadeError(f"stage '{where}' returned a bad run: {message}")

    missing = [c for c in RUN_COLUMNS if c not in run.columns]
    if missing:
        raise fail(f"no column {', '.join(repr(c) for c in missing)}")
    if run.empty:
        return
    codes, uniques = pd.factorize(run["qid"])
    starts = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]
    if len(starts) != len(uniques):
        raise fail("a query's rows are not together")
    unknown = pd.Index(uniques).difference(pd.Index(inp["qid"].unique()))
    if len(unknown):
        raise fail(f"query {unknown[0]!r} is not in its input")
    docs = pd.factorize(run["docno"])[0].astype(np.int64)
    twice = pd.Series(codes.astype(np.int64) * (int(docs.max()) + 1) + docs).duplicated().to_numpy()
    if twice.any():
        row = int(np.flatnonzero(twice)[0])
        raise fail(f"document {run['docno'].iloc[row]!r} appears twice for query {run['qid'].iloc[row]!r}")
    sizes = np.diff(np.r_[starts, len(codes)])
    expected = np.arange(len(codes)) - np.repeat(starts, sizes) + 1
    ranks = run["rank"].to_numpy()
    if not np.array_equal(ranks, expected):
        row = int(np.flatnonzero(ranks != expected)[0])
        raise fail(f"query {run['qid'].iloc[row]!r} has rank {ranks[row]} where {expected[row]} belongs")
    scores = run["score"].to_numpy(dtype="float64")
    if np.isnan(scores).any():
        raise fail(f"query {run['qid'].iloc[int(np.flatnonzero(np.isnan(scores))[0])]!r} has a NaN score")
    rises = np.flatnonzero((codes[1:] == codes[:-1]) & (scores[1:] > scores[:-1]))
    if len(rises):
        row = int(rises[0]) + 1
        raise fail(f"query {run['qid'].iloc[row]!r}: rank {ranks[row]} scores above rank {ranks[row - 1]}")


def empty_run() -> pd.DataFrame:
    """A run without rows, with the run columns' types."""
    return pd.DataFrame(
        {
            "qid": pd.Series(dtype=object),
            "docno": pd.Series(dtype=object),
            "score": pd.Series(dtype="float64"),
            "rank": pd.Series(dtype="int64"),
        }
    )


def with_queries(run: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Attach `query` (and `instruction`) to a run, PyTerrier style, so a later stage can read them."""
    columns = [c for c in queries.columns if c != "qid" and c not in {"docno", "score", "rank"}]
    base = run.drop(columns=[c for c in columns if c in run.columns])
    merged = base.merge(queries[["qid", *columns]].drop_duplicates("qid"), on="qid", how="left", sort=False)
    carried = [c for c in merged.columns if c.startswith(SCORE_PREFIX)]
    return merged[["qid", *columns, "docno", "score", "rank", *carried]]


def carry_scores(run: pd.DataFrame, upstream: pd.DataFrame, name: str) -> pd.DataFrame:
    """Add `score:<stage>` columns: this stage's score plus every earlier stage's, for learning-to-rank features.

    A document an earlier stage did not score gets NaN for that stage (LightGBM treats it as missing).
    """
    earlier = [c for c in upstream.columns if c.startswith(SCORE_PREFIX)] if "docno" in upstream else []
    run = run.drop(columns=[c for c in run.columns if c.startswith(SCORE_PREFIX)])
    if earlier:
        run = run.merge(upstream[["qid", "docno", *earlier]], on=["qid", "docno"], how="left", sort=False)
    column = SCORE_PREFIX + name
    while column in earlier:  # the same stage twice in a chain: bm25, bm25#2, ...
        column = f"{column.split('#')[0]}#{int(column.split('#')[1]) + 1 if '#' in column else 2}"
    return run.assign(**{column: run["score"].to_numpy()})
