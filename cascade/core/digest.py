"""Content hashes: what makes cached work safe to reuse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def content_key(parts: Any) -> str:
    """A stable hash of JSON-able parts (key order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_digest(frame: Any, columns: list[str]) -> str:
    """Hash of the given columns of a DataFrame, row order included."""
    digest = hashlib.sha256()
    for column in columns:
        if column in frame:
            digest.update(column.encode())
            digest.update("\x1f".join(frame[column].astype(str).tolist()).encode("utf-8"))
            digest.update(b"\x1e")
    return digest.hexdigest()[:24]
