"""Corpus encoding in shards, measured (issue 12): peak memory against corpus size at one shard size, and a
SIGKILLed encode resumed.

    python bench/shard_bounds.py --data-dir ../shared/data [--work bench/out/shards]

1. `dense` (MiniLM, max_length 32 to keep the bench short; the shard, not the passage length, is what is
   measured) encodes generated corpora of 20k and 200k passages with shard_size 5,000, each in a fresh
   `cascade run` process: the encoding's peak RSS (sampled while the shards are encoded, recorded in the
   embeddings' card as `encode_peak_rss_mb`) of the 200k run / the 20k run. The whole process's peak (wait4) is
   printed beside it: it also holds FAISS's float32 copy of every vector (the flat index itself) and the docno
   list, which grow with the corpus by design.
2. A 50k encode (shard_size 10,000) is SIGKILLed once two shards are recorded (this polls the shard folder: a
   benchmark, not a test), then rerun: the rerun's manifest counts the shards it encoded and reused, and its
   embeddings are compared byte for byte with an uninterrupted encode in another cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.corpus_gen import generate  # noqa: E402

CONFIG = (
    "name: {name}\ndataset: {{path: {folder}}}\nmeasures: [nDCG@10]\n"
    "pipeline:\n  - dense: {{k: 10, max_length: 32, shard_size: {shard}}}\n"
)


def run(config: Path, cache: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one `cascade run` process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(REPO / ".venv/bin/cascade"), "run", str(config), "--cache", str(cache), "--out", str(out), "-q"]
    )
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"{config} failed"
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def card(cache: Path) -> dict:
    (path,) = (cache / "dense-embeddings").glob("*/card.json")
    return json.loads(path.read_text())


def embeddings(cache: Path) -> bytes:
    (folder,) = [p.parent for p in (cache / "dense-embeddings").glob("*/card.json")]
    return (folder / "embeddings.npy").read_bytes() + (folder / "docnos.txt").read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=REPO / "bench/out/shards")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    for old in [*work.glob("cache-*"), *work.glob("runs*")]:  # every measurement starts from an empty cache
        shutil.rmtree(old)
    rows = {}
    for size in (20_000, 200_000):
        folder = work / f"corpus-{size}"
        generate(folder, size, data_dir=args.data_dir, queries=20)
        config = work / f"enc-{size}.yaml"
        config.write_text(CONFIG.format(name=f"enc-{size}", folder=folder, shard=5000))
        seconds, rss = run(config, work / f"cache-{size}", work / "runs")
        encoding = card(work / f"cache-{size}")["encode_peak_rss_mb"]
        rows[size] = {
            "seconds": round(seconds, 1),
            "encode_peak_rss_mb": encoding,
            "process_peak_rss_mb": round(rss, 1),
        }
        print(
            f"encode {size:,} passages, shard 5,000: {seconds:.1f} s, encoding peak RSS {encoding:,.0f} MB"
            f" (whole process, FAISS index and search included: {rss:,.0f} MB)",
            flush=True,
        )
    ratio = rows[200_000]["encode_peak_rss_mb"] / rows[20_000]["encode_peak_rss_mb"]
    process_ratio = rows[200_000]["process_peak_rss_mb"] / rows[20_000]["process_peak_rss_mb"]
    print(f"encoding peak RSS 200k / 20k = {ratio:.3f} (target <= 1.25); whole process {process_ratio:.3f}")

    folder = work / "corpus-50000"
    generate(folder, 50_000, data_dir=args.data_dir, queries=20)
    config = work / "enc-50000.yaml"
    config.write_text(CONFIG.format(name="enc-50000", folder=folder, shard=10_000))
    run(config, work / "cache-whole", work / "runs-whole")
    cache = work / "cache-killed"
    proc = subprocess.Popen(
        [
            str(REPO / ".venv/bin/cascade"),
            "run",
            str(config),
            "--cache",
            str(cache),
            "--out",
            str(work / "runs-killed"),
            "-q",
        ]
    )
    shards = cache / "shards" / "dense-embeddings"
    while not (shards.exists() and sum(1 for _ in shards.glob("*/*.json")) >= 2):
        assert proc.poll() is None, "the encode finished before it could be killed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    recorded = sum(1 for _ in shards.glob("*/*.json"))
    print(f"killed with SIGKILL after {recorded} of 5 shards were recorded")
    run(config, cache, work / "runs-killed")
    stats = json.loads((work / "runs-killed" / "enc-50000" / "manifest.json").read_text())["stages"][0]["stats"]
    same = embeddings(cache) == embeddings(work / "cache-whole")
    print(f"rerun: {stats['embeddings']}; embeddings byte-identical to an uninterrupted encode: {same}")
    result = {"peak_rss": rows, "ratio_200k_20k": round(ratio, 3),
              "process_ratio_200k_20k": round(process_ratio, 3), "killed_after": recorded,
              "rerun": stats["embeddings"], "identical": same}  # fmt: skip
    (work / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if same and ratio <= 1.25 else 1


if __name__ == "__main__":
    sys.exit(main())
