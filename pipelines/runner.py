"""What `cascade run CONFIG` does: dataset -> stages (each cached by content address) -> run -> measures.

The stages run through the one engine (`cascade.rankers.engine.execute`, re-exported here): each stage's output
is cached under a hash of the stage's config and version, the address of its input and, for stages that read
documents, the corpus fingerprint. Unchanged work is never redone; changed work never reads a stale entry.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cascade.core.atomic import refuse_unless_ours, replace_dir
from cascade.core.digest import content_key, frame_digest
from cascade.core.errors import CascadeError, warn
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import Dataset, DownloadError, load_dataset, load_folder
from cascade.eval.measures import coverage_note, evaluate, parse_measures
from cascade.eval.runs import format_run
from cascade.eval.topdocs import snippet, top_documents, topdocs_jsonl, wanted_docnos
from cascade.indexes.docstore import open_docstore
from cascade.pipelines.config import Config
from cascade.pipelines.manifest import git_commit, host, package_versions
from cascade.pipelines.train import resolve_train_refs
from cascade.rankers.base import Context, Stage, build_pipeline
from cascade.rankers.engine import Executed, StageTiming, execute


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
    return build_pipeline(resolve_train_refs(config.pipeline, env)).stages


def manifest_for(
    config: Config, config_path: Path | None, dataset: Dataset, done: Executed, ctx: Context, started: float, **extra
) -> dict:
    """What a run folder says about how it was made: config hash, seed, stages and timings, versions, commit.

    Everything that differs between two runs of one config (timings, the stages' wall-clock figures in
    `summary`, versions, host, date) is here and only here, so the rest of the run folder is byte-identical.
    `summary` holds all the stages' leaderboard figures, in SUMMARY_STATS order; metrics.json the others only."""
    figures = stage_summary(done.timings)
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
        **({"summary": figures} if figures else {}),
        **extra,
        "versions": package_versions(),
        "git": git_commit(),
        "host": host(),
        "threads": ctx.threads,
        "executor": ctx.executor.facts(),
        "wall_seconds": round(time.perf_counter() - started, 6),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@dataclass
class Artifacts:
    """A run folder before it is written: a `cascade run`, or one pipeline under one protocol of a suite.

    `files` are bytes, or cached files to copy in; `extra` are the manifest fields the run adds (e.g. how a
    protocol scored it); `units` replaces the manifest's query count when perquery.tsv's units are not the
    dataset's queries (e.g. NevIR pairs)."""

    config: Config
    config_path: Path | None
    dataset: Dataset
    done: Executed
    ctx: Context
    started: float
    metrics: dict
    files: dict[str, Path | bytes]
    extra: dict = field(default_factory=dict)
    units: int | None = None


def is_run_folder(path: Path) -> bool:
    """A folder cascade wrote: it holds a manifest.json with a config hash (never read as anything else)."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "config_hash" in manifest


def check_run_folder(folder: Path) -> None:
    """Before any work: `folder` is absent or a run folder cascade wrote; anything else is a user's, kept."""
    refuse_unless_ours(folder, is_run_folder)


def write_run_folder(folder: Path, artifacts: Artifacts, **extra) -> None:
    """The one writer of run folders, all or nothing: the files, metrics.json, manifest.json and the config.
    `extra` manifest fields (a suite's) come before the artifacts' own. Only a run folder replaces a run folder
    (`replace_dir`): a user's folder or file at that path is refused, never touched."""
    a = artifacts
    manifest = manifest_for(a.config, a.config_path, a.dataset, a.done, a.ctx, a.started, **(extra | a.extra))
    if a.units is not None:
        manifest["dataset"]["queries"] = a.units
    with replace_dir(folder, is_run_folder) as tmp:
        for name, source in a.files.items():
            if isinstance(source, bytes):
                (tmp / name).write_bytes(source)
            elif source.exists():
                shutil.copyfile(source, tmp / name)
        (tmp / "metrics.json").write_text(json.dumps(a.metrics, indent=2) + "\n")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        (tmp / "config.json").write_text(json.dumps(a.config.model_dump(mode="json"), indent=2) + "\n")


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
    check_run_folder(out_dir / config.name)
    session = session or Context.open(data_dir, cache_dir, threads, progress)
    dataset = open_dataset(config, session.data_dir)
    return run_on_dataset(config, config_path, dataset, out_dir / config.name, session)


Extend = Callable[[pd.DataFrame], tuple[dict, dict[str, bytes]]]


def run_on_dataset(
    config: Config, config_path: Path | None, dataset: Dataset, folder: Path, session: Context
) -> RunResult:
    """Run the config's pipeline on `dataset` and write `folder`."""
    artifacts = run_artifacts(config, config_path, dataset, session)
    write_run_folder(folder, artifacts)
    return RunResult(config, folder, artifacts.metrics["measures"], artifacts.done.timings)


