"""`cascade suite SUITE --pipelines CONFIGS...`: every pipeline under each protocol of a suite.

A suite config names tasks; each task is one protocol on one data source:

    suite: negation
    tasks:
      - negation_pairs: {pairs: "data:nevir/test.jsonl"}        # NevIR's paired protocol
      - retrieval: {dataset: nevir, measures: [nDCG@10]}        # NevIR's BEIR view, as ordinary retrieval

Task kinds: `own` (each pipeline on its own config's dataset), `retrieval` (on another dataset), `pools`
(rank each query's candidate pool, with and without its instruction: BIRCO), `negation_pairs` (NevIR),
`resttest` (the published interpolation/extrapolation query splits), `followir` and `instructir` (their public
formats from local folders).

Every (task, pipeline) writes a run folder like `cascade run` does (run.trec, perquery.tsv, metrics.json,
manifest.json with `suite`), so the leaderboard shows one section per suite and dataset. A pipeline that cannot
run under a protocol (e.g. it replays a fixed run file) is skipped with the reason, never silently.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cascade.core.digest import content_key
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.eval.datasets import Corpus, Dataset, file_fingerprint, load_dataset
from cascade.eval.frames import format_run
from cascade.pipelines.config import Config, DatasetRef, _first_error, _line_of, load_config
from cascade.pipelines.restrain import RestrainTask, run_restrain
from cascade.pipelines.runner import (
    Executed,
    build_stages,
    execute,
    manifest_for,
    run_on_dataset,
    write_run_folder,
)
from cascade.rankers.base import Stage
from cascade.rankers.pool import NotApplicable, pooled_chain


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OwnTask(_Strict):
    """Each pipeline on the dataset its own config names (the MS MARCO suite)."""


class RetrievalTask(_Strict):
    dataset: str
    qrels: str = "default"
    measures: list[str] | None = None  # default: the pipeline config's own
    rerank_k: int | None = Field(None, gt=0, description="cap on the depth every stage after the first reranks")


class PoolsTask(_Strict):
    dataset: str
    measures: list[str] = Field(default_factory=lambda: ["nDCG@10"], min_length=1)
    instructed_only: bool = Field(False, description="keep only queries that carry an instruction (the sample)")


class NegationTask(_Strict):
    pairs: str = Field(..., description="NevIR test.jsonl: a path, data:<path under the data dir>, or 'sample'")


class ResttestTask(_Strict):
    splits: str = Field(..., description="ReSTTest query splits TSV: a path or data:<path under the data dir>")
    measure: str = "nDCG@10"


class ResampleTask(_Strict):
    """ReSample (Zhan et al.) for any pipeline with a trained stage: its test queries split by their MiniLM cosine
    to the queries its models were trained from."""

    rule: dict[str, Any] = Field(default_factory=lambda: {"rule": "quantile", "fraction": 0.5})
    measure: str = "nDCG@10"


class FolderTask(_Strict):
    path: str = Field(..., description="a folder in the format's public layout (see eval/instructions.py)")
    measures: list[str] = Field(default_factory=lambda: ["nDCG@10"], min_length=1)


TASKS: dict[str, type[_Strict]] = {
    "own": OwnTask,
    "retrieval": RetrievalTask,
    "pools": PoolsTask,
    "negation_pairs": NegationTask,
    "resttest": ResttestTask,
    "resample": ResampleTask,
    "followir": FolderTask,
    "instructir": FolderTask,
    "restrain": RestrainTask,
}


class SuiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    description: str = ""
    tasks: list[dict[str, Any]] = Field(..., min_length=1)


PROTOCOL_NAMES = {"resttest": "ReSTTest buckets", "resample": "ReSample split"}
SIDE_NAMES = ("interpolation", "extrapolation")
OWN_DATASET = ("own", "resttest", "resample")  # tasks that run each pipeline on its own config's dataset


@dataclass(frozen=True)
class Task:
    kind: str
    spec: _Strict

    @property
    def key(self) -> dict:
        return {self.kind: self.spec.model_dump(mode="json")}


def load_suite(path: str | Path) -> tuple[SuiteConfig, list[Task]]:
    """Read and check a suite config; errors name file:line and key, as for pipeline configs."""
    path = Path(path)
    if not path.is_file():
        raise CascadeError("suite config not found", where=str(path))
    text = path.read_text(encoding="utf-8")
    try:
        root, data = yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CascadeError("not valid YAML", where=f"{path}:{mark.line + 1}" if mark else str(path)) from None
    if not isinstance(data, dict):
        raise CascadeError("a suite config is a mapping with keys suite, tasks", where=str(path))
    try:
        suite = SuiteConfig.model_validate(data)
    except ValidationError as exc:
        raise _first_error(path, root, exc) from None
    tasks = []
    for index, item in enumerate(suite.tasks):
        loc = ("tasks", index)
        if not isinstance(item, dict) or len(item) != 1:
            raise CascadeError(f"tasks[{index}]: one task kind per item", where=f"{path}:{_line_of(root, loc)}")
        ((kind, params),) = item.items()
        if kind not in TASKS:
            raise CascadeError(
                f"tasks[{index}].{kind}: unknown task kind; known: {', '.join(TASKS)}",
                where=f"{path}:{_line_of(root, (*loc, kind))}",
            )
        try:
            tasks.append(Task(kind, TASKS[kind].model_validate(params or {})))
        except ValidationError as exc:
            raise _first_error(path, root, exc, (*loc, kind)) from None
    return suite, tasks


# ---------------------------------------------------------------------------------------------------------------
# pipelines


@dataclass(frozen=True)
class PipelineRef:
    label: str  # the pipeline's name without its dataset prefix: `dl19-bm25` -> `bm25`
    path: Path
    config: Config


def pipeline_label(config: Config) -> str:
    prefix = (config.dataset.name or "").rsplit("/", 1)[-1]
    if prefix and config.name.startswith(prefix + "-"):
        return config.name.removeprefix(prefix + "-")
    return config.name


def load_pipelines(paths: list[Path]) -> tuple[list[PipelineRef], list[PipelineRef]]:
    """(every config, one per distinct stage chain): a suite on another dataset runs `dl19-bm25` and `dl20-bm25`
    once, as `bm25`."""
    refs = [PipelineRef(pipeline_label(c), p, c) for p in paths for c in [load_config(p)]]
    distinct: dict[str, PipelineRef] = {}
    for ref in refs:
        chain = content_key({"pipeline": ref.config.result_parts()["pipeline"], "seed": ref.config.seed})
        distinct.setdefault(chain, ref)
    labels: dict[str, int] = {}
    for ref in distinct.values():
        labels[ref.label] = labels.get(ref.label, 0) + 1
    # two different chains with one short name (e.g. dl19- and dl20-official-bm25-ce read different run files)
    # keep their full config names
    unique = [dataclasses.replace(r, label=r.config.name) if labels[r.label] > 1 else r for r in distinct.values()]
    if len({r.label for r in unique}) < len(unique):
        raise CascadeError("two different pipeline configs share one name; rename one of them")
    return refs, unique


def instruction_readers(stages: list[Stage]) -> tuple[list[str], list[str]]:
    """(stages that read a query's instruction, stages that ignore it), fusion inputs included."""
    from cascade.rankers.fusion import Fusion

    read, ignored = [], []
    for stage in stages:
        if isinstance(stage, Fusion):
            for chain in stage.sub_pipelines():
                r, i = instruction_readers(chain)
                read += r
                ignored += i
            continue
        (read if stage.reads_instruction else ignored).append(stage.name)
    return list(dict.fromkeys(read)), list(dict.fromkeys(ignored))


# ---------------------------------------------------------------------------------------------------------------
# running


@dataclass
class Outcome:
    task: str
    pipeline: str
    folder: Path | None
    measures: dict[str, float]
    note: str = ""


def run_suite(
    path: Path,
    pipelines: list[Path],
    out: Path,
    session: Context,
    on_result: Callable[[Outcome], None] = lambda o: None,
) -> list[Outcome]:
    """Every task of the suite for every pipeline; each run folder is written atomically as it completes."""
    suite, tasks = load_suite(path)
    if not pipelines:
        raise CascadeError("--pipelines: give at least one pipeline config")
    every, distinct = load_pipelines(pipelines)
    results = []
    for task in tasks:
        runner = RUNNERS[task.kind]
        refs = every if task.kind in OWN_DATASET else distinct
        for ref in refs:
            try:
                outcome = runner(task, ref, suite.suite, out / suite.suite, session)
            except NotApplicable as exc:
                name = ref.config.name if task.kind in OWN_DATASET else ref.label
                outcome = Outcome(task_label(task, ref), name, None, {}, f"skipped: {exc}")
            results.append(outcome)
            on_result(outcome)
    return results


def task_label(task: Task, ref: PipelineRef) -> str:
    spec = task.spec
    if isinstance(spec, RetrievalTask | PoolsTask):
        return spec.dataset
    if isinstance(spec, NegationTask):
        return "nevir-pairs"
    if isinstance(spec, OwnTask | ResttestTask | ResampleTask):
        name = ref.config.dataset.name or Path(ref.config.dataset.path or "folder").name
        return name if isinstance(spec, OwnTask) else f"{name} · {PROTOCOL_NAMES[task.kind]}"
    if isinstance(spec, FolderTask):
        name = Path(spec.path.split(":", 1)[-1]).name
        return task.kind if name == task.kind else f"{task.kind}-{name}"
    return task.kind


def _suite_extra(suite: str, task: Task, ref: PipelineRef) -> dict:
    """Manifest fields of a suite run; its config hash covers the task too, so the same pipeline's runs in two
    tasks are never grouped as copies of one run."""
    return {
        "suite": suite,
        "task": task.key,
        "pipeline_config_hash": ref.config.config_hash,
        "config_hash": content_key({"suite": suite, "task": task.key, "config": ref.config.config_hash}),
    }


def _folder(out: Path, task: Task, ref: PipelineRef) -> Path:
    name = ref.config.name if task.kind in OWN_DATASET else ref.label
    folder = "".join(c if c.isalnum() or c in "-_." else "_" for c in task_label(task, ref).replace("/", "__"))
    return out / folder / name


def run_own(task: Task, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    from cascade.pipelines.runner import open_dataset

    dataset = open_dataset(ref.config, session.data_dir)
    folder = _folder(out, task, ref)
    result = run_on_dataset(
        ref.config, ref.path, dataset, folder, session, manifest_extra=_suite_extra(suite, task, ref)
    )
    return Outcome(task_label(task, ref), ref.config.name, folder, result.measures)


def run_retrieval(task: Task, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    spec: RetrievalTask = task.spec  # type: ignore[assignment]
    config = _retargeted(ref, DatasetRef(name=spec.dataset, qrels=spec.qrels), spec.measures)
    if spec.rerank_k is not None:
        config = config.model_copy(update={"pipeline": _capped_reranking(config.pipeline, spec.rerank_k)})
    _check_first_stage(config, session)
    dataset = load_dataset(spec.dataset, session.data_dir, qrels=spec.qrels)
    folder = _folder(out, task, ref)
    result = run_on_dataset(config, ref.path, dataset, folder, session, manifest_extra=_suite_extra(suite, task, ref))
    return Outcome(task_label(task, ref), ref.label, folder, result.measures)


def _capped_reranking(items: list[dict[str, Any]], depth: int) -> list[dict[str, Any]]:
    """The chain with every stage after the first reranking at most `depth` documents (its `k`)."""
    out = [items[0]]
    for item in items[1:]:
        ((name, params),) = item.items()
        params = dict(params or {})
        if "k" in params or name in ("dense_rerank", "cross_encoder", "ltr"):
            params["k"] = min(int(params.get("k") or depth), depth)
        out.append({name: params})
    return out


def _retargeted(ref: PipelineRef, dataset: DatasetRef, measures: list[str] | None) -> Config:
    update: dict[str, Any] = {"dataset": dataset, "name": ref.label}
    if measures:
        update["measures"] = list(measures)
    return ref.config.model_copy(update=update)


def _check_first_stage(config: Config, session: Context) -> None:
    from cascade.rankers.run_file import RunFile

    first = build_stages(config, session)[0]
    if isinstance(first, RunFile):
        raise NotApplicable("its first stage reads a fixed run file made for another dataset")


def _pooled(ref: PipelineRef, queries: pd.DataFrame, corpus: Corpus, pools: pd.DataFrame, session: Context) -> Executed:
    """The pipeline ranking exactly each query's pool (see rankers/pool.py)."""
    stages = pooled_chain(build_stages(ref.config, session), pools, corpus.size)
    return execute(stages, queries, session.for_run(corpus, ref.config.seed))


def run_negation(task: Task, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    """NevIR's protocol: each query ranks its pair's two documents; corpus statistics come from all NevIR docs."""
    from cascade.eval.negation import pair_measures, pair_scores, read_pairs

    started = time.perf_counter()
    spec: NegationTask = task.spec  # type: ignore[assignment]
    pairs = read_pairs(_resolve(spec.pairs, session, "negation_pairs.pairs", sample="negation.jsonl"))
    corpus = Corpus(f"nevir-pairs:{pairs.source.name}", lambda: file_fingerprint(pairs.source), pairs.docs)
    queries = pairs.queries
    done = _pooled(ref, queries, corpus, pairs.pools, session)
    scores = pair_scores(done.frame, pairs)
    perquery = pair_measures(scores)
    aggregate = perquery.groupby("measure", sort=False)["value"].mean().to_dict()
    dataset = Dataset("nevir-pairs", str(pairs.source), lambda: queries, lambda: pairs.qrels, corpus, "pairs")
    label = "nevir pairs" if spec.pairs != "sample" else "sample negation pairs"
    metrics = {"name": ref.label, "dataset": label, "qrels": "-", "queries": len(pairs.table)}
    metrics["measures"] = {k: float(v) for k, v in aggregate.items()}
    config = _retargeted(ref, DatasetRef(path=str(pairs.source)), list(aggregate))
    extra = _suite_extra(suite, task, ref) | {"protocol": "NevIR paired accuracy; ties are wrong"}
    manifest = manifest_for(config, ref.path, dataset, done, session.for_run(corpus, ref.config.seed), started, **extra)
    manifest["dataset"]["queries"] = len(pairs.table)  # the units of perquery.tsv are pairs
    folder = _folder(out, task, ref)
    files = {
        "run.trec": format_run(done.frame, tag=ref.label),
        "perquery.tsv": _tsv(perquery, "%.6f"),
        "pairs.tsv": _tsv(scores, "%.9g"),
    }
    write_run_folder(folder, config, manifest, metrics, files)
    return Outcome(task_label(task, ref), ref.label, folder, metrics["measures"])


def run_pools(task: Task, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    """Rank each query's pool (its qrels rows) with its instruction and without; the stages that cannot read an
    instruction are named in the results, and then no instructed run is claimed."""
    from cascade.eval.measures import evaluate, parse_measures

    started = time.perf_counter()
    spec: PoolsTask = task.spec  # type: ignore[assignment]
    dataset = load_dataset(spec.dataset, session.data_dir)
    if dataset.corpus is None:
        raise CascadeError(f"pools: dataset '{spec.dataset}' has no corpus")
    queries = dataset.queries
    if "instruction" not in queries:
        raise CascadeError(f"pools: dataset '{spec.dataset}' has no query with an instruction")
    if spec.instructed_only:
        queries = queries[queries["instruction"] != ""].reset_index(drop=True)
    qrels = dataset.qrels[dataset.qrels["qid"].isin(set(queries["qid"]))]
    pools = qrels[["qid", "docno"]]
    measures = parse_measures(spec.measures, where="pools.measures")
    read, ignored = instruction_readers(build_stages(ref.config, session))

    bare = _pooled(ref, queries.drop(columns="instruction"), dataset.corpus, pools, session)
    bare_aggregate, bare_perquery = evaluate(bare.frame, qrels, measures)
    tables = [bare_perquery.assign(measure=bare_perquery["measure"] + " (no instruction)")]
    aggregate = {f"{k} (no instruction)": v for k, v in bare_aggregate.items()}
    done = bare
    if read:
        done = _pooled(ref, queries, dataset.corpus, pools, session)
        with_aggregate, with_perquery = evaluate(done.frame, qrels, measures)
        merged = with_perquery.merge(bare_perquery, on=["qid", "measure"], suffixes=("", "_bare"))
        delta = merged.assign(measure="Δ " + merged["measure"], value=merged["value"] - merged["value_bare"])
        tables = [with_perquery, *tables, delta[["qid", "measure", "value"]]]
        aggregate = {
            **with_aggregate,
            **aggregate,
            **{f"Δ {k}": with_aggregate[k] - bare_aggregate[k] for k in with_aggregate},
        }
        note = f"read by {', '.join(read)}" + (f"; ignored by {', '.join(ignored)}" if ignored else "")
    else:
        note = f"not read by {', '.join(ignored)}: no instructed run"
    perquery = pd.concat(tables, ignore_index=True)
    metrics = {
        "name": ref.label,
        "dataset": dataset.name,
        "qrels": dataset.qrels_name,
        "queries": int(queries["qid"].nunique()),
        "measures": {k: float(v) for k, v in aggregate.items()},
        "summary": {"instruction": note},
    }
    config = _retargeted(ref, DatasetRef(name=spec.dataset), spec.measures)
    extra = _suite_extra(suite, task, ref) | {"protocol": "rank each query's pool, with and without its instruction"}
    ctx = session.for_run(dataset.corpus, ref.config.seed)
    manifest = manifest_for(config, ref.path, dataset, done, ctx, started, **extra)
    manifest["dataset"]["queries"] = int(queries["qid"].nunique())
    files = {"run.trec": format_run(done.frame, tag=ref.label), "perquery.tsv": _tsv(perquery, "%.6f")}
    if read:
        files["run.no-instruction.trec"] = format_run(bare.frame, tag=ref.label)
    folder = _folder(out, task, ref)
    write_run_folder(folder, config, manifest, metrics, files)
    return Outcome(task_label(task, ref), ref.label, folder, metrics["measures"])


def run_resttest(task: Task, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    """The pipeline on its own dataset, scored on each ReSTTest bucket's interpolation and extrapolation sides."""
    from cascade.eval.extrapolation import RESTTEST_TESTSETS, read_splits
    from cascade.pipelines.runner import open_dataset

    spec: ResttestTask = task.spec  # type: ignore[assignment]
    name = ref.config.dataset.name
    if name not in RESTTEST_TESTSETS:
        raise NotApplicable(f"ReSTTest splits exist for {', '.join(RESTTEST_TESTSETS)}, not for {name or 'a folder'}")
    dataset = open_dataset(ref.config, session.data_dir)
    path = _resolve(spec.splits, session, "resttest.splits")
    splits = read_splits(path, RESTTEST_TESTSETS[name], known_qids=set(dataset.queries["qid"]))

    protocol = f"ReSTTest splits from {path.name}, mean over buckets"
    return _run_on_sides(task, ref, suite, out, session, dataset, splits, spec.measure, protocol)


def _run_on_sides(
    task: Task,
    ref: PipelineRef,
    suite: str,
    out: Path,
    session: Context,
    dataset: Dataset,
    sides: pd.DataFrame,
    measure: str,
    protocol: str,
    table: pd.DataFrame | None = None,
) -> Outcome:
    """The pipeline on its own dataset, its per-query values averaged on the interpolation and extrapolation side
    of each bucket of `sides` (`[bucket,] side, qid`); `table` (default: the per-bucket scores) goes to splits.tsv."""
    from cascade.eval.extrapolation import split_scores

    def extend(perquery: pd.DataFrame) -> tuple[dict, dict[str, bytes]]:
        scores = split_scores(perquery, sides, measure)
        avg = scores.average
        summary = {
            f"interpolation {measure}": avg["interpolation"],
            f"extrapolation {measure}": avg["extrapolation"],
            "gap (interp - extrap)": avg["gap"],
            "buckets": int(avg["buckets"]),
        }
        if "bucket" not in sides:  # one split: say how the queries divide
            summary["queries (interp / extrap)"] = " / ".join(str(int((sides["side"] == x).sum())) for x in SIDE_NAMES)
        return summary, {"splits.tsv": _tsv(scores.buckets if table is None else table, "%.6f")}

    folder = _folder(out, task, ref)
    extra = _suite_extra(suite, task, ref) | {"protocol": protocol}
    label = task_label(task, ref)
    result = run_on_dataset(
        ref.config, ref.path, dataset, folder, session, manifest_extra=extra, extend=extend, dataset_label=label
    )
    return Outcome(label, ref.config.name, folder, result.measures)


def training_queries(config: Config, data_dir: Path | None) -> pd.DataFrame:
    """The queries the pipeline's `train:` models learn from (each training config's training dataset); empty when
    no stage is trained. The whole pool is used: a model's dev split is also data it was selected on."""
    from cascade.pipelines.restrain import train_refs
    from cascade.pipelines.train import read_training_config

    frames = []
    for ref in train_refs(config.pipeline):
        data, _ = read_training_config(ref)
        train = data.get("train") or {}
        if isinstance(train, dict) and train.get("dataset"):
            frames.append(load_dataset(str(train["dataset"]), data_dir).queries[["qid", "query"]])
    if not frames:
        return pd.DataFrame(columns=["qid", "query"])
    return pd.concat(frames, ignore_index=True).drop_duplicates("qid").reset_index(drop=True)


def run_resample(task: Task, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    """The pipeline on its own dataset, its queries split by similarity to its training queries (ReSample)."""
    from cascade.pipelines.resample import SplitRule, resample_split
    from cascade.pipelines.runner import open_dataset

    spec: ResampleTask = task.spec  # type: ignore[assignment]
    try:
        rule = SplitRule.model_validate(spec.rule)
    except ValidationError as exc:
        detail = exc.errors()[0]
        raise CascadeError(f"resample.rule: {detail['msg']}") from None
    train = training_queries(ref.config, session.data_dir)
    if train.empty:
        raise NotApplicable("no stage is trained (`train:` model), so there is nothing to interpolate from")
    dataset = open_dataset(ref.config, session.data_dir)
    sides = resample_split(train, dataset.queries, rule, session.store, session.progress)

    protocol = f"ReSample split: {rule.model_dump(exclude_none=True)}"
    return _run_on_sides(task, ref, suite, out, session, dataset, sides[["qid", "side"]], spec.measure, protocol, sides)


def _records_corpus(name: str, records: list[dict]) -> Corpus:
    key = content_key([[r["docno"], r.get("title", ""), r["text"]] for r in records])
    return Corpus(name, lambda: f"records:{key}", lambda: iter(records))


def run_followir(task: Task, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    """FollowIR: each query's candidates ranked under its original and its changed instruction; p-MRR from the
    two runs, nDCG@10 of the original run with the original qrels."""
    from cascade.eval.instructions import p_mrr, read_followir
    from cascade.eval.measures import evaluate, parse_measures

    started = time.perf_counter()
    spec: FolderTask = task.spec  # type: ignore[assignment]
    data = read_followir(_resolve_dir(spec.path, session, "followir.path"))
    corpus = _records_corpus(_source_name("followir", spec.path), data.corpus)
    read, ignored = instruction_readers(build_stages(ref.config, session))
    if not read:
        raise NotApplicable(f"no stage reads instructions ({', '.join(ignored)}), so p-MRR would be 0 by construction")
    og = _pooled(ref, data.queries_for("og"), corpus, data.candidates, session)
    changed = _pooled(ref, data.queries_for("changed"), corpus, data.candidates, session)
    value, per_query = p_mrr(og.frame, changed.frame, data.qrels_og, data.qrels_changed)
    aggregate, perquery = evaluate(og.frame, data.qrels_og, parse_measures(spec.measures, where="followir.measures"))
    perquery = pd.concat(
        [perquery, pd.DataFrame({"qid": per_query["qid"], "measure": "p-MRR", "value": per_query["p_mrr"]})],
        ignore_index=True,
    )
    note = _instruction_note(read, ignored)
    dataset = Dataset(corpus.name, spec.path, lambda: data.queries, lambda: data.qrels_og, corpus, "og")
    metrics = {
        "name": ref.label,
        "dataset": corpus.name,
        "qrels": "og",
        "queries": len(data.queries),
        "measures": {**{k: float(v) for k, v in aggregate.items()}, "p-MRR": value},
        "summary": {"instruction": note},
    }
    config = _retargeted(ref, DatasetRef(path=spec.path), spec.measures)
    manifest = manifest_for(
        config,
        ref.path,
        dataset,
        og,
        session.for_run(corpus, ref.config.seed),
        started,
        **_suite_extra(suite, task, ref),
    )
    files = {
        "run.trec": format_run(og.frame, tag=ref.label),
        "run.changed.trec": format_run(changed.frame, tag=ref.label),
        "perquery.tsv": _tsv(perquery, "%.6f"),
    }
    folder = _folder(out, task, ref)
    write_run_folder(folder, config, manifest, metrics, files)
    return Outcome(task_label(task, ref), ref.label, folder, metrics["measures"])


def run_instructir(task: Task, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    """InstructIR: every instance (a user's instruction over a shared base query) retrieves from the corpus;
    nDCG@10 per instance and Robustness@10, the worst instance per base query, averaged."""
    from cascade.eval.instructions import read_instructir, robustness_at_k

    spec: FolderTask = task.spec  # type: ignore[assignment]
    data = read_instructir(_resolve_dir(spec.path, session, "instructir.path"))
    corpus = _records_corpus(_source_name("instructir", spec.path), data.corpus)
    config = _retargeted(ref, DatasetRef(path=spec.path), spec.measures)
    _check_first_stage(config, session)
    queries = data.queries[["qid", "query", "instruction"]]
    dataset = Dataset(corpus.name, spec.path, lambda: queries, lambda: data.qrels, corpus)
    read, ignored = instruction_readers(build_stages(ref.config, session))
    note = _instruction_note(read, ignored)

    def extend(perquery: pd.DataFrame) -> tuple[dict, dict[str, bytes]]:
        first = parse_measure_name(spec.measures[0])
        robust = robustness_at_k(perquery, data.base_of, first)
        return {f"robustness {first}": robust.robustness, "instruction": note}, {
            "robustness.tsv": _tsv(robust.per_base, "%.6f")
        }

    folder = _folder(out, task, ref)
    result = run_on_dataset(
        config, ref.path, dataset, folder, session, manifest_extra=_suite_extra(suite, task, ref), extend=extend
    )
    return Outcome(task_label(task, ref), ref.label, folder, result.measures)


def _instruction_note(read: list[str], ignored: list[str]) -> str:
    if not read:
        return f"not read by {', '.join(ignored)}"
    return f"read by {', '.join(read)}" + (f"; ignored by {', '.join(ignored)}" if ignored else "")


def _source_name(kind: str, path: str) -> str:
    """`followir (sample)` for the built-in collections, `followir/<folder>` for a user's folder."""
    if path.startswith("sample:"):
        return f"{kind} (sample)"
    return f"{kind}/{Path(path.split(':', 1)[-1]).name}"


def parse_measure_name(name: str) -> str:
    from cascade.eval.measures import canonical, parse_measures

    return canonical(parse_measures([name])[0])


def _resolve_dir(value: str, session: Context, key: str) -> Path:
    """A folder: a path, data:<folder under the data dir>, or sample:<folder of the built-in sample>."""
    from cascade.eval.datasets import SAMPLE_DIR

    if value.startswith("sample:"):
        path = SAMPLE_DIR / value.removeprefix("sample:")
    elif value.startswith("data:"):
        if session.data_dir is None:
            raise CascadeError(f"{key}: {value!r} is under the data dir: pass --data-dir or set CASCADE_DATA")
        path = session.data_dir / value.removeprefix("data:")
    else:
        path = Path(value).expanduser()
    if not path.is_dir():
        raise CascadeError(f"{key}: folder '{path}' does not exist")
    return path


def _tsv(frame: pd.DataFrame, float_format: str) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, sep="\t", index=False, float_format=float_format)
    return buffer.getvalue().encode("utf-8")


def _resolve(value: str, session: Context, key: str, sample: str | None = None) -> Path:
    from cascade.eval.datasets import SAMPLE_DIR
    from cascade.pipelines.train.data import resolve_path

    if value == "sample" and sample:
        return SAMPLE_DIR / sample
    return resolve_path(value, session.data_dir, key)


RUNNERS: dict[str, Callable[..., Outcome]] = {
    "own": run_own,
    "retrieval": run_retrieval,
    "negation_pairs": run_negation,
    "pools": run_pools,
    "resttest": run_resttest,
    "resample": run_resample,
    "followir": run_followir,
    "instructir": run_instructir,
    "restrain": run_restrain,
}


def outcome_line(outcome: Outcome) -> str:
    if outcome.folder is None:
        return f"{outcome.task} / {outcome.pipeline}: {outcome.note}"
    measures = "  ".join(f"{k}={v:.4f}" for k, v in outcome.measures.items())
    return f"{outcome.task} / {outcome.pipeline}: {measures} -> {outcome.folder}"
