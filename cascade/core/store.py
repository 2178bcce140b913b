"""Content-addressed artifacts: every index, model or cached run sits in a folder named by a hash of what made it.

A folder is complete once it holds `card.json`, written last inside a temp folder that is then renamed into
place, so a killed build leaves only a `.tmp-*` folder and the next run redoes the work.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from cascade.core.atomic import TMP_MARK, atomic_dir
from cascade.core.digest import content_key, file_digest  # noqa: F401  (re-exported for stages)
from cascade.core.errors import warn

CARD = "card.json"
T = TypeVar("T")
# What reading a damaged entry raises: a truncated or missing file (OSError, EOFError), a file that no longer
# parses (ValueError: pyarrow's ArrowInvalid, json's JSONDecodeError, UnicodeDecodeError).
DAMAGED = (OSError, EOFError, ValueError)


class ArtifactStore:
    """Folders under `root/<kind>/<key>`; `get_or_build` builds a missing one exactly once, atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / CARD).is_file()

    def card(self, kind: str, key: str) -> dict:
        return json.loads((self.path(kind, key) / CARD).read_text())

    @contextlib.contextmanager
    def _lock(self, kind: str, key: str) -> Iterator[None]:
        lock_dir = self.root / kind
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f".{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get_or_build(self, kind: str, key: str, build: Callable[[Path], dict], made_from: dict) -> tuple[Path, bool]:
        """Return (folder, built_now). `build(tmp)` fills `tmp` and returns facts for the card."""
        final = self.path(kind, key)
        if (final / CARD).is_file():
            return final, False
        with self._lock(kind, key):
            if (final / CARD).is_file():  # another process built it while we waited
                return final, False
            self._sweep(kind, key)
            started = time.perf_counter()
            with atomic_dir(final) as tmp:
                facts = build(tmp)
                card = {
                    "kind": kind,
                    "key": key,
                    "made_from": made_from,
                    **(facts or {}),
                    "build_seconds": round(time.perf_counter() - started, 3),
                }
                (tmp / CARD).write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
        return final, True

    def get_or_load(
        self, kind: str, key: str, build: Callable[[Path], dict], made_from: dict, load: Callable[[Path], T]
    ) -> tuple[T, Path, bool]:
        """(load(folder), folder, built_now): `get_or_build`, then read the entry. An entry that exists but cannot
        be read (a truncated file, a damaged card) is said on one warning line, removed and built again; a fresh
        build that cannot be read is an error, not a loop."""
        folder, built = self.get_or_build(kind, key, build, made_from)
        try:
            return load(folder), folder, built
        except DAMAGED as exc:
            if built:
                raise
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            warn(f"damaged cache entry ({type(exc).__name__}: {reason}); removed, building it again", where=str(folder))
        self.discard(kind, key)
        folder, built = self.get_or_build(kind, key, build, made_from)
        return load(folder), folder, built

    def discard(self, kind: str, key: str) -> None:
        """Remove an entry (under its lock): renamed aside first, so no reader sees half a folder."""
        final = self.path(kind, key)
        with self._lock(kind, key):
            if final.exists():
                aside = final.parent / f".{key}{TMP_MARK}discarded-{os.getpid()}"
                os.replace(final, aside)
                shutil.rmtree(aside, ignore_errors=True)

    def _sweep(self, kind: str, key: str) -> None:
        """Remove leftovers of killed builds of this key (its `.tmp-*` folders); we hold its lock."""
        for leftover in (self.root / kind).glob(f".{key}*{TMP_MARK}*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
