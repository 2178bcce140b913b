"""Where a config's paths point: the data dir and the `data:` / `train:` prefixes, resolved in one place."""

from __future__ import annotations

import os
from pathlib import Path

from cascade.core.errors import CascadeError

DATA_PREFIX = "data:"  # a path under the data dir (--data-dir or $CASCADE_DATA)
TRAIN_PREFIX = "train:"  # the model a training config produces (resolved by cascade.pipelines.train)


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The data dir from the option, else CASCADE_DATA; a named one that does not exist is an error."""
    source = "--data-dir" if data_dir else "CASCADE_DATA"
    value = data_dir or os.environ.get("CASCADE_DATA") or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise CascadeError(f"data dir '{path}' does not exist (from {source})")
    return path.resolve()


def resolve_path(value: str, data_dir: Path | None, key: str, *, kind: str = "file") -> Path:
    """`data:<path under the data dir>` or a plain path; it must exist as `kind` ('file' or 'folder')."""
    if value.startswith(DATA_PREFIX):
        if data_dir is None:
            raise CascadeError(f"{key}: {value!r} is under the data dir: pass --data-dir or set CASCADE_DATA")
        path = confined(data_dir, value.removeprefix(DATA_PREFIX), key, value)
    else:
        path = Path(value).expanduser()
    exists = path.is_dir() if kind == "folder" else path.is_file()
    if not exists:
        raise CascadeError(f"{key}: {kind} '{path}' does not exist")
    return path


def confined(data_dir: Path, relative: str, key: str, value: str, what: str = "the data dir") -> Path:
    """`data_dir / relative`, refused when its real path (`..` and symlinks resolved) leaves the real data dir."""
    root = Path(data_dir).resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise CascadeError(f"{key}: {value!r} leaves {what} '{root}' (resolves to '{path}'); refused")
    return Path(data_dir) / relative
