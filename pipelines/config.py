"""YAML pipeline configs, validated with pydantic; every error names the file, the line and the key.

    name: dl19-bm25
    dataset: msmarco-passage/dl19        # or {name: ..., qrels: official} or {path: FOLDER}
    seed: 42
    measures: [nDCG@10, RR(rel=2)@10]
    pipeline:
      - bm25: {k1: 0.9, b: 0.4, k: 1000}

Each pipeline item maps one stage name to its parameters; the items compose with `>>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cascade.core.configfile import error_at, line_of, read_yaml, validate, validation_error
from cascade.core.digest import content_key
from cascade.core.errors import CascadeError
from cascade.core.paths import DATA_PREFIX, TRAIN_PREFIX, confined
from cascade.eval.datasets import load_dataset, load_folder
from cascade.eval.measures import DEFAULT_MEASURES, parse_measures
from cascade.pipelines.train import read_training_config
from cascade.rankers.base import STAGES, Pipeline, build_pipeline
from cascade.rankers.fusion import Fusion, refuse_evaluated


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str | None = None
    path: str | None = None
    qrels: str = "default"

    @model_validator(mode="after")
    def _one_source(self) -> DatasetRef:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a registered dataset) or 'path' (a BEIR folder)")
        return self


def _number(value: Any) -> Any:
    """YAML reads `1e-4` (no dot) as text: say how to write it rather than that it is not a number."""
    if isinstance(value, str):
        raise ValueError(f"must be a number, not the text {value!r} (YAML reads 1e-4 as text: write 1.0e-4)")
    return value


class ExpectedValue(BaseModel):
    """One expected figure with its own tolerance (instead of the block's)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    value: float
    tolerance: float | None = Field(None, ge=0)  # None: the block's
    why: str = ""

    _numbers = field_validator("value", "tolerance", mode="before")(_number)


class IndexFacts(BaseModel):
    """Facts of the Lucene index the pipeline's bm25/rm3 stages search (as Anserini's `index_stats`); exact."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    documents: int | None = Field(None, ge=0)
    non_empty_documents: int | None = Field(None, ge=0)
    unique_terms: int | None = Field(None, ge=0)
    total_terms: int | None = Field(None, ge=0)

    def given(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Expected(BaseModel):
    """What a config should score (`cascade verify`): never part of the config hash or any cache key.

    expected:
      tolerance: 1.0e-4                  # |actual - expected| <= tolerance: OK; <= 1.5x: OKISH; else FAIL
      why: "BM25 on Lucene is exact arithmetic"
      measures: {nDCG@10: 0.4641, AP(rel=2): {value: 0.3426, tolerance: 1.0e-3, why: "..."}}
      index: {documents: 30000, total_terms: 1234567}
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    tolerance: float = Field(..., ge=0)
    why: str = Field(..., min_length=1)
    measures: dict[str, ExpectedValue] = Field(default_factory=dict)
    index: IndexFacts | None = None

    _numbers = field_validator("tolerance", mode="before")(_number)

    @field_validator("measures", mode="before")
    @classmethod
    def _plain_values(cls, value: Any) -> Any:
        """`nDCG@10: 0.5` is `nDCG@10: {value: 0.5}` (so an error names the measure, not a union member)."""
        if isinstance(value, dict):
            return {k: v if isinstance(v, dict | BaseModel) else {"value": v} for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _something(self) -> Expected:
        if not self.measures and (self.index is None or not self.index.given()):
            raise ValueError("give expected 'measures' or 'index' facts (or both)")
        return self

    def values(self) -> dict[str, ExpectedValue]:
        """Every expected measure with its tolerance (the block's unless it gives its own)."""
        return {
            name: v if v.tolerance is not None else v.model_copy(update={"tolerance": self.tolerance})
            for name, v in self.measures.items()
        }


# numpy's and torch's seeds are unsigned 32-bit: anything else fails deep inside a run
SEED_MAX = 2**32 - 1


class Config(BaseModel):
    # strict: `seed: "7"` or `seed: true` is an error, never coerced
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    description: str = ""
    dataset: DatasetRef
    seed: int = Field(42, ge=0, le=SEED_MAX)
    measures: list[str] = Field(default_factory=lambda: list(DEFAULT_MEASURES), min_length=1)
    pipeline: list[dict[str, Any]] = Field(..., min_length=1)
    kind: Literal["pipeline"] = "pipeline"
    expected: Expected | None = None  # for `cascade verify`; not in result_parts, so not in the config hash

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("pipeline")
    @classmethod
    def _one_stage_per_item(cls, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in items:
            if len(item) != 1:
                raise ValueError("each pipeline item maps one stage name to its parameters, e.g. '- bm25: {k: 100}'")
        return items

    def stage_specs(self) -> list[tuple[str, dict]]:
        return [(name, params or {}) for item in self.pipeline for name, params in item.items()]

    def build(self) -> Pipeline:
        """The pipeline as written (`train:` references unresolved: see `cascade.pipelines.runner.build_stages`)."""
        return build_pipeline(self.pipeline)

    def result_parts(self) -> dict:
        """What decides the results (name and description do not): its hash is the config hash."""

        return {
            "dataset": self.dataset.model_dump(),
            "seed": self.seed,
            "measures": self.measures,
            "pipeline": self.build().spec(),
        }

    @property
    def config_hash(self) -> str:
        return content_key(self.result_parts())


def _check_chain(path: Path, root: yaml.Node | None, items: list, prefix: tuple, first: bool = True) -> None:
    """Validate each stage's parameters with its own model, and child pipelines (fusion inputs) the same way, so
    a bad parameter anywhere is reported at its file:line. `first`: the chain's first stage gets no run."""
    for index, item in enumerate(items):
        if not isinstance(item, dict) or len(item) != 1:
            raise error_at(
                path, root, (*prefix, index), "each item maps one stage name to its parameters, e.g. '- bm25: {k: 100}'"
            )
        ((name, params),) = item.items()
        loc = (*prefix, index, name)
        if name not in STAGES:
            raise error_at(path, root, loc, f"unknown stage; known stages: {', '.join(sorted(STAGES))}")
        if params is not None and not isinstance(params, dict):
            raise error_at(path, root, loc, "parameters must be a mapping")
        cls = STAGES[name]
        gets_run = index > 0 or not first
        if cls.reranks and not gets_run:  # the chain's shape first, then the stage's parameters
            raise error_at(path, root, loc, "reranks an upstream run: put a first stage (e.g. bm25) before it")
        try:
            checked = cls.Params(**(params or {}))
        except ValidationError as exc:
            raise validation_error(path, root, exc, loc) from None
        if cls.children_param is not None:
            for number, chain in enumerate(getattr(checked, cls.children_param)):
                _check_chain(path, root, chain, (*loc, cls.children_param, number), first=not gets_run)


def load_config(path: str | Path) -> Config:
    """Read and validate a pipeline config; raises CascadeError naming file:line and key."""

    path = Path(path)
    data, root = read_yaml(path, "config file")
    if not isinstance(data, dict):
        raise CascadeError("a config is a YAML mapping with keys name, dataset, pipeline, ...", where=str(path))
    data.setdefault("name", path.stem)
    config = validate(Config, data, path, root)
    _check_chain(path, root, config.pipeline, ("pipeline",))
    parse_measures(config.measures, where=f"{path}:{line_of(root, ('measures',))}")
    if config.dataset.qrels not in ("default", "official"):
        raise error_at(path, root, ("dataset", "qrels"), "must be 'default' or 'official'")
    if config.expected is not None:
        _check_expected(path, root, config)
    return config


# the stages that search the Lucene index of the dataset's corpus (what `expected.index` describes)
LUCENE_STAGES = ("bm25", "rm3")


def _check_expected(path: Path, root: yaml.Node | None, config: Config) -> None:
    """Expected measures are measures the config computes; index facts need a stage that searches Lucene."""
    scored = {str(m) for m in parse_measures(config.measures)}
    for name in config.expected.measures:
        loc = ("expected", "measures", name)
        (measure,) = parse_measures([name], where=f"{path}:{line_of(root, loc)}")
        if str(measure) not in scored:
            raise error_at(path, root, loc, f"not one of the config's measures ({', '.join(config.measures)})")
    if config.expected.index is not None:
        names = {stage.name for top in config.build().stages for stage in top.walk()}
        if not names & set(LUCENE_STAGES):
            raise error_at(
                path,
                root,
                ("expected", "index"),
                "index facts are of the Lucene index a bm25 or rm3 stage searches; this pipeline has none",
            )


def preflight(config: Config, path: str | Path, data_dir: Path | None, *, dataset: bool = True) -> None:
    """Everything about a loaded config that can be checked before any work, so that of several configs on one
    command line none starts when one would fail: its dataset resolves (by name, or its folder exists), every
    `data:` path in its stages exists inside the data dir, every `train:` training config exists and names a
    known trainer, and every stage finds the upstream scores it needs. Errors name `file:line: key`.

    `data_dir` is the resolved data dir (`cascade.core.paths.resolve_data_dir`); `dataset=False` skips the
    dataset (a suite task that runs the pipeline on another one)."""
    path = Path(path)
    root = read_yaml(path, "config file")[1] if path.is_file() else None
    stages = config.build().stages
    if dataset:
        ref = config.dataset
        try:
            evaluated = load_folder(ref.path) if ref.path is not None else load_dataset(ref.name, data_dir, ref.qrels)
        except CascadeError as exc:
            raise error_at(path, root, ("dataset",), str(exc)) from None
        _check_tuning(stages, evaluated.queries, data_dir, path, root)
    check_refs(config.pipeline, ("pipeline",), path, root, data_dir)
    _check_scores(stages, [], ("pipeline",), path, root)


def _check_tuning(stages: list, queries: Any, data_dir: Path | None, path: Path, root: yaml.Node | None) -> None:
    """A fusion stage's `weights: tune` dev set resolves and shares no query with the ones the config ranks."""
    for index, stage in enumerate(stages):
        if not isinstance(stage, Fusion) or stage.params.tune is None:
            continue
        loc = ("pipeline", index, stage.name, "tune")
        try:
            dev = stage.dev_set(data_dir)
            refuse_evaluated(dev.queries, queries, "")
        except CascadeError as exc:
            message = str(exc).removeprefix(f"{exc.where}: ") if exc.where else str(exc)
            key = (exc.where or "").removeprefix(f"{stage.name}.tune").lstrip(".")
            raise error_at(path, root, (*loc, key) if key else loc, message) from None


def check_refs(value: Any, loc: tuple, path: Path, root: yaml.Node | None, data_dir: Path | None) -> None:
    """`data:` and `train:` strings anywhere in stage parameters (fusion inputs too) point at what exists."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_refs(item, (*loc, key), path, root, data_dir)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_refs(item, (*loc, index), path, root, data_dir)
    elif isinstance(value, str) and value.startswith(DATA_PREFIX):
        if data_dir is None:
            raise error_at(path, root, loc, f"{value!r} is under the data dir: pass --data-dir or set CASCADE_DATA")
        try:
            target = confined(data_dir, value.removeprefix(DATA_PREFIX), "", value)
        except CascadeError as exc:
            raise error_at(path, root, loc, str(exc).removeprefix(": ")) from None
        if not target.exists():
            raise error_at(path, root, loc, f"'{target}' does not exist")
    elif isinstance(value, str) and value.startswith(TRAIN_PREFIX):
        target = Path(value.removeprefix(TRAIN_PREFIX))
        if not target.is_file():
            raise error_at(path, root, loc, f"training config '{target}' not found")
        read_training_config(target)


def _check_scores(stages: list, upstream: list[str], loc: tuple, path: Path, root: yaml.Node | None) -> None:
    """Each stage that reads upstream stages' scores (ltr's features) finds them: the scores a chain carries are
    those of the stages before it, named as the engine names them (`bm25`, `bm25#2`, ...)."""
    carried = list(upstream)
    for index, stage in enumerate(stages):
        missing = [name for name in stage.upstream_scores() if name not in carried]
        if missing:
            available = ", ".join(carried) or "none"
            raise error_at(
                path,
                root,
                (*loc, index, stage.name),
                f"needs the scores of {', '.join(repr(m) for m in missing)}, which no upstream stage provides "
                f"(upstream: {available})",
            )
        if stage.children_param is not None:
            for number, child in enumerate(stage.children()):
                where = (*loc, index, stage.name, stage.children_param, number)
                _check_scores(child.stages, carried, where, path, root)
        column = stage.name
        while column in carried:  # as engine.carry_scores names a stage that comes twice
            base, _, count = column.partition("#")
            column = f"{base}#{int(count) + 1 if count else 2}"
        carried.append(column)
