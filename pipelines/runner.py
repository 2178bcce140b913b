"""What `cascade run CONFIG` does: dataset -> stages (each cached by content address) -> run -> measures.

The content address of a stage's output is a hash of the stage's config and version, the address of its input
(the queries for a first stage, else the upstream stage's address) and, for stages that read documents, the
corpus fingerprint. Unchanged work is never redone; changed work never reads a stale entry.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.core.atomic import atomic_dir
from cascade.core.digest import content_key, frame_digest
from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import Dataset, load_dataset, load_folder
from cascade.eval.frames import RUN_COLUMNS, format_run
from cascade.eval.measures import evaluate, parse_measures
from cascade.eval.topdocs import lookup_texts, top_documents, topdocs_jsonl, wanted_docnos
from cascade.pipelines.config import Config
from cascade.pipelines.manifest import git_commit, host, package_versions
from cascade.pipelines.train import resolve_train_refs
from cascade.rankers import STAGES, Context, Stage
from cascade.rankers.base import carry_scores, with_queries
from cascade.rankers.fusion import Fusion

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
    stats: dict | None = None  # what the stage reported via `last_stats` when its output was computed

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


def build_stages(config: Config, env: Context) -> list[Stage]:
    """Stage objects from the config; `train:` model references become trained model folders first."""
    items = resolve_train_refs(config.pipeline, env)
    return [STAGES[name](**(params or {})) for item in items for name, params in item.items()]


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
        stats = getattr(stage, "last_stats", None)  # optional: accuracy, latency, index facts
        # time a stage spent measuring itself (e.g. latency loops) is not time spent serving the queries
        overhead = float((stats or {}).get("measure_seconds") or 0.0)
        computed.update(
            prepare_seconds=round(t1 - t0, 6), compute_seconds=round(max(time.perf_counter() - t1 - overhead, 0.0), 6)
        )
        out[RUN_COLUMNS].to_parquet(tmp / "run.parquet", index=False)
        return {"stage": repr(stage), "queries": len(queries), "rows": len(out), **computed, "stats": stats}

    folder, built = store.get_or_build(RUN_CACHE, key, build, made_from)
    run = with_queries(pd.read_parquet(folder / "run.parquet"), queries)
    seconds = time.perf_counter() - started
    if not built:
        card = store.card(RUN_CACHE, key)
        computed = {k: float(card.get(k, 0.0)) for k in ("prepare_seconds", "compute_seconds")}
    stats = store.card(RUN_CACHE, key).get("stats")
    timings.append(
        StageTiming(
            label + stage.name,
            key,
            cached and not built,
            round(seconds, 6),
            computed["prepare_seconds"],
            computed["compute_seconds"],
            len(queries),
            stats,
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
        run, upstream = _run_stage(stage, frame, queries, upstream, ctx, store, timings, label)
        frame = carry_scores(run, frame, stage.name)
    return frame, upstream


@dataclass
class Executed:
    """A chain's final frame (with `score:<stage>` columns), its content address and the stages' timings."""

    frame: pd.DataFrame
    run_key: str
    timings: list[StageTiming]
    stages: list[Stage]


def execute(stages: list[Stage], queries: pd.DataFrame, ctx: Context) -> Executed:
    """Run a chain of stages over queries, every stage through the cache."""
    random.seed(ctx.seed)
    np.random.seed(ctx.seed)
    upstream = "queries:" + frame_digest(queries, ["qid", "query", "instruction"])
    timings: list[StageTiming] = []
    frame, upstream = _run_chain(stages, queries, queries, upstream, ctx, ctx.store, timings)
    return Executed(frame, upstream, timings, stages)


def manifest_for(
    config: Config, config_path: Path | None, dataset: Dataset, done: Executed, ctx: Context, started: float, **extra
) -> dict:
    """What a run folder says about how it was made: config hash, seed, stages and timings, versions, commit."""
    return {
        "name": config.name,
        "description": config.description,
        "config_hash": config.config_hash,
        "config_file": str(config_path) if config_path else None,
        "pipeline": " >> ".join(repr(s) for s in done.stages),
        "dataset": {
            "name": dataset.name,
            "qrels": dataset.qrels_name,
            "queries": len(dataset.queries),
            "qrels_rows": len(dataset.qrels),
            "corpus": dataset.corpus.fingerprint if dataset.corpus is not None else None,
        },
        "seed": config.seed,
        "run_key": done.run_key,
        "stages": [{**t.__dict__, "ms_per_query": round(t.ms_per_query, 4)} for t in done.timings],
        "ms_per_query": round(sum(t.ms_per_query for t in done.timings), 4),
        **extra,
        "versions": package_versions(),
        "git": git_commit(),
        "host": host(),
        "threads": ctx.threads,
        "wall_seconds": round(time.perf_counter() - started, 6),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_run_folder(
    folder: Path, config: Config, manifest: dict, metrics: dict, files: dict[str, Path | bytes]
) -> None:
    """One run folder, all or nothing: the files, metrics.json, manifest.json and the config."""
    with atomic_dir(folder) as tmp:
        for name, source in files.items():
            if isinstance(source, bytes):
                (tmp / name).write_bytes(source)
            elif source.exists():
                shutil.copyfile(source, tmp / name)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        (tmp / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")


def run_config(
    config: Config,
    config_path: Path | None,
    out_dir: Path,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path = ".cascade",
    threads: int | None = None,
    progress: bool = True,
    session: Context | None = None,
) -> RunResult:
    """Run one pipeline config and write `<out_dir>/<name>/` atomically."""
    session = session or Context.open(data_dir, cache_dir, threads, progress)
    dataset = open_dataset(config, session.data_dir)
    return run_on_dataset(config, config_path, dataset, out_dir / config.name, session)


Extend = Callable[[pd.DataFrame], tuple[dict, dict[str, bytes]]]


def run_on_dataset(
    config: Config,
    config_path: Path | None,
    dataset: Dataset,
    folder: Path,
    session: Context,
    *,
    manifest_extra: dict | None = None,
    extend: Extend | None = None,
    dataset_label: str | None = None,
) -> RunResult:
    """Run the config's pipeline on `dataset` and write `folder`; `extend(perquery)` may add summary figures and
    files (a suite's view of the same run, e.g. ReSTTest's interpolation and extrapolation sides)."""
    started = time.perf_counter()
    if dataset.queries.empty:
        raise CascadeError(f"dataset '{dataset.name}' has no judged queries")
    measures = parse_measures(config.measures)
    ctx = session.for_run(dataset.corpus, config.seed)
    done = execute(build_stages(config, session), dataset.queries, ctx)
    outputs = _outputs(done.frame, done.run_key, dataset, measures, _tag(config.name), session.store)
    aggregate = json.loads((outputs / "measures.json").read_text())
    metrics = {
        "name": config.name,
        "dataset": dataset_label or dataset.name,  # a suite's protocol may name its view of the dataset
        "qrels": dataset.qrels_name,
        "queries": json.loads((outputs / "card.json").read_text())["queries_scored"],
        "measures": aggregate,
    }
    files: dict[str, Path | bytes] = {name: outputs / name for name in ("run.trec", "perquery.tsv", "topdocs.jsonl")}
    summary = stage_summary(done.timings)
    if extend is not None:
        perquery = pd.read_csv(outputs / "perquery.tsv", sep="\t", dtype={"qid": str, "measure": str})
        more_summary, more = extend(perquery)
        summary.update(more_summary)
        files.update(more)
    if summary:
        metrics["summary"] = summary
    manifest = manifest_for(config, config_path, dataset, done, ctx, started, **(manifest_extra or {}))
    write_run_folder(folder, config, manifest, metrics, files)
    return RunResult(config, folder, aggregate, done.timings)


# Facts an approximate first stage reports about itself (`last_stats`) that belong in the leaderboard next to its
# effectiveness: how close it is to exact search, its latency distribution and what its index costs.
SUMMARY_STATS = {
    "accuracy@10": ("accuracy@10 vs exact", 1.0),
    "latency_1t_p50_ms": ("p50 ms, 1 thread", 1.0),
    "latency_1t_p99_ms": ("p99 ms, 1 thread", 1.0),
    "index_bytes": ("index MB", 1e-6),
    "build_seconds": ("build s", 1.0),
}


def stage_summary(timings: list[StageTiming]) -> dict:
    """Summary figures from the stages' own stats (the first stage that reports each wins)."""
    out: dict = {}
    for timing in timings:
        for key, (label, scale) in SUMMARY_STATS.items():
            value = (timing.stats or {}).get(key)
            if isinstance(value, int | float) and label not in out:
                out[label] = round(float(value) * scale, 4)
    return out


