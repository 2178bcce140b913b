"""The data model: queries, qrels and runs as pandas DataFrames with PyTerrier's column names.

- queries: `qid, query[, instruction]`
- qrels:   `qid, docno, label`
- runs:    `qid, docno, score, rank` (a stage may carry `query` and other columns along)

Readers validate as they parse and raise `CascadeError` naming the file and line, so bad input never reaches a
stage. Writers are atomic.

The readers and writers live in `textfiles` (opening, gzip, damaged-file errors), `runs`, `topics` (queries and
qrels) and `corpus` (JSONL, BEIR); this module is the data model's one public face and re-exports them all.
"""

from __future__ import annotations

from cascade.eval.corpus import DocIds, iter_corpus, iter_jsonl, write_beir_folder
from cascade.eval.runs import RUN_COLUMNS, format_run, normalise_run, read_run, write_run
from cascade.eval.textfiles import GZIP_MAGIC, check_text_file, damaged_file, open_text, reading
from cascade.eval.topics import (
    QRELS_COLUMNS,
    QUERY_COLUMNS,
    check_queries,
    read_qrels,
    read_queries,
    write_qrels,
    write_qrels_tsv,
)

__all__ = [
    "GZIP_MAGIC",
    "QRELS_COLUMNS",
    "QUERY_COLUMNS",
    "RUN_COLUMNS",
    "DocIds",
    "check_queries",
    "check_text_file",
    "damaged_file",
    "format_run",
    "iter_corpus",
    "iter_jsonl",
    "normalise_run",
    "open_text",
    "read_qrels",
    "read_queries",
    "read_run",
    "reading",
    "write_beir_folder",
    "write_qrels",
    "write_qrels_tsv",
    "write_run",
]
