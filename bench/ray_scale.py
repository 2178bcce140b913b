"""Dense corpus encoding on Ray against the local executor, on the same cores (issue 13).

    python bench/ray_scale.py --data-dir ../shared/data [--passages 20000] [--work bench/out/ray]

The first `--passages` real MS MARCO passages of the data dir's corpus (and the dev queries judged on them) are
written as a local BEIR folder; `dense` (MiniLM, the default max_length 256, shard_size 2,500) then encodes
them three times, each in a fresh `cascade run` process with an empty cache:

- local (torch on both cores: `--threads 2`);
- `--executor ray --workers 1 --cpus-per-worker 2 --threads 2` (one worker, two threads);
- `--executor ray --workers 2 --threads 1` (two workers of one CPU and one thread each: workers compute on the
  run's `--threads`, so `--threads` equal to the CPUs per worker; with `--threads 2` the two workers ran four
  threads on two cores and reached 0.50x local on 2026-12-06).

- local with `--threads 1`, the reference for the last row.

Workers compute on the run's `--threads` (torch can round differently with the thread count: at max_length 256
in bf16 the 1- and 2-thread embeddings differ), so each Ray row must be byte-identical to the local row with the
same `--threads`.

Throughput is passages / the embeddings' build seconds (their card: encoding and assembly, with Ray's worker
start and model loads inside). The three embeddings must be byte-identical. Projections to 8.8M passages use the
measured throughputs and say so.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.results import load_average, replace_section  # noqa: E402

CONFIG = """name: ray-bench
dataset: {{path: {folder}}}
measures: [nDCG@10]
pipeline:
  - dense: {{k: 10, shard_size: 2500}}
