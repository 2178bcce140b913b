"""Scale (issue 12): how cascade's costs grow from 100k to millions of passages, and what 8.8M and 138M would cost.

Only 30k real MS MARCO passages are on this machine, so the corpora are generated (bench/corpus_gen.py: words,
word frequencies and passage lengths learned from the real passages; the 200 queries are real dev-small ones).
Every measurement runs in a fresh process, so its peak memory (that child's maximum resident set, from
`os.wait4`) is its own; cascade's JVM runs inside its process (pyjnius), Anserini alone is its own `java`.

1. bm25: `cascade run` of `bm25: {k: 1000}` with an empty cache (fingerprint, collection writing, Lucene index,
   search of 200 queries), side by side with Anserini's own `IndexCollection` on the same collection (converted
   once, untimed, to JsonCollection; same threads, flags and generator) and its `SearchCollection`; per-query
   latency (p50/p99, k=1000) through Anserini's SimpleSearcher on cascade's index, one query at a time.
2. rerank: `bm25 >> dense_rerank` and `bm25 >> cross_encoder` with index, document store and model already built
   (a one-query run warms them, untimed); the stage-output cache is emptied before each timed process. Timed:
   the 200-query process (peak memory, wall, the manifest's stage timings) and a one-query process, whose wall is
   the time from process start to its first reranked query. The cross-encoder is MiniLM-L6 trained by the tiny
   config (configs/train/cross-encoder-tiny.yaml): the full model's architecture and cost, not its quality.
3. encode: MiniLM (the `dense` stages' encoder) and tiny SPLADE (the `sparse` stage's) on a sample of real
   passages: throughput and peak memory; encoding 1M+ passages on 2 cores takes hours, so its time is projected.
4. faiss / seismic: index build and search on generated vectors of the full size (dense: normalised float32,
   dim 384; sparse: rows drawn with the nonzeros per row, term frequencies and weights of the SPLADE sample).
   HNSW and Seismic stop at `--hnsw-max` / `--seismic-max` (time and memory on 2 cores, 24 GB); larger is
   projected from the fitted growth.

Growth exponents are log-log least-squares slopes over the measured sizes; every figure at 8.8M and 138M is a
projection and labelled so. Results accumulate in `--out`/results.json (one point per part, system and size, a
rerun replaces its points), so sizes can be measured in separate invocations.

    .venv/bin/python bench/scale.py --quick                      # 10k smoke run, a few minutes
    .venv/bin/python bench/scale.py --sizes 100000,1000000       # then e.g. --sizes 3000000 --only bm25,faiss
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import corpus_gen  # noqa: E402
from bench.results import load_average  # noqa: E402

PARTS = ("bm25", "rerank", "encode", "faiss", "seismic")
PROJECT_AT = (8_800_000, 138_000_000)  # MS MARCO v1 passages, v2 passages
DIM = 384
THREADS = 2
K1, B = 0.9, 0.4
CE_CONFIG = REPO / "configs" / "train" / "cross-encoder-tiny.yaml"
RERANKERS = {
    "dense_rerank": {"dense_rerank": {"model": "minilm-l6", "k": 100}},
    "cross_encoder": {"cross_encoder": {"model": f"train:{CE_CONFIG}", "k": 100, "batch_size": 32, "max_length": 256}},
}
SEISMIC_BUILD = {"n_postings": 3500, "centroid_fraction": 0.1, "summary_energy": 0.4, "doc_cut": 15}
SEISMIC_SEARCH = {"query_cut": 10, "heap_factor": 0.7}  # the sparse stage's defaults
HNSW_M, EF_CONSTRUCTION, EF_SEARCH = 32, 200, 128  # the dense stage's defaults


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def size_label(n: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if n >= div:
            value = n / div
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"
    return str(int(n))


def disk_bytes(path: Path) -> int:
    """Apparent size of a file or of everything under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- processes


class Measured(dict):
    """wall, cpu (s), peak_rss_mb (the child's own maximum resident set), load before/after, return code."""


def measure(cmd: list[str], log_file: Path, env: dict[str, str] | None = None, check: bool = True) -> Measured:
    """Run `cmd` from the repo root, output to `log_file`; its own peak RSS comes from `os.wait4`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    before = load_average()
    with open(log_file, "wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = Measured(
        wall=round(wall, 3),
        cpu=round(usage.ru_utime + usage.ru_stime, 2),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        load=[before, load_average()],
        rc=proc.returncode,
    )
    if check and proc.returncode != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"failed ({proc.returncode}): {shlex.join(cmd)}\n--- {log_file} ---\n{tail}")
    return result


def worker(name: str, spec: dict, log_file: Path) -> tuple[dict, Measured]:
    """This script's `name` worker in a fresh Python process; returns what it wrote and how the process ran."""
    result = Path(spec["result"])
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--spec", json.dumps(spec)]
    run = measure(cmd, log_file)
    return json.loads(result.read_text()), run


def cascade_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# --------------------------------------------------------------------------- results


