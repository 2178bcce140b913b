"""Shared fixtures: the real libraries on the built-in sample, and the shared data dir when it is there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASCADE = [sys.executable, "-m", "cascade.pipelines.cli"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def shared_data() -> Path | None:
    value = os.environ.get("CASCADE_DATA") or (ROOT.parent / "shared" / "data")
    path = Path(value)
    return path if (path / "msmarco-passage").is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data()
    if path is None:
        pytest.skip("the shared data dir (../shared/data or CASCADE_DATA) is not here")
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session, so each corpus is indexed once."""
    return tmp_path_factory.mktemp("cache")


def run_cascade(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a fresh process, real exit code, real stderr."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*CASCADE, *map(str, args)], cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def cascade():
    return run_cascade
