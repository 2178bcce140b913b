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
from cascade.eval.measures import DEFAULT_MEASURES, parse_measures
from cascade.rankers.base import STAGES, Pipeline, build_pipeline


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    path: str | None = None
    qrels: str = "default"

    @model_validator(mode="after")
    def _one_source(self) -> DatasetRef:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of 'name' (a registered dataset) or 'path' (a BEIR folder)")
        return self


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    description: str = ""
    dataset: DatasetRef
    seed: int = 42
    measures: list[str] = Field(default_factory=lambda: list(DEFAULT_MEASURES), min_length=1)
    pipeline: list[dict[str, Any]] = Field(..., min_length=1)
    kind: Literal["pipeline"] = "pipeline"

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
        try:
            checked = cls.Params(**(params or {}))
        except ValidationError as exc:
            raise validation_error(path, root, exc, loc) from None
        gets_run = index > 0 or not first
        if cls.reranks and not gets_run:
            raise error_at(path, root, loc, "reranks an upstream run: put a first stage (e.g. bm25) before it")
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
    return config