"""
SETUPS = {
    "local, 2 threads": ["--threads", "2"],
    "ray, 1 worker x 2 CPUs, 2 threads": [
        "--executor",
        "ray",
        "--workers",
        "1",
        "--cpus-per-worker",
        "2",
        "--threads",
        "2",
    ],
    "ray, 2 workers x 1 CPU, 1 thread each": ["--executor", "ray", "--workers", "2", "--threads", "1"],
    "local, 1 thread": ["--threads", "1"],
}
SAME_AS = {  # each row's reference: the local run with the same --threads
    "local, 2 threads": "local, 2 threads",
    "ray, 1 worker x 2 CPUs, 2 threads": "local, 2 threads",
    "ray, 2 workers x 1 CPU, 1 thread each": "local, 1 thread",
    "local, 1 thread": "local, 1 thread",
}
FULL = 8_841_823  # MS MARCO v1 passages


def write_folder(data_dir: Path, folder: Path, passages: int) -> None:
    """The first `passages` passages, and the dev queries whose judged passage is among them (at most 50)."""
    if (folder / "qrels" / "test.tsv").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    kept: set[str] = set()
    corpus = data_dir / "msmarco-passage/corpus.jsonl.gz"
    with gzip.open(corpus, "rt", encoding="utf-8") as source, open(folder / "corpus.jsonl", "w") as target:
        for line in source:
            doc = json.loads(line)
            target.write(json.dumps({"_id": doc["_id"], "title": "", "text": doc["text"]}) + "\n")
            kept.add(doc["_id"])
            if len(kept) == passages:
                break
    qrels = [
        line.split("\t")
        for line in (data_dir / "msmarco-passage/qrels/dev-small-1743.tsv").read_text().splitlines()[1:]
    ]
    judged = {q: d for q, d, _ in qrels if d in kept}
    chosen = sorted(judged)[:50]
    with open(data_dir / "msmarco-passage/queries.jsonl", encoding="utf-8") as source:
        queries = [q for q in map(json.loads, source) if q["_id"] in set(chosen)]
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q["_id"], "text": q["text"]}) + "\n" for q in queries)
    )
    (folder / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{judged[q]}\t1" for q in chosen]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")


def encode(config: Path, cache: Path, out: Path, extra: list[str]) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(
        [str(REPO / ".venv/bin/cascade"), "run", str(config), "--cache", str(cache), "--out", str(out), "-q", *extra],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"cascade run {' '.join(extra)} failed:\n{done.stderr}")
    (card_path,) = (cache / "dense-embeddings").glob("*/card.json")
    card = json.loads(card_path.read_text())
    folder = card_path.parent
    manifest = json.loads((out / "ray-bench" / "manifest.json").read_text())
    return {
        "build_seconds": card["build_seconds"],
        "process_seconds": round(time.perf_counter() - started, 1),
        "passages_per_s": round(card["documents"] / card["build_seconds"], 1),
        "bytes": (folder / "embeddings.npy").read_bytes() + (folder / "docnos.txt").read_bytes(),
        "executor": manifest["executor"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--passages", type=int, default=20_000)
    parser.add_argument("--work", type=Path, default=REPO / "bench/out/ray")
    parser.add_argument("--out", type=Path, default=REPO / "bench/RESULTS.md")
    args = parser.parse_args()
    folder = args.work / f"msmarco-{args.passages}"
    write_folder(args.data_dir.resolve(), folder, args.passages)
    config = args.work / "ray-bench.yaml"
    config.write_text(CONFIG.format(folder=folder.resolve()))
    rows, loads = {}, [load_average()]
    for name, extra in SETUPS.items():
        rows[name] = encode(config, args.work / "cache", args.work / "runs", extra)
        loads.append(load_average())
        print(f"{name}: {rows[name]['passages_per_s']} passages/s ({rows[name]['build_seconds']} s)", flush=True)
    local = rows["local, 2 threads"]
    identical = all(row["bytes"] == rows[SAME_AS[name]]["bytes"] for name, row in rows.items())
    two = rows["ray, 2 workers x 1 CPU, 1 thread each"]
    ratio = two["passages_per_s"] / local["passages_per_s"]
    lines = [
        "## Dense encoding on Ray against the local executor (issue 13)",
        "",
        f"`python bench/ray_scale.py --data-dir ../shared/data --passages {args.passages}` ({date.today()}, "
        f"{args.passages:,} real MS MARCO passages, MiniLM max_length 256, shard_size 2,500, one fresh `cascade run` "
        f"per row on this machine's 2 cores; load average {min(loads)}-{max(loads)}). Throughput = passages / the "
        "embeddings' build seconds (Ray's worker start and model loads included).",
        "",
        "| executor | build s | passages/s | x local, 2 threads | embeddings vs local with the same --threads |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        same = "byte-identical" if row["bytes"] == rows[SAME_AS[name]]["bytes"] else "DIFFERENT"
        same = "(reference)" if SAME_AS[name] == name else same
        lines.append(
            f"| {name} | {row['build_seconds']:.1f} | {row['passages_per_s']:.1f} | "
            f"{row['passages_per_s'] / local['passages_per_s']:.2f} | {same} |"
        )
    per_worker = two["passages_per_s"] / 2
    here_hours = FULL / two["passages_per_s"] / 3600
    lines += [
        "",
        f"- Ray, 2 workers / local: **{ratio:.2f}x** (target >= 0.85x): "
        f"{'PASS' if ratio >= 0.85 else 'FAIL'}. Each Ray row's embeddings identical to local with the same --threads: "
        f"{'PASS' if identical else 'FAIL'}.",
        f"- Projected (not measured): 8.8M passages at the 2-worker rate take {here_hours:.1f} h "
        f"here; with N such one-CPU workers on more machines, about {FULL / per_worker / 3600:.0f} h / N "
        f"({per_worker:.1f} passages/s per worker, assuming the per-worker rate holds, as it does when workers do not "
        "share cores). No GPU was lent to this task, so GPU workers are not measured.",
    ]
    replace_section(args.out, "ray_scale", "\n".join(lines))
    print("\n".join(lines[-2:]))
    return 0 if identical and ratio >= 0.85 else 1


if __name__ == "__main__":
    sys.exit(main())
