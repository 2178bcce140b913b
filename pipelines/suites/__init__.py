"""`cascade suite SUITE --pipelines CONFIGS...`: every pipeline under each protocol of a suite.

A suite config names tasks; each task is one protocol on one data source:

    suite: negation
    tasks:
      - negation_pairs: {pairs: "data:nevir/test.jsonl"}        # NevIR's paired protocol
      - retrieval: {dataset: nevir, measures: [nDCG@10]}        # NevIR's BEIR view, as ordinary retrieval

Task kinds are the protocol classes' kinds (`PROTOCOLS`): `own` and `retrieval` (retrieval.py), `negation_pairs`
(negation.py), `pools`, `followir` and `instructir` (instructions.py), `resttest` and `resample`
(extrapolation.py), `restrain` (restrain.py), `cv` (crossval.py).

Every (task, pipeline) writes a run folder like `cascade run` does (run.trec, perquery.tsv, metrics.json,
manifest.json with `suite`), through the one writer `runner.write_run_folder`, so the leaderboard shows one
section per suite and dataset. A pipeline that cannot run under a protocol (e.g. it replays a fixed run file) is
skipped with the reason, never silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cascade.core.configfile import error_at, load_model, read_yaml, validate
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.core.paths import confined
from cascade.eval.datasets import SAMPLE_DIR, load_dataset
from cascade.pipelines.config import check_refs, preflight
from cascade.pipelines.runner import check_run_folder, write_run_folder
from cascade.pipelines.suites import crossval, extrapolation, instructions, negation, restrain, retrieval
from cascade.pipelines.suites.base import PROTOCOLS, PipelineRef, Protocol, TaskError, load_pipelines
from cascade.pipelines.suites.common import SAMPLE_PREFIX
from cascade.rankers.pool import NotApplicable

# the modules whose protocol classes fill PROTOCOLS when they are defined
MODULES = (retrieval, negation, instructions, extrapolation, restrain, crossval)

__all__ = [
    "PROTOCOLS",
    "MODULES",
    "Outcome",
    "Protocol",
    "SuiteConfig",
    "TaskError",
    "load_pipelines",
    "load_suite",
    "run_suite",
]


class SuiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    suite: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    description: str = ""
    tasks: list[dict[str, Any]] = Field(..., min_length=1)


def load_suite(path: str | Path) -> tuple[SuiteConfig, list[Protocol]]:
    """Read and check a suite config: one protocol object per task; errors name file:line and key."""
    suite, root = load_model(path, SuiteConfig, "suite config")
    tasks = []
    for index, item in enumerate(suite.tasks):
        loc = ("tasks", index)
        if not isinstance(item, dict) or len(item) != 1:
            raise error_at(path, root, loc, "one task kind per item")
        ((kind, params),) = item.items()
        if kind not in PROTOCOLS:
            raise error_at(path, root, (*loc, kind), f"unknown task kind; known: {', '.join(sorted(PROTOCOLS))}")
        protocol = PROTOCOLS[kind]
        tasks.append(protocol(validate(protocol.Spec, params or {}, path, root, (*loc, kind))))
    return suite, tasks


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
    # before any work: the suite's own datasets and `data:` files, and each pipeline's datasets, files and models
    root = read_yaml(path, "suite config")[1]
    check_refs(suite.tasks, ("tasks",), Path(path), root, session.data_dir)
    check_sample_refs(suite.tasks, ("tasks",), Path(path), root)
    for index, task in enumerate(tasks):
        name = getattr(task.spec, "dataset", None)
        if isinstance(name, str):
            try:
                load_dataset(name, session.data_dir, qrels=getattr(task.spec, "qrels", "default"))
            except CascadeError as exc:
                raise error_at(path, root, ("tasks", index, task.kind, "dataset"), str(exc)) from None
    own = any(task.own_dataset for task in tasks)
    for ref in every:
        preflight(ref.config, ref.path, session.data_dir, dataset=own)
    for index, task in enumerate(tasks):
        try:
            task.check(every if task.own_dataset else distinct, session)
        except TaskError as exc:
            raise error_at(path, root, ("tasks", index, task.kind, *exc.key), exc.detail) from None
    for task in tasks:  # before any work: no run folder may land on a user's file or folder
        for ref in every if task.own_dataset else distinct:
            check_run_folder(out / suite.suite / task.folder(ref, task.label(ref)))
    results = []
    for task in tasks:
        for ref in every if task.own_dataset else distinct:
            outcome = run_task(task, ref, suite.suite, out / suite.suite, session)
            results.append(outcome)
            on_result(outcome)
    return results


def check_sample_refs(value: Any, loc: tuple, path: Path, root: Any) -> None:
    """`sample:` strings in task parameters stay inside the built-in sample, said at their file and line."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_sample_refs(item, (*loc, key), path, root)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_sample_refs(item, (*loc, index), path, root)
    elif isinstance(value, str) and value.startswith(SAMPLE_PREFIX):
        try:
            confined(SAMPLE_DIR, value.removeprefix(SAMPLE_PREFIX), "", value, "the built-in sample")
        except CascadeError as exc:
            raise error_at(path, root, loc, str(exc).removeprefix(": ")) from None


def run_task(task: Protocol, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    """One pipeline under one protocol, its run folder written under `out`; a skip says why."""
    name = task.pipeline_name(ref)
    try:
        artifacts = task.run(ref, session)
    except NotApplicable as exc:
        return Outcome(task.label(ref), name, None, {}, f"skipped: {exc}")
    label, shown = task.outcome(ref, artifacts)
    folder = out / task.folder(ref, label)
    write_run_folder(folder, artifacts, **task.manifest_fields(suite, ref))
    return Outcome(label, name, folder, shown)


def outcome_line(outcome: Outcome) -> str:
    if outcome.folder is None:
        return f"{outcome.task} / {outcome.pipeline}: {outcome.note}"
    measures = "  ".join(f"{k}={v:.4f}" for k, v in outcome.measures.items())
    return f"{outcome.task} / {outcome.pipeline}: {measures} -> {outcome.folder}"
