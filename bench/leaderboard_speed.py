"""Leaderboard speed: 50 runs x 7,000 queries, Markdown + HTML, significance tests included, in under 20 s.

Synthesises run folders as `cascade run` writes them (perquery.tsv with 4 measures, metrics.json, manifest.json
with per-stage timings, config.json, topdocs.jsonl with three ~300-character snippets per query; no run.trec,
which the report never reads), then times the command a user types, in a fresh process:

    cascade leaderboard RUNS --html SITE --baseline run-00

That is: read 50 folders, align 7,000 queries, 10,000 bootstrap resamples for 200 means and 196 differences,
10,000-permutation randomization tests and t-tests for 49 comparisons x 4 measures, Holm correction, the
Markdown, and the HTML page with its plot and drill-down (snippets read from the 50 topdocs files).

    .venv/bin/python bench/leaderboard_speed.py [--runs 50] [--queries 7000] [--repeat 3] [--out bench/RESULTS.md]

The result goes into its own section of `--out` (between markers), leaving the rest of that file as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import replace_section  # noqa: E402

MEASURES = ["nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000", "AP(rel=2)"]
WORDS = ["retrieval", "ranking", "passage", "query", "index", "lucene", "dense", "vector", "relevance"]


def synthesise(root: Path, runs: int, queries: int, seed: int = 0) -> None:
    """Run folders with realistic shapes: correlated per-query scores, some zeros, two stages with timings."""
    rng = np.random.default_rng(seed)
    qids = [str(100000 + i) for i in range(queries)]
    difficulty = rng.beta(2, 2, queries)  # shared by all runs, as real queries are hard or easy for everyone
    text = " ".join(rng.choice(WORDS, 60))
    for r in range(runs):
        name = f"run-{r:02d}"
        folder = root / name
        folder.mkdir(parents=True)
        skill = 0.02 * r
        rows = []
        for m, measure in enumerate(MEASURES):
            values = np.clip(difficulty + skill + rng.normal(0, 0.15, queries) - 0.05 * m, 0, 1)
            values[rng.random(queries) < 0.1] = 0.0
            rows.append((measure, values))
        with open(folder / "perquery.tsv", "w") as handle:
            handle.write("qid\tmeasure\tvalue\n")
            for measure, values in rows:
                handle.writelines(f"{q}\t{measure}\t{v:.6f}\n" for q, v in zip(qids, values, strict=True))
        ms = [float(rng.uniform(2, 20)), float(rng.uniform(0, 400)) if r % 3 else 0.0]
        stages = [{"stage": "bm25", "ms_per_query": ms[0]}] + (
            [{"stage": "rerank", "ms_per_query": ms[1]}] * bool(ms[1])
        )
        manifest = {
            "name": name,
            "config_hash": f"{r:024x}",
            "pipeline": "bm25(k=1000)" + (" >> rerank(k=100)" if ms[1] else ""),
            "dataset": {"name": "synthetic", "qrels": "default", "queries": queries},
            "seed": 42,
            "stages": stages,
            "ms_per_query": round(sum(s["ms_per_query"] for s in stages), 4),
            "versions": {"python": platform.python_version()},
            "git": {"commit": "0" * 40, "dirty": False},
            "created": "2026-01-01T00:00:00Z",
        }
        means = {measure: float(values.mean()) for measure, values in rows}
        metrics = {"name": name, "dataset": "synthetic", "qrels": "default", "queries": queries, "measures": means}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (folder / "config.json").write_text(json.dumps({"name": name, "seed": 42}, indent=2))
        with open(folder / "topdocs.jsonl", "w") as handle:
            for q in qids:
                docs = [
                    {"docno": f"d{q}-{k}", "rank": k, "score": 10.0 - k, "text": text, "label": None} for k in (1, 2, 3)
                ]
                handle.write(json.dumps({"qid": q, "query": "synthetic query " + q, "docs": docs}) + "\n")


def time_leaderboard(runs_dir: Path, site: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of one `cascade leaderboard` process."""
    cascade = [sys.executable, "-m", "cascade.pipelines.cli"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [*cascade, "leaderboard", str(runs_dir), "--html", str(site), "--baseline", "run-00"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"cascade leaderboard failed: {result.stderr.strip()}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def section(args: argparse.Namespace, times: list[float], cpu: list[float], page_bytes: int) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "\n".join(
        [
            "## Leaderboard speed",
            "",
            f"`python bench/leaderboard_speed.py --runs {args.runs} --queries {args.queries} --repeat {args.repeat}`: "
            f"`cascade leaderboard RUNS --html SITE --baseline run-00` over {args.runs} synthetic run folders x "
            f"{args.queries:,} queries x {len(MEASURES)} measures, in a fresh process (Python start-up included).",
            "It bootstraps every mean and every difference (10,000 resamples), runs a 10,000-permutation",
            f"randomization test and a t-test for each of the {(args.runs - 1) * len(MEASURES)} comparisons with the",
            "baseline, applies Holm's correction, and writes the Markdown and the HTML page (plot, drill-down with",
            "snippets).",
            "",
            "| what | wall seconds | CPU seconds |",
            "|---|---:|---:|",
            f"| fastest of {len(times)} | {min(times):.1f} | {cpu[times.index(min(times))]:.1f} |",
            f"| median of {len(times)} | {statistics.median(times):.1f} | {statistics.median(cpu):.1f} |",
            "| target | 20 | |",
            "",
            f"HTML page: {page_bytes / 1e6:.1f} MB. Machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; 1-minute load average at the end: {load:.1f} (other work on the",
            "machine slows the wall time; CPU time, all threads together, is the steadier figure).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--queries", type=int, default=7000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cascade-lb-bench-"))
    try:
        t0 = time.perf_counter()
        synthesise(work / "runs", args.runs, args.queries)
        print(f"synthesised {args.runs} runs x {args.queries} queries in {time.perf_counter() - t0:.1f} s")
        times, cpu = [], []
        for i in range(args.repeat):
            wall, used = time_leaderboard(work / "runs", work / "site")
            times.append(wall)
            cpu.append(used)
            print(f"leaderboard {i + 1}/{args.repeat}: {wall:.2f} s wall, {used:.2f} s CPU")
        page = (work / "site" / "index.html").stat().st_size
        text = section(args, times, cpu, page)
        replace_section(args.out, "leaderboard", text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
