"""GPU check, one command: the same cascade code on CUDA gives the CPU's numbers within bf16 tolerance, and how fast.

    .venv/bin/python bench/gpu_check.py [--data-dir ../shared/data] [--out bench/RESULTS.md] [--only cross-encoder]

Each part is a function registered with `@section(name)`: it gets the parsed arguments and returns a list of
Markdown lines (figures and PASS/FAIL checks); a failed check makes the exit code 1. Another part (dense encoding)
adds itself the same way. Without CUDA every part is skipped: one line, exit code 0, RESULTS.md untouched.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## GPU check (issue 3)"
sys.path.insert(0, str(ROOT))

SECTIONS: dict[str, Callable[[argparse.Namespace], list[str]]] = {}
FAILED: list[str] = []


def section(name: str) -> Callable:
    def register(fn: Callable[[argparse.Namespace], list[str]]) -> Callable:
        SECTIONS[name] = fn
        return fn

    return register


def check(name: str, ok: bool, detail: str) -> str:
    if not ok:
        FAILED.append(name)
    return f"| {name} | {detail} | {'PASS' if ok else 'FAIL'} |"


def timed(fn: Callable, *args, **kwargs) -> tuple[object, float]:
    import torch

    torch.cuda.synchronize()
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    torch.cuda.synchronize()
    return out, time.perf_counter() - started


def trained_model(args: argparse.Namespace) -> str | None:
    """The folder `configs/train/cross-encoder.yaml` produced, if it is in the cache already (never trains here)."""
    from cascade.core.env import Context
    from cascade.core.errors import CascadeError
    from cascade.pipelines.train import MODELS, model_key, read_training_config

    config = ROOT / "configs" / "train" / "cross-encoder.yaml"
    try:
        env = Context.open(args.data_dir, args.cache, 1, progress=False)
        data, trainer = read_training_config(config)
        key = model_key(data, trainer, trainer.fingerprint(data, config, env) if trainer.fingerprint else None)
    except CascadeError:
        return None
    return str(env.store.path(MODELS, key)) if env.store.has(MODELS, key) else None


def ce_pairs(data_dir: str | None, n: int) -> list[list[str]]:
    from bench.cross_encoder_speed import bench_pairs

    return bench_pairs(data_dir, n)


@section("cross-encoder")
def cross_encoder(args: argparse.Namespace) -> list[str]:
    """`score_pairs` on CPU fp32 vs CUDA bf16/fp16 weights: logits within tolerance, same order; pairs/s."""
    import numpy as np
    from scipy.stats import spearmanr

    from bench.cross_encoder_speed import OUT, seeded_model
    from cascade.rankers.cross_encoder import load_scorer, score_pairs

    OUT.mkdir(parents=True, exist_ok=True)
    model = args.ce_model or trained_model(args) or str(seeded_model(OUT / "minilm-l6-ce"))
    pairs = ce_pairs(args.data_dir, args.pairs)
    first, second = [p[0] for p in pairs], [p[1] for p in pairs]
    reference = score_pairs(load_scorer(model, "cpu", "fp32"), first[: args.compare], second[: args.compare])
    spread = float(np.std(reference))
    lines = [
        f"cross-encoder: {model}, {len(pairs)} pairs for speed, "
        f"{len(reference)} compared with CPU fp32, batch {args.batch_size}, max length 256.",
        "",
        "| check | measured | result |",
        "|---|---|---|",
    ]
    # Tolerances are relative to the spread of the scores (a trained head's logits spread over several units;
    # bf16 has an 8-bit mantissa, fp16 a 10-bit one). Measured with bf16 autocast on CPU against fp32 on the
    # trained model: max |diff| 0.15 for a score std of 3.2 (0.05 std), Spearman 0.9985.
    for precision, rel, min_rho in (("bf16", 0.15, 0.99), ("fp16", 0.03, 0.999)):
        scorer = load_scorer(model, "cuda", precision)
        run = score_pairs  # same function the stage uses
        run(scorer, first[: args.batch_size], second[: args.batch_size], batch_size=args.batch_size)  # warm-up
        gpu = run(scorer, first[: args.compare], second[: args.compare], batch_size=args.batch_size)
        _, seconds = timed(run, scorer, first, second, batch_size=args.batch_size)
        diff = np.abs(gpu - reference)
        tolerance = rel * max(spread, 0.1)
        rho = float(spearmanr(gpu, reference).statistic)
        # An untrained head scores everything alike (std ~0.01): its order is noise, so only a trained one's counts.
        ordered = rho >= min_rho if spread >= 0.5 else True
        lines.append(
            check(
                f"cross-encoder CUDA {precision} = CPU fp32",
                bool(diff.max() <= tolerance) and ordered,
                f"max abs diff {diff.max():.4f} (tolerance {tolerance:.4f} = {rel} x score std {spread:.3f}), "
                f"Spearman {rho:.5f}{f' (>= {min_rho})' if spread >= 0.5 else ' (untrained head: order not checked)'}",
            )
        )
        lines.append(f"| cross-encoder CUDA {precision} speed | {len(pairs) / seconds:,.0f} pairs/s | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CASCADE_DATA"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    parser.add_argument("--only", action="append", help="run only these parts (repeatable)")
    parser.add_argument("--pairs", type=int, default=4300, help="cross-encoder pairs timed on the GPU")
    parser.add_argument("--compare", type=int, default=500, help="cross-encoder pairs also scored on CPU")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--ce-model", default=None, help="cross-encoder folder (default: the trained one if cached)")
    parser.add_argument("--cache", default=os.environ.get("CASCADE_CACHE", str(ROOT / ".cascade")))
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; all GPU checks skipped (nothing written)")
        return
    names = args.only or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise SystemExit(f"gpu_check: unknown part(s) {unknown}; known: {sorted(SECTIONS)}")
    lines = [
        HEADING,
        "",
        f"`.venv/bin/python bench/gpu_check.py` on {time.strftime('%Y-%m-%d')}, {torch.cuda.get_device_name(0)}, "
        f"torch {torch.__version__}, {platform.platform()}.",
        "",
    ]
    for name in names:
        lines += [f"### {name}", "", *SECTIONS[name](args), ""]
    text = "\n".join(lines).rstrip("\n") + "\n"
    print(text)
    from bench.results import replace_section

    replace_section(Path(args.out), "gpu-check", text)
    if FAILED:
        raise SystemExit(f"gpu_check: FAILED {FAILED}")


if __name__ == "__main__":
    main()
