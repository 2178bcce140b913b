"""Training commands and the `train:` references that let a pipeline config name the model a training config makes.

A stage parameter `model: "train:configs/train/ltr.yaml"` is replaced, before the stage is built, by the folder of
the model that training config produces. That folder is content-addressed (a hash of the training config's
content and its trainer's version), so `cascade run` trains a missing model once and reuses it after; a changed
training config gives a new folder, never a stale model.

Each trainer registers itself in `TRAINERS` under the `kind` its YAML declares; it gets the parsed YAML, the file
path and the `Context`, fills a temp folder, and returns facts for the artifact's card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from cascade.core.configfile import error_at, line_of, read_yaml, validate
from cascade.core.digest import content_key
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.core.paths import TRAIN_PREFIX

MODELS = "models"
WHAT = "training config"
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Trainer:
    kind: str
    version: int
    train: Callable[[dict, Path, Context, Path], dict]  # (yaml data, config path, env, out folder) -> card facts
    # Optional: the content of what the config reads (base model, data files), so changed data is a new model.
    fingerprint: Callable[[dict, Path, Context], dict] | None = None
    # Optional: validate the parsed YAML (raising `file:line: key: message`), run whenever a config is read, so a
    # bad value is refused before any work rather than inside the build.
    check: Callable[[dict, Path], object] | None = None


TRAINERS: dict[str, Trainer] = {}


def register(trainer: Trainer) -> Trainer:
    TRAINERS[trainer.kind] = trainer
    return trainer


def _load_trainers() -> None:
    """Trainers import torch/LightGBM lazily; importing their modules only registers them."""
    import importlib

    for module in ("cascade.pipelines.train.ltr", "cascade.pipelines.train.cross_encoder"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def read_training_config(path: str | Path) -> tuple[dict, Trainer]:
    """(the parsed YAML, its trainer); errors are `file:line: key: message` (cascade.core.configfile)."""
    path = Path(path)
    data, root = read_yaml(path, WHAT)
    if not isinstance(data, dict):
        raise CascadeError("a training config is a YAML mapping with a 'kind' key", where=str(path))
    _load_trainers()
    known = ", ".join(sorted(TRAINERS))
    if "kind" not in data:
        raise error_at(path, root, ("kind",), f"required key is missing: the trainer, one of {known}")
    trainer = TRAINERS.get(data["kind"]) if isinstance(data["kind"], str) else None
    if trainer is None:
        raise error_at(path, root, ("kind",), f"unknown trainer {data['kind']!r}; known: {known}")
    if trainer.check is not None:
        trainer.check(data, path)
    return data, trainer


def config_tree(path: Path) -> yaml.Node | None:
    """The YAML node tree of a training config (for line numbers); None when it cannot be read again."""
    try:
        return read_yaml(path, WHAT)[1]
    except CascadeError:
        return None


def parse_config(model: type[M], data: dict, path: Path) -> M:
    """A trainer's pydantic model of `data` (read from `path`); errors are `file:line: key: message`."""
    return validate(model, data, path, config_tree(path))


def key_locator(path: Path) -> Callable[[str], str]:
    """`where` for an error at a dotted config key: `file:line` of that key, else the file."""
    root = config_tree(path)

    def where(key: str) -> str:
        line = line_of(root, tuple(key.split("."))) if root is not None else None
        return f"{path}:{line}" if line else str(path)

    return where


def model_key(data: dict, trainer: Trainer, inputs: dict | None = None) -> str:
    parts = {"kind": trainer.kind, "version": trainer.version, "config": data}
    return content_key({**parts, "inputs": inputs} if inputs is not None else parts)


def ensure_trained(path: str | Path, env: Context) -> Path:
    """The model folder a training config produces; trains it first when it is missing."""
    data, trainer = read_training_config(path)
    inputs = trainer.fingerprint(data, Path(path), env) if trainer.fingerprint else None
    key = model_key(data, trainer, inputs)

    def build(tmp: Path) -> dict:
        return trainer.train(data, Path(path), env, tmp)

    made_from = {"kind": trainer.kind, "config": data, "file": str(path), "inputs": inputs}
    folder, _ = env.store.get_or_build(MODELS, key, build, made_from)
    return folder


def resolve_train_refs(value: Any, env: Context) -> Any:
    """Replace every `train:PATH` string inside stage parameters (nested too) by the trained model's folder."""
    if isinstance(value, str) and value.startswith(TRAIN_PREFIX):
        return str(ensure_trained(value.removeprefix(TRAIN_PREFIX), env))
    if isinstance(value, dict):
        return {k: resolve_train_refs(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_train_refs(v, env) for v in value]
    return value