OUTPUTS_VERSION = 1


def _outputs(
    frame: pd.DataFrame, run_key: str, dataset: Dataset, measures: list, tag: str, store: ArtifactStore
) -> Path:
    """run.trec, per-query values, aggregates and top-document snippets of a run, cached by content address.

    They depend only on the run, the qrels, the measures and the corpus, so an unchanged config reuses them and a
    cached `cascade run` never scores the run or streams the corpus again.
    """
    made_from = {
        "run": run_key,
        "qrels": frame_digest(dataset.qrels, ["qid", "docno", "label"]),
        "measures": [str(m) for m in measures],
        "corpus": dataset.corpus.fingerprint if dataset.corpus is not None else None,
        "tag": tag,
        "version": OUTPUTS_VERSION,
    }

    def build(tmp: Path) -> dict:
        aggregate, perquery = evaluate(frame, dataset.qrels, measures)
        (tmp / "run.trec").write_bytes(format_run(frame, tag=tag))
        perquery.to_csv(tmp / "perquery.tsv", sep="\t", index=False, float_format="%.6f")
        (tmp / "measures.json").write_text(json.dumps(aggregate, indent=2) + "\n")
        topdocs = _topdocs(frame, dataset)
        if topdocs is not None:
            (tmp / "topdocs.jsonl").write_text(topdocs, encoding="utf-8")
        return {"queries_scored": int(perquery["qid"].nunique()) if len(perquery) else 0}

    folder, _ = store.get_or_build("outputs", content_key(made_from), build, made_from)
    return folder


def _topdocs(frame: pd.DataFrame, dataset: Dataset) -> str | None:
    """Snippets of each query's top documents for the report's drill-down; one pass over the corpus, if any."""
    if dataset.corpus is None:
        return None
    try:
        texts = lookup_texts(dataset.corpus.docs(), wanted_docnos(frame))
    except CascadeError:  # e.g. an ir_datasets corpus that cannot download offline: the run stands without snippets
        return None
    return topdocs_jsonl(top_documents(frame, texts, qrels=dataset.qrels))


def _tag(name: str) -> str:
    return "".join(c if not c.isspace() else "_" for c in name)[:64] or "cascade"
