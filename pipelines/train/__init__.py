"""Training commands and the `train:` references that let a pipeline config name the model a training config makes.

A stage parameter `model: "train:configs/train/ltr.yaml"` is replaced, before the stage is built, by the folder of
the model that training config produces. That folder is content-addressed (a hash of the training config's
content and its trainer's version), so `cascade run` trains a missing model once and reuses it after; a changed
training config gives a new folder, never a stale model.

Each trainer registers itself in `TRAINERS` (`registry`) under the `kind` its YAML declares; it gets the parsed
YAML, the file path and the `Context`, fills a temp folder, and returns facts for the artifact's card. This package
imports every trainer's module, which registers it; a trainer imports torch or LightGBM only inside its functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cascade.core.configfile import error_at, read_yaml
from cascade.core.digest import content_key
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.core.paths import TRAIN_PREFIX
from cascade.pipelines.train import cross_encoder, ltr  # noqa: F401  (importing a trainer's module registers it)
from cascade.pipelines.train.registry import (
    TRAINERS,
    WHAT,
    Trainer,
    config_tree,
    key_locator,
    parse_config,
    register,
)

__all__ = [
    "MODELS",
    "TRAINERS",
    "Trainer",
    "config_tree",
    "ensure_trained",
    "key_locator",
    "model_key",
    "parse_config",
    "read_training_config",
    "register",
    "resolve_train_refs",
]

MODELS = "models"


def read_training_config(path: str | Path) -> tuple[dict, Trainer]:
    """(the parsed YAML, its trainer); errors are `file:line: key: message` (cascade.core.configfile)."""
    path = Path(path)
    data, root = read_yaml(path, WHAT)
    if not isinstance(data, dict):
        raise CascadeError("a training config is a YAML mapping with a 'kind' key", where=str(path))
    known = ", ".join(sorted(TRAINERS))
    if "kind" not in data:
        raise error_at(path, root, ("kind",), f"required key is missing: the trainer, one of {known}")
    trainer = TRAINERS.get(data["kind"]) if isinstance(data["kind"], str) else None
    if trainer is None:
        raise error_at(path, root, ("kind",), f"unknown trainer {data['kind']!r}; known: {known}")
    if trainer.check is not None:
        trainer.check(data, path)
    return data, trainer


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
