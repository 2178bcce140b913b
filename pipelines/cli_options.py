"""Options the commands share: each checked before any work, so a bad value is one line (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cascade.core.errors import CascadeError

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder of local datasets (default: $CASCADE_DATA).", show_default=False),
]


def _threads(value: int | None) -> int | None:
    """--threads is a count of threads: 0 or a negative number is an error, not 'all cores'."""
    if value is not None and value < 1:
        raise CascadeError(f"--threads: must be at least 1, not {value}")
    return value


def _folder(path: Path, option: str) -> Path:
    """An output or cache folder, checked before any work: absent or a folder, and writable where it will be made
    (its nearest existing ancestor), so a file, a read-only disk or a folder we may not write is one line."""
    probe = Path(os.path.abspath(path))
    if probe.exists() and not probe.is_dir():
        raise CascadeError(f"{option}: '{path}' is a file, not a folder")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise CascadeError(f"{option}: '{probe}' is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CascadeError(f"{option}: cannot write into '{probe}' (read-only or permission denied)")
    return path


def _out_folder(path: Path) -> Path:
    return _folder(path, "--out")


def _cache_folder(path: Path) -> Path:
    return _folder(path, "--cache")


Cache = Annotated[
    Path, typer.Option(help="Cache of indexes and stage outputs.", envvar="CASCADE_CACHE", callback=_cache_folder)
]
Threads = Annotated[int | None, typer.Option(help="Threads for search (default: all cores).", callback=_threads)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

# Where batch work runs (`cascade.core.executor`): never part of a cache key, so the results are the same.
ExecutorKind = Annotated[
    str, typer.Option("--executor", help="Where corpus encoding and rerank scoring run: local or ray.")
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address", help="A running Ray cluster (host:port or auto); without it, --executor ray starts one."
    ),
]
Workers = Annotated[int | None, typer.Option("--workers", help="Ray workers (default: as the cluster allows).")]
CpusPerWorker = Annotated[float, typer.Option("--cpus-per-worker", help="CPUs each Ray worker holds.")]
GpusPerWorker = Annotated[float, typer.Option("--gpus-per-worker", help="GPUs each Ray worker holds.")]
ExecutorBatch = Annotated[
    int, typer.Option("--executor-batch-size", help="Texts or pairs per remote call of rerank work.")
]
RayTimeout = Annotated[float, typer.Option("--ray-timeout", help="Seconds to wait for the Ray head to answer.")]


def executor_settings(
    kind: str, address: str | None, workers: int | None, cpus: float, gpus: float, batch: int, timeout: float
):
    """The executor options, checked (one line on a bad value) before any work."""
    from cascade.core.executor import ExecutorSettings

    return ExecutorSettings(kind, address, workers, cpus, gpus, batch, timeout)  # type: ignore[arg-type]
