"""Dense encoding: cascade's encoder against sentence-transformers' `encode`, same model, batch size, threads.

Each measurement runs in its own process (FAISS and torch thread pools disturb each other, ENVIRONMENT.md), the
two systems alternate, and the best of `--repeats` is kept, so background load hurts both alike. The vectors of
both are compared too: speed only counts if the vectors are the same. Also reported: FAISS search time per query
(flat and HNSW) and LTR lexical feature extraction time per query, on the same passages.

    .venv/bin/python bench/dense_speed.py --data-dir ../shared/data [--passages 2000] [--batch-size 64]
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
OUT = ROOT / "bench" / "out" / "dense"
sys.path.insert(0, str(ROOT))

from bench.results import replace_section  # noqa: E402


def passages(data_dir: str | None, n: int) -> list[str]:
    from cascade.eval.datasets import doc_text, load_dataset

    dataset = load_dataset("msmarco-passage/dl19", data_dir) if data_dir else load_dataset("sample")
    texts = []
    for doc in dataset.corpus.docs():
        texts.append(doc_text(doc))
        if len(texts) == n:
            break
    return texts


def worker(system: str, texts_file: str, batch_size: int, threads: int, vectors_out: str) -> None:
    """Runs inside a subprocess: load, warm up, time one full encode, save vectors."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    texts = json.loads(Path(texts_file).read_text())
    from cascade.indexes.models import resolve_model

    path = resolve_model("minilm-l6")
    if system == "cascade":
        from cascade.indexes.dense import encode, load_encoder

        encoder = load_encoder(path, "cpu")
        encode(encoder, texts[:batch_size], batch_size=batch_size, max_length=256)
        started = time.perf_counter()
        vectors = encode(encoder, texts, batch_size=batch_size, max_length=256)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu")
        model.max_seq_length = 256
        model.encode(texts[:batch_size], batch_size=batch_size)
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    np.save(vectors_out, vectors)
    print(json.dumps({"system": system, "seconds": seconds, "passages": len(texts)}))


def run_worker(system: str, texts_file: Path, batch_size: int, threads: int) -> dict:
    out = OUT / f"{system}.npy"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        system,
        "--texts",
        str(texts_file),
        "--batch-size",
        str(batch_size),
        "--threads",
        str(threads),
        "--vectors",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def faiss_and_ltr_timings(data_dir: str | None, threads: int, cache: str) -> dict:
    """Search ms/query for FAISS flat and HNSW over cached DL19 corpus embeddings, and LTR feature ms/query."""
    code = f"""
import json, time
from cascade.eval.datasets import load_dataset
from cascade.core.store import ArtifactStore
from cascade.rankers import BM25, Context, Dense
from cascade.rankers.base import carry_scores, with_queries
from cascade.rankers.ltr import feature_matrix
name = {"'msmarco-passage/dl19'" if data_dir else "'sample'"}
data = load_dataset(name, {data_dir!r})
ctx = Context(store=ArtifactStore({str(OUT / "cache")!r}), corpus=data.corpus, threads={threads}, progress=False)
out = {{}}
for kind in ("flat", "hnsw"):
    stage = Dense(k=1000, index=kind)
    stage.prepare(ctx)
    docnos, index = stage.faiss_index(ctx)
    vectors = stage.encode_queries(data.queries, ctx)
    from cascade.indexes.dense import search_faiss
    search_faiss(index, vectors, 1000, 128, {threads})
    t = time.perf_counter(); search_faiss(index, vectors, 1000, 128, {threads}); s = time.perf_counter() - t
    out[f"faiss_{{kind}}_ms_per_query"] = 1000 * s / len(vectors)
run = carry_scores(with_queries(BM25(k=100).transform(data.queries, ctx), data.queries), data.queries, "bm25")
feature_matrix(run.head(10), ["lexical"], ctx)
t = time.perf_counter(); feature_matrix(run, ["bm25", "lexical"], ctx); s = time.perf_counter() - t
out["ltr_features_ms_per_query"] = 1000 * s / run["qid"].nunique()
out["ltr_pairs"] = len(run)
print(json.dumps(out))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CASCADE_DATA"))
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    parser.add_argument("--cache", default=str(ROOT / ".cascade"), help="reuses the corpus embeddings of earlier runs")
    parser.add_argument("--worker")
    parser.add_argument("--texts")
    parser.add_argument("--vectors")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.texts, args.batch_size, args.threads, args.vectors)
        return

    import numpy as np

    OUT.mkdir(parents=True, exist_ok=True)
    texts_file = OUT / "texts.json"
    texts_file.write_text(json.dumps(passages(args.data_dir, args.passages)))
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for system in ("cascade", "sentence-transformers"):
            result = run_worker(system, texts_file, args.batch_size, args.threads)
            best[system] = min(best.get(system, float("inf")), result["seconds"])
    ours, theirs = np.load(OUT / "cascade.npy"), np.load(OUT / "sentence-transformers.npy")
    n = len(json.loads(texts_file.read_text()))
    rate = {s: n / t for s, t in best.items()}
    ratio = rate["cascade"] / rate["sentence-transformers"]
    print(f"encoding: cascade {rate['cascade']:.1f}/s, sentence-transformers {rate['sentence-transformers']:.1f}/s")
    extra = faiss_and_ltr_timings(args.data_dir, args.threads, args.cache)
    command = f".venv/bin/python bench/dense_speed.py --passages {args.passages} --batch-size {args.batch_size}"
    lines = [
        "## Dense encoding and search (issue 3)",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d')}, {platform.platform()}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads, MiniLM-L6, {n} MS MARCO passages, batch {args.batch_size}, best of {args.repeats}.",
        "",
        "| system | passages/s |",
        "|---|---:|",
        f"| cascade `indexes.dense.encode` | {rate['cascade']:.1f} |",
        f"| sentence-transformers `encode` | {rate['sentence-transformers']:.1f} |",
        "",
        f"- ratio cascade / sentence-transformers: **{ratio:.2f}x** (target >= 1.0, aim 1.3): "
        f"{'PASS' if ratio >= 1.0 else 'FAIL'}",
        f"- same vectors: max |difference| {np.abs(ours - theirs).max():.2e}, "
        f"min cosine {float((ours * theirs).sum(1).min()):.6f}",
    ]
    for key, value in extra.items():
        lines.append(f"- {key}: {value:.3f}" if isinstance(value, float) else f"- {key}: {value}")
    section = "\n".join(lines) + "\n"
    print(section)
    replace_section(Path(args.out), "dense", section)


if __name__ == "__main__":
    main()