def run_artifacts(
    config: Config,
    config_path: Path | None,
    dataset: Dataset,
    session: Context,
    *,
    extend: Extend | None = None,
    dataset_label: str | None = None,
    extra: dict | None = None,
) -> Artifacts:
    """Run the config's pipeline on `dataset` and score it; `extend(perquery)` may add summary figures and files
    (a suite's view of the same run, e.g. ReSTTest's interpolation and extrapolation sides)."""
    started = time.perf_counter()
    if dataset.queries.empty:
        raise CascadeError(f"dataset '{dataset.name}' has no judged queries")
    measures = parse_measures(config.measures)
    ctx = session.for_run(dataset.corpus, config.seed)
    done = execute(build_stages(config, session), dataset.queries, ctx)
    note = coverage_note(done.frame, dataset.qrels, where=f"{config.name} on {dataset_label or dataset.name}")
    if note:  # every time, a cached run too: the scores below count those queries as 0
        warn(note, where=f"{config.name} on {dataset_label or dataset.name}")
    outputs, aggregate, scored = _outputs(done.frame, done.run_key, dataset, measures, _tag(config.name), session.store)
    metrics = {
        "name": config.name,
        "dataset": dataset_label or dataset.name,  # a suite's protocol may name its view of the dataset
        "qrels": dataset.qrels_name,
        "queries": scored,
        "measures": aggregate,
    }
    files: dict[str, Path | bytes] = {name: outputs / name for name in ("run.trec", "perquery.tsv", "topdocs.jsonl")}
    summary = stage_summary(done.timings, timed=False)
    if extend is not None:
        perquery = pd.read_csv(outputs / "perquery.tsv", sep="\t", dtype={"qid": str, "measure": str})
        more_summary, more = extend(perquery)
        summary.update(more_summary)
        files.update(more)
    if summary:
        metrics["summary"] = summary
    return Artifacts(config, config_path, dataset, done, ctx, started, metrics, files, dict(extra or {}))


# Facts an approximate first stage reports about itself (`Output.stats`) that belong in the leaderboard next to its
# effectiveness: how close it is to exact search, its latency distribution and what its index costs. The manifest's
# `summary` has them all, metrics.json's all but the wall-clock ones (TIMED_STATS); the report shows the union.
SUMMARY_STATS = {
    "accuracy@10": ("accuracy@10 vs exact", 1.0),
    "latency_1t_p50_ms": ("p50 ms, 1 thread", 1.0),
    "latency_1t_p99_ms": ("p99 ms, 1 thread", 1.0),
    "index_bytes": ("index MB", 1e-6),
    "build_seconds": ("build s", 1.0),
}


TIMED_STATS = frozenset({"latency_1t_p50_ms", "latency_1t_p99_ms", "build_seconds"})


def stage_summary(timings: list[StageTiming], *, timed: bool | None = None) -> dict:
    """Summary figures from the stages' own stats (the first stage that reports each wins): all of them (for the
    manifest), or with `timed=False` all but the wall-clock ones (for metrics.json, the same on every rerun)."""
    out: dict = {}
    for timing in timings:
        for key, (label, scale) in SUMMARY_STATS.items():
            if timed is not None and (key in TIMED_STATS) != timed:
                continue
            value = (timing.stats or {}).get(key)
            if isinstance(value, int | float) and label not in out:
                out[label] = round(float(value) * scale, 4)
    return out


OUTPUTS_VERSION = 2  # 2: one tie rule for every measure, per-query rows sorted (cascade.eval.measures)


def _outputs(
    frame: pd.DataFrame, run_key: str, dataset: Dataset, measures: list, tag: str, store: ArtifactStore
) -> tuple[Path, dict[str, float], int]:
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
        topdocs = _topdocs(frame, dataset, store)
        if topdocs is not None:
            (tmp / "topdocs.jsonl").write_text(topdocs, encoding="utf-8")
        return {"queries_scored": int(perquery["qid"].nunique()) if len(perquery) else 0}

    def load(folder: Path) -> tuple[dict[str, float], int]:
        """The entry's aggregates and count, its files checked: a damaged entry is said, removed and rebuilt."""
        for name in ("run.trec", "perquery.tsv"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{name} is missing")
        aggregate = json.loads((folder / "measures.json").read_text(encoding="utf-8"))
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
        return aggregate, int(card["queries_scored"])

    (aggregate, scored), folder, _ = store.get_or_load("outputs", content_key(made_from), build, made_from, load)
    return folder, aggregate, scored


def _topdocs(frame: pd.DataFrame, dataset: Dataset, store: ArtifactStore) -> str | None:
    """Snippets of each query's top documents for the report's drill-down, from the corpus's document store."""
    if dataset.corpus is None:
        return None
    try:
        found = open_docstore(dataset.corpus, store).lookup(sorted(wanted_docnos(frame)))
        texts = {docno: snippet(title, text) for docno, (title, text) in found.items()}
    except DownloadError:  # an ir_datasets corpus that cannot download offline: the run stands without snippets
        return None
    return topdocs_jsonl(top_documents(frame, texts, qrels=dataset.qrels))


def _tag(name: str) -> str:
    return "".join(c if not c.isspace() else "_" for c in name)[:64] or "cascade"
