"""The trainers' registry and what every trainer uses to read its config (`cascade.pipelines.train`).

Each trainer module registers itself in `TRAINERS` under the `kind` its YAML declares when it is imported;
`cascade.pipelines.train` imports them all. Trainers import torch and LightGBM inside their functions, so
registering one loads neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel

from cascade.core.configfile import line_of, read_yaml, validate
from cascade.core.env import Context
from cascade.core.errors import CascadeError

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
