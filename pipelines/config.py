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

from cascade.core.digest import content_key
from cascade.core.errors import CascadeError
from cascade.eval.measures import DEFAULT_MEASURES


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

    def result_parts(self) -> dict:
        """What decides the results (name and description do not): its hash is the config hash."""

        return {
            "dataset": self.dataset.model_dump(),
            "seed": self.seed,
            "measures": self.measures,
            "pipeline": normalised_chain(self.pipeline),
        }

    @property
    def config_hash(self) -> str:
        return content_key(self.result_parts())


def normalised_chain(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stage specs with every default filled in (also inside fusion inputs), so spelling one out changes no hash."""
    from cascade.rankers import STAGES

    out = []
    for item in items:
        for name, params in item.items():
            dumped = STAGES[name].Params(**(params or {})).model_dump(mode="json")
            if "inputs" in dumped:
                dumped["inputs"] = [normalised_chain(chain) for chain in dumped["inputs"]]
            out.append({name: dumped})
    return out


def _line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """The YAML line of the node at a pydantic error location (or of its deepest existing parent)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _first_error(path: Path, root: yaml.Node | None, error: ValidationError, prefix: tuple = ()) -> CascadeError:
    detail = error.errors()[0]
    loc = prefix + tuple(p for p in detail["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = "unknown key" if detail["type"] == "extra_forbidden" else detail["msg"]
    if detail["type"] == "missing":
        message = "required key is missing"
    line = _line_of(root, loc)
    where = f"{path}:{line}" if line else str(path)
    return CascadeError(f"{_key_path(loc)}: {message}", where=where)


def _check_chain(path: Path, root: yaml.Node | None, items: list, prefix: tuple) -> None:
    """Validate each stage's parameters with its own model; fusion inputs are checked the same way, recursively."""
    from cascade.rankers import STAGES

    def fail(loc: tuple, message: str) -> CascadeError:
        line = _line_of(root, loc)
        return CascadeError(f"{_key_path(loc)}: {message}", where=f"{path}:{line}" if line else str(path))

    for index, item in enumerate(items):
        if not isinstance(item, dict) or len(item) != 1:
            raise fail((*prefix, index), "each item maps one stage name to its parameters, e.g. '- bm25: {k: 100}'")
        ((name, params),) = item.items()
        loc = (*prefix, index, name)
        if name not in STAGES:
            raise fail(loc, f"unknown stage; known stages: {', '.join(sorted(STAGES))}")
        if params is not None and not isinstance(params, dict):
            raise fail(loc, "parameters must be a mapping")
        try:
            checked = STAGES[name].Params(**(params or {}))
        except ValidationError as exc:
            raise _first_error(path, root, exc, loc) from None
        for number, chain in enumerate(getattr(checked, "inputs", None) or []):
            _check_chain(path, root, chain, (*loc, "inputs", number))


def load_config(path: str | Path) -> Config:
    """Read and validate a pipeline config; raises CascadeError naming file:line and key."""

    path = Path(path)
    if not path.is_file():
        raise CascadeError("config file not found", where=str(path))
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise CascadeError(f"not valid YAML ({getattr(exc, 'problem', exc)})", where=where) from None
    if not isinstance(data, dict):
        raise CascadeError("a config is a YAML mapping with keys name, dataset, pipeline, ...", where=str(path))
    data.setdefault("name", path.stem)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise _first_error(path, root, exc) from None
    _check_chain(path, root, config.pipeline, ("pipeline",))
    from cascade.eval.measures import parse_measures

    parse_measures(config.measures, where=f"{path}:{_line_of(root, ('measures',))}")
    if config.dataset.qrels not in ("default", "official"):
        raise CascadeError(
            "dataset.qrels: must be 'default' or 'official'", where=f"{path}:{_line_of(root, ('dataset', 'qrels'))}"
        )
    return config