class Results:
    """Points of one results file: replaced per (part, system, variant, size), saved after every measurement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.points: list[dict] = json.loads(path.read_text())["points"] if path.exists() else []

    @staticmethod
    def _key(p: dict) -> tuple:
        return p["part"], p["system"], p.get("variant", ""), p["size"]

    def has(self, part: str, system: str, size: int, variant: str = "") -> bool:
        return any(self._key(p) == (part, system, variant, size) for p in self.points)

    def add(self, point: dict) -> None:
        point.setdefault("variant", "")
        point["measured_at"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        self.points = [p for p in self.points if self._key(p) != self._key(point)] + [point]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"points": self.points}, indent=1) + "\n")
        os.replace(tmp, self.path)
        shown = {k: point.get(k) for k in ("seconds", "peak_rss_mb", "disk_mb", "p50_ms", "p99_ms") if point.get(k)}
        log(
            f"  point {point['part']}/{point['system']}{'/' + point['variant'] if point['variant'] else ''} "
            f"@{size_label(point['size'])}: {shown}"
        )


def point(part: str, system: str, size: int, run: Measured | None = None, **fields) -> dict:
    base = {"part": part, "system": system, "size": size}
    if run is not None:
        base |= {"peak_rss_mb": run["peak_rss_mb"], "cpu": run["cpu"], "wall": run["wall"], "load": run["load"]}
    return base | fields


# --------------------------------------------------------------------------- corpora and configs


def corpus_folder(args: argparse.Namespace, size: int) -> Path:
    folder = args.work / str(size) / "corpus"
    corpus_gen.generate(folder, size, args.seed, args.queries, args.data_dir)
    return folder


def query_subset_folder(corpus: Path, n: int) -> Path:
    """The same corpus (a symlink: same fingerprint, so the same index and store) with only its first `n` queries."""
    folder = corpus.parent / f"queries-{n}"
    if not (folder / "qrels" / "test.tsv").exists():
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        if not (folder / "corpus.jsonl").exists():
            (folder / "corpus.jsonl").symlink_to(corpus / "corpus.jsonl")
        queries = (corpus / "queries.jsonl").read_text().splitlines()[:n]
        (folder / "queries.jsonl").write_text("\n".join(queries) + "\n")
        qrels = (corpus / "qrels" / "test.tsv").read_text().splitlines()[: n + 1]
        (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    return folder


def write_config(path: Path, name: str, dataset: Path, pipeline: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"name": name, "dataset": {"path": str(dataset)}, "seed": 42, "measures": ["RR@10"], "pipeline": pipeline}
    path.write_text(json.dumps(config, indent=1) + "\n")  # JSON is YAML
    return path


def cascade_run(args: argparse.Namespace, config: Path, cache: Path, runs: Path, log_file: Path) -> tuple:
    """`cascade run` in its own process; returns (how the process ran, its manifest)."""
    cmd = [str(Path(sys.executable).parent / "cascade"), "run", str(config), "--out", str(runs), "--cache", str(cache)]
    cmd += ["--threads", str(THREADS), "--data-dir", str(args.data_dir), "-q"]
    run = measure(cmd, log_file, env=cascade_env())
    name = json.loads(config.read_text())["name"]
    return run, json.loads((runs / name / "manifest.json").read_text())


def empty_output_cache(cache: Path) -> None:
    """Forget cached stage outputs and run results; keep indexes, document store, fingerprints and models."""
    for name in ("runs", "outputs"):
        shutil.rmtree(cache / name, ignore_errors=True)


def stage_facts(manifest: dict) -> list[dict]:
    keys = ("stage", "cached", "seconds", "prepare_seconds", "compute_seconds", "ms_per_query")
    return [{k: s.get(k) for k in keys} for s in manifest["stages"]]


# --------------------------------------------------------------------------- part 1: BM25


def anserini_collection(corpus: Path, out: Path) -> Path:
    """The corpus as Anserini JsonCollection lines (`id`, `contents` = title + text as cascade writes); untimed."""
    target = out / "docs.jsonl"
    if target.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    prefix, middle = '{"_id": ', ', "title": "", "text": '
    with open(corpus / "corpus.jsonl", encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as dst:
        for line in src:
            if line.startswith(prefix) and middle in line:  # corpus_gen's own layout: rename the keys in place
                dst.write('{"id": ' + line[len(prefix) :].replace(middle, ', "contents": ', 1))
            else:
                doc = json.loads(line)
                text = f"{doc.get('title') or ''} {doc.get('text') or ''}".strip()
                dst.write(json.dumps({"id": doc["_id"], "contents": text}, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return out


def java_cmd(cls: str, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    from cascade.indexes.jvm import anserini_jar, java_environment

    env = {**os.environ, **java_environment()}
    return [str(Path(env["JAVA_HOME"]) / "bin" / "java"), "-cp", str(anserini_jar()), cls, *argv], env


def topics_file(corpus: Path, out: Path) -> Path:
    lines = [json.loads(line) for line in (corpus / "queries.jsonl").read_text().splitlines() if line.strip()]
    out.write_text("".join(f"{q['_id']}\t{' '.join(q['text'].split())}\n" for q in lines))
    return out


def bench_bm25(args: argparse.Namespace, size: int, results: Results) -> None:
    corpus = corpus_folder(args, size)
    base = args.work / str(size)
    cache, runs, logs = base / "cache", base / "runs", base / "logs"
    n_queries = len((corpus / "queries.jsonl").read_text().splitlines())

    log(f"bm25 @{size_label(size)}: cascade run (empty cache: fingerprint, collection, index, {n_queries} queries)")
    shutil.rmtree(cache, ignore_errors=True)
    config = write_config(base / "configs" / "bm25.yaml", f"scale-bm25-{size}", corpus, [{"bm25": {"k": 1000}}])
    run, manifest = cascade_run(args, config, cache, runs, logs / "cascade-bm25.log")
    stage = manifest["stages"][0]
    index = next(p for p in (cache / "lucene").iterdir() if p.is_dir() and not p.name.startswith("."))
    build, search = stage["prepare_seconds"], stage["compute_seconds"]
    results.add(
        point(
            "bm25-index",
            "cascade",
            size,
            run,
            seconds=build,
            throughput=size / build,
            unit="docs/s",
            disk_mb=disk_bytes(index) / 1e6,
            process_wall=run["wall"],
            stages=stage_facts(manifest),
            note="stage prepare (lucene_index: corpus fingerprint, collection file, IndexCollection in-process); "
            "peak RSS of the whole `cascade run` process, JVM included (in-process, pyjnius)",
        )
    )
    results.add(
        point(
            "bm25-search",
            "cascade",
            size,
            seconds=search,
            throughput=n_queries / search,
            unit="q/s",
            mean_ms=stage["ms_per_query"],
            load=run["load"],
            note=f"BM25.transform of {n_queries} queries, k=1000, {THREADS} threads (one SearchCollection call)",
        )
    )

    log(f"bm25 @{size_label(size)}: per-query latency (SimpleSearcher on cascade's index, one query at a time)")
    spec = {"index": str(index), "topics": str(topics_file(corpus, base / "topics.tsv")), "k": 1000}
    spec["result"] = str(base / "latency.json")
    lat, run = worker("latency", spec, logs / "latency.log")
    for key, system, how in (
        (
            "lucene",
            "Lucene IndexSearcher",
            "IndexSearcher.search(BagOfWordsQueryGenerator query, 1000): top-k stays "
            "in Java (the engine's cost, as inside SearchCollection)",
        ),
        ("simple", "SimpleSearcher (pyserini path)", "SimpleSearcher.search(q, 1000): 1,000 hit objects into Python"),
    ):
        lat_k = lat[key]
        results.add(
            point(
                "bm25-latency",
                system,
                size,
                run,
                seconds=lat_k["total_seconds"],
                throughput=lat["queries"] / lat_k["total_seconds"],
                unit="q/s",
                p50_ms=lat_k["p50_ms"],
                p99_ms=lat_k["p99_ms"],
                mean_ms=lat_k["mean_ms"],
                note=f"cascade's index; {how}; 1 thread, one query at a time, 5 warm-up queries; peak RSS: the "
                "worker (both searchers)",
            )
        )

    log(f"bm25 @{size_label(size)}: Anserini IndexCollection alone (collection converted untimed)")
    coll = anserini_collection(corpus, base / "anserini-collection")
    aindex = base / "anserini-index"
    shutil.rmtree(aindex, ignore_errors=True)
    argv = ["-collection", "JsonCollection", "-input", str(coll), "-index", str(aindex)]
    argv += ["-generator", "DefaultLuceneDocumentGenerator", "-storePositions", "-storeDocvectors", "-storeRaw"]
    argv += ["-threads", str(THREADS)]
    cmd, env = java_cmd("io.anserini.index.IndexCollection", argv)
    run = measure(cmd, logs / "anserini-index.log", env=env)
    results.add(
        point(
            "bm25-index",
            "Anserini",
            size,
            run,
            seconds=run["wall"],
            throughput=size / run["wall"],
            unit="docs/s",
            disk_mb=disk_bytes(aindex) / 1e6,
            ratio_cascade=build / run["wall"],
            note="`java io.anserini.index.IndexCollection` wall, JVM start included; same flags and threads",
        )
    )
    out = base / "anserini-run.trec"
    argv = ["-index", str(aindex), "-topics", spec["topics"], "-topicReader", "TsvString", "-output", str(out)]
    argv += ["-bm25", "-bm25.k1", str(K1), "-bm25.b", str(B), "-hits", "1000", "-threads", str(THREADS)]
    cmd, env = java_cmd("io.anserini.search.SearchCollection", argv)
    run = measure(cmd, logs / "anserini-search.log", env=env)
    results.add(
        point(
            "bm25-search",
            "Anserini",
            size,
            run,
            seconds=run["wall"],
            throughput=n_queries / run["wall"],
            unit="q/s",
            ratio_cascade=search / run["wall"],
            note="`java io.anserini.search.SearchCollection` wall (JVM start included), k=1000",
        )
    )
    if not args.keep:
        shutil.rmtree(aindex, ignore_errors=True)
        shutil.rmtree(coll, ignore_errors=True)


def latency_worker(spec: dict) -> dict:
    """Per-query BM25 latency on an existing index, one query at a time (1 thread), two ways: Lucene's IndexSearcher
    with Anserini's analyzer and bag-of-words query (top-k stays one Java object: the engine's own cost, as in
    SearchCollection), and Anserini's SimpleSearcher (pyserini's path: 1,000 hit objects cross into Python)."""
    from cascade.indexes.jvm import start_jvm

    start_jvm()
    from jnius import autoclass, cast

    topics = [line.split("\t", 1)[1] for line in Path(spec["topics"]).read_text().splitlines()]
    k = spec["k"]
    reader = autoclass("org.apache.lucene.index.DirectoryReader").open(
        autoclass("org.apache.lucene.store.FSDirectory").open(autoclass("java.io.File")(spec["index"]).toPath())
    )
    lucene = autoclass("org.apache.lucene.search.IndexSearcher")(cast("org.apache.lucene.index.IndexReader", reader))
    lucene.setSimilarity(autoclass("org.apache.lucene.search.similarities.BM25Similarity")(K1, B))
    analyzer = autoclass("io.anserini.analysis.DefaultEnglishAnalyzer").newDefaultInstance()
    generator = autoclass("io.anserini.search.query.BagOfWordsQueryGenerator")()

    def engine(text: str):
        return lucene.search(generator.buildQuery("contents", analyzer, text), k)  # TopDocs, left in Java

    if not len(engine(topics[0]).scoreDocs):  # reading scoreDocs converts every hit: checked once, untimed
        raise RuntimeError("the first query found nothing")

    simple = autoclass("io.anserini.search.SimpleSearcher")(spec["index"])
    simple.set_bm25(K1, B)
    out = {"queries": len(topics)}
    for name, search in (("lucene", engine), ("simple", lambda text: len(simple.search(text, k)))):
        for text in topics[:5]:  # warm-up
            search(text)
        times = []
        started = time.perf_counter()
        for text in topics:
            t = time.perf_counter()
            search(text)
            times.append(time.perf_counter() - t)
        out[name] = {"total_seconds": time.perf_counter() - started, **latency(times)}
    simple.close()
    reader.close()
    return out


def latency(seconds: Iterable[float]) -> dict:
    ms = 1000 * np.asarray(list(seconds))
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


# --------------------------------------------------------------------------- part 2: rerankers


def bench_rerank(args: argparse.Namespace, size: int, results: Results) -> None:
    corpus = corpus_folder(args, size)
    one = query_subset_folder(corpus, 1)
    many = query_subset_folder(corpus, args.rerank_queries) if args.rerank_queries < args.queries else corpus
    base = args.work / str(size)
    cache, runs, logs = base / "cache", base / "runs", base / "logs"
    for name, stage in RERANKERS.items():
        pipeline = [{"bm25": {"k": 100}}, stage]
        full = write_config(base / "configs" / f"{name}.yaml", f"scale-{name}-{size}", many, pipeline)
        single = write_config(base / "configs" / f"{name}-1q.yaml", f"scale-{name}-1q-{size}", one, pipeline)

        log(f"rerank {name} @{size_label(size)}: warm-up, one query (index, document store, model), untimed")
        run, manifest = cascade_run(args, single, cache, runs, logs / f"{name}-warm.log")
        results.add(
            point(
                "rerank-warmup",
                name,
                size,
                run,
                seconds=run["wall"],
                stages=stage_facts(manifest),
                note="one query, builds what is missing (index if absent, document store, trained model)",
            )
        )

        log(f"rerank {name} @{size_label(size)}: {args.rerank_queries} queries, stage-output cache empty")
        empty_output_cache(cache)
        run, manifest = cascade_run(args, full, cache, runs, logs / f"{name}.log")
        rr = manifest["stages"][-1]
        results.add(
            point(
                "rerank",
                name,
                size,
                run,
                seconds=run["wall"],
                throughput=args.rerank_queries / run["wall"],
                unit="q/s",
                mean_ms=manifest.get("ms_per_query"),
                stages=stage_facts(manifest),
                rerank_compute_s=rr.get("compute_seconds"),
                queries=args.rerank_queries,
                note=f"`cascade run` wall, {args.rerank_queries} queries (bm25 k=100 searched, top 100 reranked)",
            )
        )

        log(f"rerank {name} @{size_label(size)}: one query (process start to first reranked query)")
        empty_output_cache(cache)
        run, manifest = cascade_run(args, single, cache, runs, logs / f"{name}-1q.log")
        results.add(
            point(
                "rerank-first-query",
                name,
                size,
                run,
                seconds=run["wall"],
                stages=stage_facts(manifest),
                note="wall of a `cascade run` process for one query: start to its first reranked query",
            )
        )
    empty_output_cache(cache)


# --------------------------------------------------------------------------- part 3: encoders


def splade_sample_path(args: argparse.Namespace) -> Path:
    return args.work / "vectors" / f"splade-sample-{args.encode_sample}.npz"


def dense_queries_path(args: argparse.Namespace) -> Path:
    return args.work / "vectors" / f"minilm-queries-{args.queries}.npy"


def bench_encode(args: argparse.Namespace, results: Results) -> None:
    (args.work / "vectors").mkdir(parents=True, exist_ok=True)
    logs = args.work / "logs"
    for kind in ("dense", "sparse"):
        log(f"encode {kind}: {args.encode_sample:,} real MS MARCO passages")
        spec = {
            "kind": kind,
            "data_dir": str(args.data_dir),
            "n": args.encode_sample,
            "queries": str(corpus_folder(args, args.sizes[0]) / "queries.jsonl"),
            "result": str(args.work / f"encode-{kind}.json"),
            "save": str(splade_sample_path(args) if kind == "sparse" else dense_queries_path(args)),
        }
        enc, run = worker("encode", spec, logs / f"encode-{kind}.log")
        rate = enc["n"] / enc["encode_seconds"]
        bytes_per = DIM * 2 if kind == "dense" else enc["nnz_per_doc"] * 8  # float16 rows; int32 + float32 nonzeros
        results.add(
            point(
                "encode",
                "MiniLM-L6 (dense)" if kind == "dense" else "SPLADE tiny (sparse)",
                enc["n"],
                run,
                seconds=enc["encode_seconds"],
                throughput=rate,
                unit="passages/s",
                load_seconds=enc["load_seconds"],
                bytes_per_passage=bytes_per,
                nnz_per_doc=enc.get("nnz_per_doc"),
                nnz_per_query=enc.get("nnz_per_query"),
                precision=enc["precision"],
                note=f"cascade.indexes.{'dense' if kind == 'dense' else 'sparse_encoder'}.encode, "
                f"max_length 256, batch {64 if kind == 'dense' else 32}, {THREADS} threads; real passages",
            )
        )


def encode_worker(spec: dict) -> dict:
    """Encode `n` real passages (and the benchmark's queries) with cascade's encoder; save what later parts need."""
    import gzip

    import torch

    torch.set_num_threads(THREADS)
    texts = []
    with gzip.open(Path(spec["data_dir"]) / corpus_gen.SOURCE_CORPUS, "rt", encoding="utf-8") as handle:
        for line in handle:
            doc = json.loads(line)
            texts.append(f"{doc.get('title') or ''} {doc.get('text') or ''}".strip())
            if len(texts) == spec["n"]:
                break
    queries = [json.loads(line)["text"] for line in Path(spec["queries"]).read_text().splitlines() if line.strip()]
    started = time.perf_counter()
    if spec["kind"] == "dense":
        from cascade.indexes.dense import encode, load_encoder
        from cascade.indexes.models import resolve_model

        encoder = load_encoder(resolve_model("minilm-l6"), "cpu")
        loaded = time.perf_counter() - started
        encode(encoder, texts[:64], batch_size=64, max_length=256)  # warm-up
        t = time.perf_counter()
        vectors = encode(encoder, texts, batch_size=64, max_length=256)
        seconds = time.perf_counter() - t
        qvec = encode(encoder, queries, batch_size=64, max_length=64)
        np.save(spec["save"], qvec.astype(np.float32))
        out = {"dim": int(vectors.shape[1])}
        precision = str(encoder.dtype)
    else:
        from cascade.indexes.sparse_encoder import encode, load_sparse_encoder

        encoder = load_sparse_encoder("splade-tiny", "cpu")
        loaded = time.perf_counter() - started
        encode(encoder, texts[:64], max_length=256, batch_size=32)
        t = time.perf_counter()
        vectors = encode(encoder, texts, max_length=256, batch_size=32)
        seconds = time.perf_counter() - t
        qv = encode(encoder, queries, max_length=64, batch_size=32)
        nnz = np.diff(vectors.indptr).astype(np.int32)
        df = np.bincount(vectors.indices, minlength=vectors.dim).astype(np.int64)
        np.savez(
            spec["save"],
            nnz=nnz,
            df=df,
            weights=vectors.data.astype(np.float32),
            dim=np.int64(vectors.dim),
            q_indptr=qv.indptr,
            q_indices=qv.indices,
            q_data=qv.data,
        )
        out = {"nnz_per_doc": float(nnz.mean()), "nnz_per_query": float(np.diff(qv.indptr).mean()), "dim": vectors.dim}
        precision = str(getattr(encoder, "dtype", None))
    return {"n": len(texts), "load_seconds": loaded, "encode_seconds": seconds, "precision": precision, **out}


# --------------------------------------------------------------------------- part 4: vector indexes


def dense_vectors(args: argparse.Namespace, size: int) -> Path:
    """`size` x 384 normalised float32 Gaussian vectors in an .npy, seeded, written in chunks; reused."""
    path = args.work / "vectors" / f"dense-{size}.npy"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"generating {size:,} dense vectors")
    tmp = path.with_suffix(".tmp.npy")
    matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(size, DIM))
    chunk = 100_000
    for i, start in enumerate(range(0, size, chunk)):
        rng = np.random.default_rng([args.seed, 1, i])
        block = rng.standard_normal((min(chunk, size - start), DIM), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        matrix[start : start + len(block)] = block
    matrix.flush()
    del matrix
    os.replace(tmp, path)
    return path


def sparse_vectors(args: argparse.Namespace, size: int) -> Path:
    """CSR rows drawn from the SPLADE sample: nonzeros per row (its distribution), terms with probability
    proportional to their document frequency (distinct within a row), weights from its pooled weights."""
    folder = args.work / "vectors" / f"sparse-{size}"
    if (folder / "data.npy").exists():
        return folder
    sample = np.load(splade_sample_path(args))
    nnz_pool, df, weights = sample["nnz"], sample["df"], sample["weights"]
    dim = int(sample["dim"])
    cdf = np.cumsum(df / df.sum())
    cdf[-1] = 1.0
    log(f"generating {size:,} sparse vectors ({nnz_pool.mean():.0f} nonzeros per row on average)")
    chunk, lengths, indices, data = 50_000, [], [], []
    for i, start in enumerate(range(0, size, chunk)):
        rng = np.random.default_rng([args.seed, 2, i])
        count = min(chunk, size - start)
        want = nnz_pool[rng.integers(0, len(nnz_pool), size=count)].astype(np.int64)
        draws = (want * 3 // 2 + 8).astype(np.int64)  # drawn with replacement: room for repeats
        rows = np.repeat(np.arange(count, dtype=np.int64), draws)
        terms = np.minimum(np.searchsorted(cdf, rng.random(len(rows)), side="right"), dim - 1)
        keys = np.unique(rows * dim + terms)  # distinct (row, term), sorted
        rows, terms = keys // dim, keys % dim
        order = np.lexsort((rng.random(len(keys)), rows))  # random order within each row
        first = np.searchsorted(rows[order], np.arange(count))
        rank = np.arange(len(order)) - first[rows[order]]
        keep = np.sort(order[rank < want[rows[order]]])  # a random `want` of each row's terms, back in term order
        lengths.append(np.bincount(rows[keep], minlength=count))
        indices.append(terms[keep].astype(np.int32))
        data.append(weights[rng.integers(0, len(weights), size=len(keep))])
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=indptr[1:])
    np.save(tmp / "indptr.npy", indptr)
    np.save(tmp / "indices.npy", np.concatenate(indices))
    np.save(tmp / "data.npy", np.concatenate(data))
    (tmp / "meta.json").write_text(json.dumps({"dim": dim, "rows": size, "nnz": int(indptr[-1])}))
    os.replace(tmp, folder)
    return folder


def bench_faiss(args: argparse.Namespace, size: int, results: Results) -> None:
    vectors = dense_vectors(args, size)
    queries = dense_queries_path(args)
    for kind in ("flat", "hnsw"):
        if kind == "hnsw" and size > args.hnsw_max:
            log(f"faiss hnsw @{size_label(size)}: skipped (--hnsw-max {args.hnsw_max:,}); projected instead")
            continue
        log(f"faiss {kind} @{size_label(size)}: build, save, 200 queries one at a time (k=1000)")
        spec = {
            "vectors": str(vectors),
            "queries": str(queries) if queries.exists() else "",
            "kind": kind,
            "k": 1000,
            "seed": args.seed,
            "index": str(args.work / str(size) / f"faiss-{kind}.index"),
            "result": str(args.work / str(size) / f"faiss-{kind}.json"),
        }
        out, run = worker("faiss", spec, args.work / str(size) / "logs" / f"faiss-{kind}.log")
        results.add(
            point(
                "faiss-build",
                f"FAISS {kind}",
                size,
                run,
                seconds=out["build_seconds"],
                throughput=size / out["build_seconds"],
                unit="vectors/s",
                disk_mb=out["disk_bytes"] / 1e6,
                note=f"cascade.indexes.dense.build_faiss({kind}"
                + (f", M={HNSW_M}, efConstruction={EF_CONSTRUCTION}" if kind == "hnsw" else "")
                + f"), {THREADS} threads; random normalised vectors; peak RSS includes the mapped vectors",
            )
        )
        results.add(
            point(
                "faiss-search",
                f"FAISS {kind}",
                size,
                seconds=out["search_seconds"],
                throughput=out["queries"] / out["search_seconds"],
                unit="q/s",
                p50_ms=out["p50_ms"],
                p99_ms=out["p99_ms"],
                mean_ms=out["mean_ms"],
                load=run["load"],
                note=f"search_faiss one query at a time, k=1000, {THREADS} threads"
                + (f", efSearch=max({EF_SEARCH}, k)" if kind == "hnsw" else "")
                + f"; queries: {out['query_source']}",
            )
        )


def faiss_worker(spec: dict) -> dict:
    from cascade.indexes.dense import build_faiss, save_faiss, search_faiss

    vectors = np.load(spec["vectors"], mmap_mode="r")
    if spec["queries"]:
        queries, source = np.load(spec["queries"]).astype(np.float32), "MiniLM encodings of the real queries"
    else:
        rng = np.random.default_rng([spec["seed"], 3])
        queries = rng.standard_normal((200, DIM), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        source = "random normalised"
    started = time.perf_counter()
    index = build_faiss(vectors, spec["kind"], HNSW_M, EF_CONSTRUCTION, THREADS)
    build = time.perf_counter() - started
    path = Path(spec["index"])
    save_faiss(index, path)
    size = path.stat().st_size
    path.unlink()
    search_faiss(index, queries[:5], spec["k"], EF_SEARCH, THREADS)  # warm-up
    times = []
    t0 = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        search_faiss(index, q[None, :], spec["k"], EF_SEARCH, THREADS)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {
        "build_seconds": build,
        "disk_bytes": size,
        "search_seconds": total,
        "queries": len(queries),
        "query_source": source,
        **latency(times),
    }


def bench_seismic(args: argparse.Namespace, size: int, results: Results) -> None:
    if size > args.seismic_max:
        log(f"seismic @{size_label(size)}: skipped (--seismic-max {args.seismic_max:,}); projected instead")
        return
    if not splade_sample_path(args).exists():
        log("seismic needs the SPLADE sample's statistics: running the encode part first")
        bench_encode(args, Results(args.results))
    folder = sparse_vectors(args, size)
    log(f"seismic @{size_label(size)}: build, save, {args.queries} SPLADE queries one at a time (k=1000)")
    spec = {
        "vectors": str(folder),
        "sample": str(splade_sample_path(args)),
        "index": str(args.work / str(size) / "seismic-index"),
        "k": 1000,
        "result": str(args.work / str(size) / "seismic.json"),
    }
    out, run = worker("seismic", spec, args.work / str(size) / "logs" / "seismic.log")
    results.add(
        point(
            "seismic-build",
            "Seismic",
            size,
            run,
            seconds=out["build_seconds"],
            throughput=size / out["build_seconds"],
            unit="vectors/s",
            disk_mb=out["disk_bytes"] / 1e6,
            vectors_mb=disk_bytes(folder) / 1e6,
            nnz_per_doc=out["nnz_per_doc"],
            note="cascade.indexes.seismic.build_seismic, knobs "
            + ", ".join(f"{k}={v}" for k, v in SEISMIC_BUILD.items())
            + f", {THREADS} threads; generated SPLADE-like rows; peak RSS includes the loaded vectors",
        )
    )
    results.add(
        point(
            "seismic-search",
            "Seismic",
            size,
            seconds=out["search_seconds"],
            throughput=out["queries"] / out["search_seconds"],
            unit="q/s",
            p50_ms=out["p50_ms"],
            p99_ms=out["p99_ms"],
            mean_ms=out["mean_ms"],
            load=run["load"],
            note="search_one per query, k=1000, "
            + ", ".join(f"{k}={v}" for k, v in SEISMIC_SEARCH.items())
            + ", 1 thread; real SPLADE query vectors",
        )
    )
    if not args.keep:
        shutil.rmtree(spec["index"], ignore_errors=True)


def seismic_worker(spec: dict) -> dict:
    from cascade.indexes.seismic import build_seismic, open_seismic, search_one
    from cascade.indexes.sparse_vectors import SparseVectors

    folder = Path(spec["vectors"])
    meta = json.loads((folder / "meta.json").read_text())
    vectors = SparseVectors(
        np.load(folder / "indptr.npy"), np.load(folder / "indices.npy"), np.load(folder / "data.npy"), meta["dim"]
    )
    out = Path(spec["index"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    log_file = out.parent / "logs" / "seismic-build.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build_seismic(vectors, out, SEISMIC_BUILD, THREADS, log_file)
    build = time.perf_counter() - started
    size = disk_bytes(out)
    del vectors
    index = open_seismic(out, log_file)
    sample = np.load(spec["sample"])
    qp, qi, qd = sample["q_indptr"], sample["q_indices"], sample["q_data"]
    queries = [(qi[qp[i] : qp[i + 1]], qd[qp[i] : qp[i + 1]]) for i in range(len(qp) - 1)]
    knobs = {"k": spec["k"], **SEISMIC_SEARCH}
    for q in queries[:5]:
        search_one(index, q, knobs)
    times = []
    t0 = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        search_one(index, q, knobs)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {
        "build_seconds": build,
        "disk_bytes": size,
        "search_seconds": total,
        "queries": len(queries),
        "nnz_per_doc": meta["nnz"] / meta["rows"],
        **latency(times),
    }


def record_disk(args: argparse.Namespace, size: int, results: Results) -> None:
    """Disk of every artifact of one size that is still there (Anserini's and Seismic's indexes are measured, then
    deleted, unless --keep: their rows above carry their size)."""
    base, cache = args.work / str(size), args.work / str(size) / "cache"

    def largest(kind: str) -> Path | None:  # the cache also holds the sample's small index/store (CE training)
        folders = [p for p in (cache / kind).glob("*") if p.is_dir() and not p.name.startswith(".")]
        return max(folders, key=disk_bytes) if folders else None

    artifacts = {
        "corpus.jsonl": base / "corpus" / "corpus.jsonl",
        "cascade Lucene index": largest("lucene"),
        "cascade document store": largest("docstore"),
        "cross-encoder model (tiny training)": largest("models"),
        "dense vectors float32 (.npy)": args.work / "vectors" / f"dense-{size}.npy",
        "sparse vectors CSR (.npy)": args.work / "vectors" / f"sparse-{size}",
    }
    for name, path in artifacts.items():
        if path is not None and path.exists():
            results.add(point("disk", name, size, disk_mb=disk_bytes(path) / 1e6, note=str(path)))


# --------------------------------------------------------------------------- report


FIGURES = {  # (part, metric) -> label; each becomes one fitted growth line per system
    ("bm25-index", "seconds"): "BM25 index build, s",
    ("bm25-index", "peak_rss_mb"): "BM25 index build, peak RSS MB",
    ("bm25-index", "disk_mb"): "Lucene index on disk, MB",
    ("bm25-search", "seconds"): "BM25 search, all queries (batch), s",
    ("bm25-latency", "p50_ms"): "BM25 p50 ms/query",
    ("bm25-latency", "p99_ms"): "BM25 p99 ms/query",
    ("rerank", "peak_rss_mb"): "rerank run, peak RSS MB",
    ("rerank", "seconds"): "rerank run, process wall s",
    ("rerank-first-query", "seconds"): "start to first reranked query, s",
    ("rerank-first-query", "peak_rss_mb"): "one-query rerank process, peak RSS MB",
    ("faiss-build", "seconds"): "FAISS build, s",
    ("faiss-build", "peak_rss_mb"): "FAISS build, peak RSS MB",
    ("faiss-build", "disk_mb"): "FAISS index on disk, MB",
    ("faiss-search", "p50_ms"): "FAISS p50 ms/query",
    ("seismic-build", "seconds"): "Seismic build, s",
    ("seismic-build", "peak_rss_mb"): "Seismic build, peak RSS MB",
    ("seismic-build", "disk_mb"): "Seismic index on disk, MB",
    ("seismic-search", "p50_ms"): "Seismic p50 ms/query",
    ("disk", "disk_mb"): "on disk, MB",
}


def fits(points: list[dict]) -> list[dict]:
    """Per (figure, system): log-log least-squares slope over the measured sizes and its projections."""
    rows = []
    for (part, metric), label in FIGURES.items():
        systems = sorted({p["system"] for p in points if p["part"] == part})
        for system in systems:
            pts = sorted(
                (p["size"], p[metric]) for p in points if p["part"] == part and p["system"] == system and p.get(metric)
            )
            if len(pts) < 2:
                continue
            x, y = np.log([s for s, _ in pts]), np.log([v for _, v in pts])
            slope, intercept = np.polyfit(x, y, 1)
            projected = {n: float(np.exp(intercept + slope * np.log(n))) for n in PROJECT_AT}
            rows.append(
                {
                    "figure": label,
                    "part": part,
                    "metric": metric,
                    "system": system,
                    "slope": float(slope),
                    "sizes": [s for s, _ in pts],
                    "projected": projected,
                }
            )
    return rows


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def projected_text(metric: str, value: float) -> str:
    if metric == "seconds":
        return f"{value / 3600:,.2f} h"
    if metric in ("peak_rss_mb", "disk_mb"):
        return f"{value / 1000:,.1f} GB"
    return f"{value:,.1f} ms"


def encoder_projections(points: list[dict]) -> list[str]:
    rows = []
    for p in points:
        if p["part"] != "encode":
            continue
        cells = []
        for n in (100_000, 1_000_000, 3_000_000, *PROJECT_AT):
            cells.append(f"{n / p['throughput'] / 3600:,.1f} h / {n * p['bytes_per_passage'] / 1e9:,.1f} GB")
        rows.append(f"| {p['system']} | {p['throughput']:.0f} | {fmt(p['peak_rss_mb'])} | " + " | ".join(cells) + " |")
    return rows


def acceptance(points: list[dict]) -> list[str]:
    """The lead's targets: at the largest size, rerank peak RSS <= 1.25x and first-query time <= 1.5x of 100k."""
    rows = []
    for part, metric, limit, what in (
        ("rerank", "peak_rss_mb", 1.25, "peak RSS (many-query process)"),
        ("rerank-first-query", "peak_rss_mb", 1.25, "peak RSS (one-query process)"),
        ("rerank-first-query", "seconds", 1.5, "process start to first reranked query"),
    ):
        for system in sorted({p["system"] for p in points if p["part"] == part}):
            by = {p["size"]: p[metric] for p in points if p["part"] == part and p["system"] == system}
            if 100_000 not in by or len(by) < 2:
                continue
            top = max(by)
            ratio = by[top] / by[100_000]
            verdict = "PASS" if ratio <= limit else "FAIL"
            rows.append(
                f"| {system}: {what} | {fmt(by[100_000])} @100k -> {fmt(by[top])} @{size_label(top)} | "
                f"{ratio:.2f}x | <= {limit}x{' (target is at 3M)' if top != 3_000_000 else ''} | {verdict} |"
            )
    return rows


def render(points: list[dict], args: argparse.Namespace) -> str:
    order = {
        name: i
        for i, name in enumerate(
            [
                "bm25-index",
                "bm25-search",
                "bm25-latency",
                "rerank-warmup",
                "rerank",
                "rerank-first-query",
                "encode",
                "faiss-build",
                "faiss-search",
                "seismic-build",
                "seismic-search",
            ]
        )
    }
    points = sorted(points, key=lambda p: (order.get(p["part"], 99), p["system"], p["size"]))
    gen = {}
    for p in points:
        card = args.work / str(p["size"]) / "corpus" / "gen.json"
        if card.exists() and p["size"] not in gen:
            gen[p["size"]] = json.loads(card.read_text())
    lines = [
        "## Scale: 100k to millions of passages on this machine (issue 12)",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; machine: "
        f"{platform.platform()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; {THREADS} threads everywhere",
        f"- command: `{shlex.join(sys.orig_argv)}`; results file `{args.results}`",
        "- corpora: bench/corpus_gen.py (seed 42): MS MARCO-like generated passages, vocabulary and lengths learned "
        "from the 30k real ones"
        + (
            f" ({next(iter(gen.values()))['mean_words']} words each, {next(iter(gen.values()))['vocabulary']:,} "
            "distinct words)"
            if gen
            else ""
        )
        + "; queries: real dev-small queries; effectiveness is not measured",
        "- every row is its own fresh process; peak RSS is that process's maximum resident set (`os.wait4`); "
        "load = 1-minute load average before -> after (the measured work adds its own ~2)",
        "",
        "### Measured",
        "",
        "| part | system | size | seconds | throughput | peak RSS MB | disk MB | p50 ms | p99 ms | load | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for p in points:
        thr = f"{p['throughput']:,.1f} {p.get('unit', '')}" if p.get("throughput") else "–"
        ratio = f" **cascade/Anserini = {p['ratio_cascade']:.2f}x**;" if p.get("ratio_cascade") else ""
        load = "–" if not p.get("load") else f"{p['load'][0]:.1f} -> {p['load'][1]:.1f}"
        lines.append(
            f"| {p['part']} | {p['system']} | {size_label(p['size'])} | {fmt(p.get('seconds'), 2)} | {thr} | "
            f"{fmt(p.get('peak_rss_mb'))} | {fmt(p.get('disk_mb'))} | {fmt(p.get('p50_ms'), 2)} | "
            f"{fmt(p.get('p99_ms'), 2)} | {load} |{ratio} {p.get('note', '')} |"
        )
    stages = [p for p in points if p["part"] in ("rerank", "rerank-first-query", "bm25-index") and p.get("stages")]
    if stages:
        lines += ["", "Stage timings from the run manifests (prepare: index/model/store; compute: the queries):", ""]
        lines += [
            "| part | system | size | process wall s | stages (prepare s / compute s) |",
            "|---|---|---:|---:|---|",
        ]
        for p in stages:
            text = "; ".join(
                f"{s['stage']}{' (cached)' if s.get('cached') else ''}: {fmt(s.get('prepare_seconds'), 2)} / "
                f"{fmt(s.get('compute_seconds'), 2)}"
                for s in p["stages"]
            )
            lines.append(
                f"| {p['part']} | {p['system']} | {size_label(p['size'])} | {fmt(p.get('wall'), 2)} | {text} |"
            )
    rows = fits(points)
    lines += [
        "",
        "### Growth and projections (PROJECTED: power law fitted to the measured sizes, extrapolated)",
        "",
        "| figure | system | measured sizes | exponent | projected @8.8M | projected @138M |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        sizes = ", ".join(size_label(s) for s in r["sizes"])
        lines.append(
            f"| {r['figure']} | {r['system']} | {sizes} | {r['slope']:.2f} | "
            f"{projected_text(r['metric'], r['projected'][PROJECT_AT[0]])} | "
            f"{projected_text(r['metric'], r['projected'][PROJECT_AT[1]])} |"
        )
    enc = encoder_projections(points)
    if enc:
        lines += [
            "",
            "Encoding the whole corpus (PROJECTED from the sample's throughput: time grows linearly; disk = float16 "
            "vectors (dense) or int32 + float32 nonzeros (sparse), as cascade stores them):",
            "",
            "| encoder | passages/s | peak RSS MB (sample) | 100k | 1M | 3M | 8.8M (projected) | 138M (projected) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *enc,
        ]
    acc = acceptance(points)
    if acc:
        lines += [
            "",
            "### Targets (lead's acceptance figures)",
            "",
            "| check | measured | ratio | target | result |",
            "|---|---|---:|---|---|",
            *acc,
        ]
    lines += [
        "",
        "Notes: a projection assumes the growth measured between the sizes above continues and that the work fits "
        "this machine's 24 GiB; memory projections far beyond it say how much would be needed, not that it runs. "
        "HNSW and Seismic above their largest measured size are projections only. With few sizes, fixed costs (JVM "
        "and model start, thread pools) pull a time exponent below 1 and the projection low: indexing work itself "
        "grows at least linearly, so read a time exponent under 1 as a lower bound.",
        "",
    ]
    return "\n".join(lines)


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("seconds", "seconds"), ("peak_rss_mb", "peak RSS (MB)"), ("disk_mb", "disk (MB)")]
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    for ax, (metric, title) in zip(axes, panels, strict=True):
        for r in fits(points):
            if r["metric"] != metric:
                continue
            pts = sorted(
                (p["size"], p[metric])
                for p in points
                if p["part"] == r["part"] and p["system"] == r["system"] and p.get(metric)
            )
            (line,) = ax.plot(*zip(*pts, strict=True), "o-", label=f"{r['figure']} [{r['system']}] n^{r['slope']:.2f}")
            xs = [pts[-1][0], *PROJECT_AT]
            ax.plot(xs, [pts[-1][1], *(r["projected"][n] for n in PROJECT_AT)], "--", color=line.get_color(), alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("passages (dashed: projected)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle("cascade at scale (bench/scale.py): measured points, fitted power laws, projections to 8.8M/138M")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,3000000", help="comma-separated corpus sizes")
    parser.add_argument("--data-dir", type=Path, default=None, help="holds msmarco-passage/ (default CASCADE_DATA)")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "scale-data", help="corpora, caches")
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts to run, from {','.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10k passages, 20 queries, 1k encoded")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "scale", help="results, report, plot")
    parser.add_argument("--queries", type=int, default=200, help="real dev-small queries per corpus")
    parser.add_argument("--rerank-queries", type=int, default=None, help="queries per rerank run (default all)")
    parser.add_argument("--encode-sample", type=int, default=20_000, help="real passages encoded per encoder")
    parser.add_argument("--hnsw-max", type=int, default=1_000_000, help="largest size HNSW is built at")
    parser.add_argument("--seismic-max", type=int, default=1_000_000, help="largest size Seismic is built at")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reuse", action="store_true", help="skip points the results file already has")
    parser.add_argument("--keep", action="store_true", help="keep Anserini's index and the Seismic index")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report and plot")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return args
    args.data_dir = (args.data_dir or corpus_gen.default_data_dir()).resolve()
    if args.quick:
        args.sizes, args.queries, args.encode_sample = "10000", 20, 1000
        args.work, args.out = args.work / "quick", args.out / "quick"
    args.rerank_queries = min(args.rerank_queries or args.queries, args.queries)
    args.sizes = sorted(int(s) for s in str(args.sizes).split(","))
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.only) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    if not (args.data_dir / corpus_gen.SOURCE_CORPUS).is_file():
        parser.error(f"{args.data_dir / corpus_gen.SOURCE_CORPUS} not found: pass --data-dir")
    args.work, args.out = args.work.resolve(), args.out.resolve()
    args.results = args.out / "results.json"
    return args


WORKERS: dict[str, Callable[[dict], dict]] = {
    "latency": latency_worker,
    "encode": encode_worker,
    "faiss": faiss_worker,
    "seismic": seismic_worker,
}


def run_part(name: str, fn: Callable[[], None]) -> None:
    """A failed part is logged and the benchmark goes on: one broken measurement must not lose the others."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        log(f"FAILED {name}: {str(exc)[-2500:]}")


def main() -> None:
    args = parse_args()
    if args.worker:
        spec = json.loads(args.spec)
        result = WORKERS[args.worker](spec)
        Path(spec["result"]).write_text(json.dumps(result) + "\n")
        return
    results = Results(args.results)
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        log(f"sizes {', '.join(size_label(s) for s in args.sizes)}; parts {', '.join(args.only)}; work {args.work}")
        started = time.perf_counter()
        for size in args.sizes:
            corpus_folder(args, size)
            for part, fn, first in (
                ("bm25", bench_bm25, ("bm25-index", "cascade")),
                ("rerank", bench_rerank, ("rerank", "dense_rerank")),
            ):
                if part not in args.only or (args.reuse and results.has(*first, size)):
                    continue
                run_part(f"{part} @{size_label(size)}", lambda fn=fn, size=size: fn(args, size, results))
        if "encode" in args.only:
            run_part("encode", lambda: bench_encode(args, results))
        for size in args.sizes:
            if "faiss" in args.only:
                run_part(f"faiss @{size_label(size)}", lambda size=size: bench_faiss(args, size, results))
            if "seismic" in args.only:
                run_part(f"seismic @{size_label(size)}", lambda size=size: bench_seismic(args, size, results))
        log(f"done in {time.perf_counter() - started:.0f} s")
    for size in sorted({p["size"] for p in results.points if p["part"] != "encode"}):
        record_disk(args, size, results)
    report = render(results.points, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS-scale.md").write_text(report)
    try:
        plot(results.points, args.out / "scale.png")
    except Exception as exc:  # noqa: BLE001  (the report matters more than the picture)
        log(f"plot failed: {exc}")
    print(report)


if __name__ == "__main__":
    main()
