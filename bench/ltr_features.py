"""Lexical LTR feature extraction cost per feature group: ms per 1,000 (query, document) pairs.

Reads the official BM25 top-100 of DL19 (4,300 pairs) over the 30k MS MARCO passage index (built or reused from
the cache), times the one-off dump of the index's token streams, then each group of `cascade.indexes.lexical`
alone (after the shared per-query preparation, timed apart), best of `--repeats`.

    .venv/bin/python bench/ltr_features.py --data-dir ../shared/data [--repeats 3] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import load_average, replace_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cache", default=str(ROOT / ".cascade"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the table into this Markdown file")
    args = parser.parse_args()

    import numpy as np

    from cascade.core.paths import resolve_path
    from cascade.core.store import ArtifactStore
    from cascade.eval.datasets import load_dataset
    from cascade.eval.runs import read_run
    from cascade.indexes import lucene
    from cascade.indexes.lexical import FEATURES, GROUPS, TermStats, build_term_matrix
    from cascade.rankers import Context
    from cascade.rankers.lucene import lucene_index

    data = load_dataset("msmarco-passage/dl19", args.data_dir)
    ctx = Context(store=ArtifactStore(Path(args.cache)), corpus=data.corpus, progress=False)
    index = lucene_index(ctx)
    run = read_run(resolve_path("data:msmarco-passage/runs/dl19.bm25.trec.gz", args.data_dir, "run"))
    run = run[run["rank"] <= 100]
    texts = dict(zip(data.queries["qid"], data.queries["query"], strict=True))
    groups = [(qid, g["docno"].tolist()) for qid, g in run.groupby("qid", sort=False) if qid in texts]
    terms = dict(zip([q for q, _ in groups], lucene.analyze([texts[q] for q, _ in groups]), strict=True))
    pairs = sum(len(d) for _, d in groups)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        facts = build_term_matrix(index, Path(tmp), Path(tmp) / "log")
        dump = time.perf_counter() - started
        stats = TermStats.load(Path(tmp))

    def best(fn) -> float:
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times) * 1000 / pairs * 1000  # ms per 1,000 pairs

    prepared = {}

    def prepare() -> None:
        for qid, docnos in groups:
            unique = list(dict.fromkeys(terms[qid]))
            rows = np.asarray([stats.row[d] for d in docnos if d in stats.row])
            prepared[qid] = (stats.prepare(unique, rows), unique)

    load = load_average()
    rows = [("shared preparation (rows, tf block)", "-", best(prepare))]
    for name, group in GROUPS.items():
        cost = best(lambda name=name: [stats.group(name, q, u) for q, u in prepared.values()])
        rows.append((name, str(len(group)), cost))
    total = best(lambda: [stats.features(terms[q], d) for q, d in groups])
    rows.append((f"all {len(FEATURES)} features (`TermStats.features`)", str(len(FEATURES)), total))
    lines = [
        "## LTR lexical features",
        "",
        f"`python bench/ltr_features.py --data-dir DATA`: {pairs:,} (query, document) pairs (DL19 official BM25 "
        f"top-100), one thread, best of {args.repeats}; load average {load} before, {load_average()} after.",
        f"One-off token-stream dump of the index ({facts['documents']:,} documents, {facts['postings']:,} "
        f"postings): {dump:.1f} s.",
        "",
        "| group | features | ms / 1,000 pairs |",
        "|---|---:|---:|",
        *(f"| {name} | {n} | {cost:.1f} |" for name, n, cost in rows),
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        replace_section(args.out, "ltr_features", text)


if __name__ == "__main__":
    main()
