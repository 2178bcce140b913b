"""Cross-encoder scoring: cascade's `score_pairs` (what the `cross_encoder` stage runs) against
sentence-transformers' `CrossEncoder.predict`, on the same model, pairs, batch size, max length and threads.

Each measurement runs in its own process; the two systems alternate and the best of `--repeats` is kept, so
background load on shared cores hurts both alike. Scores are compared too (raw logits, no sigmoid): speed only
counts if the numbers are the same. The model is MiniLM-L6 with a seeded one-output head, the architecture of the
trained `configs/train/cross-encoder.yaml` (speed does not depend on the weights' values); `--model` takes another.
Pairs are the DL19 official BM25 top-100 (query, passage) pairs, in run order.

    .venv/bin/python bench/cross_encoder_speed.py --data-dir ../shared/data [--pairs 1500] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "cross-encoder"
HEADING = "## Cross-encoder scoring speed (issue 3)"
sys.path.insert(0, str(ROOT))


def bench_pairs(data_dir: str | None, n: int) -> list[list[str]]:
    """(query, passage) pairs of the official DL19 BM25 run (the sample's BM25 pairs without a data dir)."""
    from cascade.eval.datasets import load_dataset
    from cascade.eval.runs import read_run

    if data_dir is None:
        from cascade.core.store import ArtifactStore
        from cascade.rankers import BM25, Context

        data = load_dataset("sample")
        run = BM25(k=100).transform(data.queries, Context(ArtifactStore(OUT / "cache"), data.corpus, progress=False))
    else:
        data = load_dataset("msmarco-passage/dl19", data_dir, qrels="official")
        run = read_run(Path(data_dir) / "msmarco-passage" / "runs" / "dl19.bm25.trec.gz")
    queries = dict(zip(data.queries["qid"], data.queries["query"], strict=True))
    run = run[run["qid"].isin(queries)].head(n)
    from cascade.eval.datasets import doc_text

    texts = {doc["docno"]: doc_text(doc) for doc in data.corpus.docs()}
    return [[queries[q], texts[d]] for q, d in zip(run["qid"], run["docno"], strict=True)]


def seeded_model(folder: Path) -> Path:
    """MiniLM-L6 with a one-output head from seed 0, saved once (safetensors + tokenizer)."""
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from cascade.indexes.models import resolve_model

    torch.manual_seed(0)
    base = resolve_model("minilm-l6")
    tmp = folder.with_name(folder.name + ".tmp")
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder


def worker(system: str, args: argparse.Namespace) -> None:
    """Inside a subprocess: load, warm up on one batch, time one full scoring pass, save the scores."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    pairs = json.loads(Path(args.pairs_file).read_text())
    warm = pairs[: args.batch_size]
    if system == "cascade":
        from cascade.rankers.cross_encoder import load_scorer, score_pairs

        scorer = load_scorer(args.model, "cpu", args.precision)

        def run(items: list) -> np.ndarray:
            first, second = [p[0] for p in items], [p[1] for p in items]
            return score_pairs(scorer, first, second, batch_size=args.batch_size, max_length=args.max_length)

        precision = str(scorer.autocast or "fp32")
    else:
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(args.model, device="cpu", max_length=args.max_length)
        identity = torch.nn.Identity()

        def run(items: list) -> np.ndarray:
            return model.predict(items, batch_size=args.batch_size, activation_fn=identity, show_progress_bar=False)

        precision = "fp32"
    run(warm)
    started = time.perf_counter()
    scores = run(pairs)
    seconds = time.perf_counter() - started
    np.save(OUT / f"{system}.npy", np.asarray(scores, dtype=np.float32))
    print(json.dumps({"system": system, "seconds": seconds, "pairs": len(pairs), "precision": precision}))


def run_worker(system: str, args: argparse.Namespace, pairs_file: Path, model: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", system, "--pairs-file", str(pairs_file), "--model", str(model)]
    cmd += ["--batch-size", str(args.batch_size), "--threads", str(args.threads), "--max-length", str(args.max_length)]
    cmd += ["--precision", args.precision]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{system} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args: argparse.Namespace, rate: dict, results: dict, n: int) -> str:
    import numpy as np

    ours, theirs = np.load(OUT / "cascade.npy"), np.load(OUT / "sentence-transformers.npy")
    ratio = rate["cascade"] / rate["sentence-transformers"]
    order_same = float(np.mean(np.argsort(-ours, kind="stable") == np.argsort(-theirs, kind="stable")))
    command = (
        f".venv/bin/python bench/cross_encoder_speed.py --pairs {args.pairs} --batch-size {args.batch_size} "
        f"--max-length {args.max_length} --threads {args.threads} --repeats {args.repeats}"
    )
    lines = [
        HEADING,
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}, {platform.platform()}, {os.cpu_count()} CPUs (shared), "
        f"{args.threads} threads, MiniLM-L6 cross-encoder (6 layers, 384 dim, one-output head), {n} DL19 BM25 "
        f"(query, passage) pairs, batch {args.batch_size}, max length {args.max_length}, best of {args.repeats}, "
        "each measurement in its own process, systems alternating.",
        "",
        "| system | precision | pairs/s |",
        "|---|---|---:|",
        f"| cascade `rankers.cross_encoder.score_pairs` | {results['cascade']['precision']} | {rate['cascade']:.1f} |",
        f"| sentence-transformers `CrossEncoder.predict` | {results['sentence-transformers']['precision']} | "
        f"{rate['sentence-transformers']:.1f} |",
        "",
        f"- ratio cascade / sentence-transformers: **{ratio:.2f}x** (target >= 1.0, aim 1.3): "
        f"{'PASS' if ratio >= 1.0 else 'FAIL'}",
        f"- same scores: max |logit difference| {np.abs(ours - theirs).max():.2e}; identical score order for "
        f"{100 * order_same:.1f}% of positions",
        "- where the speed comes from: one tokenizer call for all pairs, batches cut from pairs sorted by *token* "
        "length (sentence-transformers sorts by character length, so its batches pad more), "
        "`torch.inference_mode`, no per-batch re-tokenisation.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CASCADE_DATA"))
    parser.add_argument("--pairs", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--precision", default="auto", help="cascade's precision (auto: bf16 only on CPUs with AMX)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default=None, help="a cross-encoder folder (default: seeded MiniLM-L6 head)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    parser.add_argument("--worker")
    parser.add_argument("--pairs-file")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return

    OUT.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else seeded_model(OUT / "minilm-l6-ce")
    pairs_file = OUT / "pairs.json"
    pairs_file.write_text(json.dumps(bench_pairs(args.data_dir, args.pairs)))
    best: dict[str, float] = {}
    results: dict[str, dict] = {}
    for _ in range(args.repeats):
        for system in ("cascade", "sentence-transformers"):
            result = run_worker(system, args, pairs_file, model)
            results[system] = result
            best[system] = min(best.get(system, float("inf")), result["seconds"])
            print(f"{system}: {result['pairs'] / result['seconds']:.1f} pairs/s", flush=True)
    n = len(json.loads(pairs_file.read_text()))
    rate = {s: n / t for s, t in best.items()}
    section = report(args, rate, results, n)
    print(section)
    from bench.results import replace_section

    replace_section(Path(args.out), "cross-encoder", section)


if __name__ == "__main__":
    main()
