"""What every suite protocol is: a kind, a spec, a label, and `run(pipeline, session) -> Artifacts`.

A protocol class registers itself in `PROTOCOLS` under its `kind` when it is defined (as ir_measures' measures
do), so a new protocol is one new class in one module: no dispatcher to extend. The suite loop
(`cascade.pipelines.suites`) reads a suite config into protocol objects, runs each on each pipeline and writes
every run folder through `runner.write_run_folder`; a protocol only computes what goes into its folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from cascade.core.digest import content_key
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.pipelines.config import Config, load_config
from cascade.pipelines.runner import Artifacts


class Strict(BaseModel):
    """Base of the protocols' specs: unknown keys are errors, and a spec is a value (it goes into config hashes).
    Values are never coerced (`k: "5"`, `k: 5.0` and `k: true` are errors) and floats are finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


@dataclass(frozen=True)
class PipelineRef:
    label: str  # the pipeline's name without its dataset prefix: `dl19-bm25` -> `bm25`
    path: Path
    config: Config


PROTOCOLS: dict[str, type[Protocol]] = {}


class TaskError(CascadeError):
    """Bad task input a protocol finds in `check`: the suite loop says it at the key's file and line."""

    def __init__(self, key: tuple, message: str) -> None:
        self.key, self.detail = key, message
        super().__init__(f"{'.'.join(map(str, key))}: {message}")


class Protocol:
    """One suite protocol with its spec (one task of a suite config)."""

    kind: ClassVar[str]  # the task's key in a suite config
    Spec: ClassVar[type[BaseModel]]
    own_dataset: ClassVar[bool] = False  # each pipeline on its own config's dataset (every config runs)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            PROTOCOLS[cls.kind] = cls

    def __init__(self, spec: BaseModel) -> None:
        self.spec = spec

    @property
    def key(self) -> dict:
        """The task as the suite config gives it (with defaults filled in): part of each run's config hash."""
        return {self.kind: self.spec.model_dump(mode="json")}

    def label(self, ref: PipelineRef) -> str:
        """The task's name for a pipeline: the leaderboard's dataset section and the run folder's parent."""
        return self.kind

    def pipeline_name(self, ref: PipelineRef) -> str:
        """Protocols on the pipeline's own dataset keep its full name (`dl19-bm25` and `dl20-bm25` both run)."""
        return ref.config.name if self.own_dataset else ref.label

    def check(self, refs: list[PipelineRef], session: Context) -> None:
        """Before any work, with every pipeline the task will run: raise TaskError for bad input that only the
        pipelines or datasets reveal (the suite loop names the task key's line)."""

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        """The pipeline under this protocol; raises NotApplicable (with the reason) for a pipeline it cannot run."""
        raise NotImplementedError

    def outcome(self, ref: PipelineRef, artifacts: Artifacts) -> tuple[str, dict[str, float]]:
        """(label, figures to show) of a finished run."""
        return self.label(ref), artifacts.metrics["measures"]

    def folder(self, ref: PipelineRef, label: str) -> Path:
        """The run folder under the suite's folder: `<label>/<pipeline>`, the label made safe for a path."""
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in label.replace("/", "__"))
        return Path(name) / self.pipeline_name(ref)

    def manifest_fields(self, suite: str, ref: PipelineRef) -> dict:
        """Manifest fields of a suite run; its config hash covers the task too, so the same pipeline's runs in two
        tasks are never grouped as copies of one run."""
        return {
            "suite": suite,
            "task": self.key,
            "pipeline_config_hash": ref.config.config_hash,
            "config_hash": content_key({"suite": suite, "task": self.key, "config": ref.config.config_hash}),
        }


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
