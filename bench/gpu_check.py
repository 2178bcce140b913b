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


def ce_pairs(data_dir: str | None, n: int) -> list[list[str]]:
    from bench.cross_encoder_speed import bench_pairs

    return bench_pairs(data_dir, n)


@section("cross-encoder")
def cross_encoder(args: argparse.Namespace) -> list[str]:
    """`score_pairs` on CPU fp32 vs CUDA bf16/fp16 weights: logits within tolerance, same order; pairs/s."""
    import numpy as np
    from scipy.stats import spearmanr

    from bench.cross_encoder_speed import OUT, seeded_model
    from rankers.cross_encoder import load_scorer, score_pairs

    OUT.mkdir(parents=True, exist_ok=True)
    model = args.ce_model or str(seeded_model(OUT / "minilm-l6-ce"))
    pairs = ce_pairs(args.data_dir, args.pairs)
    first, second = [p[0] for p in pairs], [p[1] for p in pairs]
    reference = score_pairs(load_scorer(model, "cpu", "fp32"), first[: args.compare], second[: args.compare])
    spread = float(np.std(reference)) or 1.0
    lines = [
        f"cross-encoder: {'seeded MiniLM-L6 head' if not args.ce_model else model}, {len(pairs)} pairs for speed, "
        f"{len(reference)} compared with CPU fp32, batch {args.batch_size}, max length 256.",
        "",
        "| check | measured | result |",
        "|---|---|---|",
    ]
    for precision, atol, rtol in (("bf16", 0.05, 0.02), ("fp16", 0.02, 0.01)):
        scorer = load_scorer(model, "cuda", precision)
        run = score_pairs  # same function the stage uses
        run(scorer, first[: args.batch_size], second[: args.batch_size], batch_size=args.batch_size)  # warm-up
        gpu = run(scorer, first[: args.compare], second[: args.compare], batch_size=args.batch_size)
        _, seconds = timed(run, scorer, first, second, batch_size=args.batch_size)
        diff = np.abs(gpu - reference)
        within = bool(np.all(diff <= atol + rtol * np.abs(reference)))
        rho = float(spearmanr(gpu, reference).statistic)
        lines.append(
            check(
                f"cross-encoder CUDA {precision} = CPU fp32",
                within and rho >= 0.99,
                f"max abs diff {diff.max():.4f} (tolerance {atol} + {rtol}x|score|, score std {spread:.3f}), "
                f"Spearman {rho:.5f}",
            )
        )
        lines.append(f"| cross-encoder CUDA {precision} speed | {len(pairs) / seconds:,.0f} pairs/s | |")
    return lines


def replace_section(path: Path, heading: str, text: str) -> None:
    from bench.cross_encoder_speed import replace_section as swap

    swap(path, heading, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CASCADE_DATA"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    parser.add_argument("--only", action="append", help="run only these parts (repeatable)")
    parser.add_argument("--pairs", type=int, default=4300, help="cross-encoder pairs timed on the GPU")
    parser.add_argument("--compare", type=int, default=500, help="cross-encoder pairs also scored on CPU")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--ce-model", default=None, help="cross-encoder folder (default: seeded MiniLM-L6 head)")
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
    replace_section(Path(args.out), HEADING, text)
    if FAILED:
        raise SystemExit(f"gpu_check: FAILED {FAILED}")


if __name__ == "__main__":
    main()
