"""Shared fixtures: the real libraries on the built-in sample, and the shared data dir when it is there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


# A child process that runs the CLI with one kind of artifact build made to wait: it writes `marker` inside the
# build (its temp folder exists) and then sleeps until it is signalled. Tests interrupt it there, never racing
# a build that might finish first.
PAUSED_CLI = """
import signal, sys, time
from pathlib import Path
# Ctrl-C as in a terminal: a shell's background job (e.g. `make test &`) starts with SIGINT ignored, and Python then
# installs no KeyboardInterrupt handler; the tests that send SIGINT act as the user's terminal would.
signal.signal(signal.SIGINT, signal.default_int_handler)
kind, marker = sys.argv[1], Path(sys.argv[2])
del sys.argv[1:3]
from cascade.core.store import ArtifactStore
original = ArtifactStore.get_or_build
def paused(self, k, key, build, made_from):
    def waiting(tmp):
        if k == kind:
            marker.write_text(str(tmp))
            while True:
                time.sleep(1)
        return build(tmp)
    return original(self, k, key, waiting, made_from)
ArtifactStore.get_or_build = paused
from cascade.pipelines.cli import main
sys.argv[0] = "cascade"
main()
"""


def paused_cascade(kind: str, marker: Path, *args: str, **popen) -> subprocess.Popen:
    """`cascade ARGS` whose first build of `kind` waits at `marker` (see PAUSED_CLI)."""
    command = [sys.executable, "-c", PAUSED_CLI, kind, str(marker), *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, **popen)


def wait_for(marker: Path, proc: subprocess.Popen, limit: float = 300.0) -> None:
    """Until the paused build has started (the process is then blocked there, so nothing races)."""
    waited = 0.0
    while not marker.exists():
        assert proc.poll() is None, "the process ended before reaching the paused build"
        assert waited < limit, "the paused build was never reached"
        time.sleep(0.05)
        waited += 0.05


@pytest.fixture(scope="session")
def random_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM with a seeded, untrained one-output head: a real cross-encoder whose order differs from BM25's."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from cascade.indexes.models import resolve_model

    folder = tmp_path_factory.mktemp("random-head")
    torch.manual_seed(7)
    base = resolve_model("minilm-l6")
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder
