"""What `cascade run CONFIG` does: dataset -> stages (each cached by content address) -> run -> measures.

The content address of a stage's output is a hash of the stage's config and version, the address of its input
(the queries for a first stage, else the upstream stage's address) and, for stages that read documents, the
corpus fingerprint. Unchanged work is never redone; changed work never reads a stale entry.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eval.atomic import atomic_dir
from eval.datasets import Dataset, load_dataset, load_folder, resolve_data_dir
from eval.digest import content_key, frame_digest
from eval.errors import CascadeError
from eval.frames import RUN_COLUMNS, format_run
from eval.measures import evaluate, parse_measures
from indexes.store import ArtifactStore
from pipelines.config import Config
from pipelines.manifest import git_commit, host, package_versions
from rankers import STAGES, Context, Stage
from rankers.base import with_queries
from rankers.fusion import Fusion

RUN_CACHE = "runs"


@dataclass
class StageTiming:
    stage: str
    key: str
    cached: bool
    seconds: float  # wall time in this invocation
    prepare_seconds: float  # building or opening indexes/models when the output was computed
    compute_seconds: float  # per-query work when the output was computed: what ms/query is made of
    queries: int

    @property
    def ms_per_query(self) -> float:
        return 1000.0 * self.compute_seconds / max(self.queries, 1)


@dataclass
class RunResult:
    config: Config
    folder: Path
    measures: dict[str, float]
    timings: list[StageTiming] = field(default_factory=list)


def open_dataset(config: Config, data_dir: Path | None) -> Dataset:
    ref = config.dataset
    if ref.path is not None:
        return load_folder(ref.path)
    return load_dataset(ref.name, data_dir, qrels=ref.qrels)


def build_stages(config: Config) -> list[Stage]:
    return [STAGES[name](**params) for name, params in config.stage_specs()]


def _run_stage(
    stage: Stage,
    frame: pd.DataFrame,
    queries: pd.DataFrame,
    upstream: str,
    ctx: Context,
    store: ArtifactStore,
    timings: list[StageTiming],
    label: str = "",
) -> tuple[pd.DataFrame, str]:
    """Run (or load from the cache) one stage; a fusion stage first runs each of its input chains."""
    inputs: list[pd.DataFrame] = []
    made_from: dict = {"stage": stage.cache_parts(ctx), "upstream": upstream}
    if isinstance(stage, Fusion):
        keys = []
        for number, chain in enumerate(stage.sub_pipelines()):
            prefix = f"{label}{stage.name}/{number}/"
            run, key = _run_chain(chain, frame, queries, upstream, ctx, store, timings, prefix)
            inputs.append(run)
            keys.append(key)
        made_from = {"stage": stage.cache_parts(ctx), "inputs": keys}
    key = content_key(made_from)
    started = time.perf_counter()
    cached = store.has(RUN_CACHE, key)
    computed: dict[str, float] = {}

    def build(tmp: Path) -> dict:
        t0 = time.perf_counter()
        stage.prepare(ctx)
        t1 = time.perf_counter()
        out = stage.fuse(inputs) if isinstance(stage, Fusion) else stage.transform(frame, ctx)
        computed.update(prepare_seconds=round(t1 - t0, 6), compute_seconds=round(time.perf_counter() - t1, 6))
        out[RUN_COLUMNS].to_parquet(tmp / "run.parquet", index=False)
        return {"stage": repr(stage), "queries": len(queries), "rows": len(out), **computed}

    folder, built = store.get_or_build(RUN_CACHE, key, build, made_from)
    run = with_queries(pd.read_parquet(folder / "run.parquet"), queries)
    seconds = time.perf_counter() - started
    if not built:
        card = store.card(RUN_CACHE, key)
        computed = {k: float(card.get(k, 0.0)) for k in ("prepare_seconds", "compute_seconds")}
    timings.append(
        StageTiming(
            label + stage.name,
            key,
            cached and not built,
            round(seconds, 6),
            computed["prepare_seconds"],
            computed["compute_seconds"],
            len(queries),
        )
    )
    return run, key


def _run_chain(
    stages: list[Stage],
    frame: pd.DataFrame,
    queries: pd.DataFrame,
    upstream: str,
    ctx: Context,
    store: ArtifactStore,
    timings: list[StageTiming],
    label: str = "",
) -> tuple[pd.DataFrame, str]:
    """Stages in order, each addressed by its config and its input's address."""
    for stage in stages:
        frame, upstream = _run_stage(stage, frame, queries, upstream, ctx, store, timings, label)
    return frame, upstream


def run_config(
    config: Config,
    config_path: Path | None,
    out_dir: Path,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path = ".cascade",
    threads: int | None = None,
    progress: bool = True,
) -> RunResult:
    """Run one pipeline config and write `<out_dir>/<name>/` atomically."""
    started = time.perf_counter()
    random.seed(config.seed)
    np.random.seed(config.seed)
    root = resolve_data_dir(data_dir)
    dataset = open_dataset(config, root)
    queries, qrels = dataset.queries, dataset.qrels
    if queries.empty:
        raise CascadeError(f"dataset '{dataset.name}' has no judged queries")
    measures = parse_measures(config.measures)
    store = ArtifactStore(cache_dir)
    ctx = Context(
        store=store,
        corpus=dataset.corpus,
        data_dir=root,
        threads=threads or os.cpu_count() or 1,
        progress=progress,
        seed=config.seed,
    )
    stages = build_stages(config)

    upstream = "queries:" + frame_digest(queries, ["qid", "query", "instruction"])
    timings: list[StageTiming] = []
    frame, upstream = _run_chain(stages, queries, queries, upstream, ctx, store, timings)

    aggregate, perquery = evaluate(frame, qrels, measures)
    folder = out_dir / config.name
    manifest = {
        "name": config.name,
        "description": config.description,
        "config_hash": config.config_hash,
        "config_file": str(config_path) if config_path else None,
        "pipeline": " >> ".join(repr(s) for s in stages),
        "dataset": {
            "name": dataset.name,
            "qrels": dataset.qrels_name,
            "queries": len(queries),
            "qrels_rows": len(qrels),
            "corpus": dataset.corpus.fingerprint if dataset.corpus is not None else None,
        },
        "seed": config.seed,
        "run_key": upstream,
        "stages": [{**t.__dict__, "ms_per_query": round(t.ms_per_query, 4)} for t in timings],
        "ms_per_query": round(sum(t.ms_per_query for t in timings), 4),
        "versions": package_versions(),
        "git": git_commit(),
        "host": host(),
        "threads": ctx.threads,
        "wall_seconds": round(time.perf_counter() - started, 6),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    metrics = {
        "name": config.name,
        "dataset": dataset.name,
        "qrels": dataset.qrels_name,
        "queries": int(perquery["qid"].nunique()) if len(perquery) else 0,
        "measures": aggregate,
    }
    with atomic_dir(folder) as tmp:
        (tmp / "run.trec").write_bytes(format_run(frame, tag=_tag(config.name)))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        perquery.to_csv(tmp / "perquery.tsv", sep="\t", index=False, float_format="%.6f")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        (tmp / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
    return RunResult(config, folder, aggregate, timings)


def _tag(name: str) -> str:
    return "".join(c if not c.isspace() else "_" for c in name)[:64] or "cascade"
