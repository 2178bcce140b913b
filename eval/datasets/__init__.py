"""A registry of named datasets, loaded lazily (the ir_datasets idea): naming one reads nothing.

Three kinds of source:
- BEIR-format folders under the data dir (`--data-dir` or `CASCADE_DATA`);
- ir_datasets ids (`irds:<id>`), which download on first use; offline they fail with a one-line error;
- the built-in sample collection, shipped inside this package.

A dataset gives queries (`qid, query[, instruction]`), qrels (`qid, docno, label`) and a corpus handle whose
fingerprint content-addresses every index built from it.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cascade.core.atomic import write_text
from cascade.core.digest import file_digest
from cascade.core.errors import CascadeError
from cascade.core.paths import resolve_data_dir
from cascade.eval.corpus import CORPUS_FILES, iter_corpus
from cascade.eval.topics import read_qrels, read_queries

SAMPLE_DIR = Path(__file__).parent / "sample"
QRELS_CHOICES = ("default", "official")
QUERY_FILES = ("queries.jsonl", "queries.jsonl.gz", "queries.tsv", "queries.tsv.gz")


@dataclass
class Corpus:
    """A lazy corpus: `fingerprint` names its content, `docs()` streams `{"docno", "title", "text"}`.

    Nothing here holds the texts: stages read them by docno from the corpus's document store
    (`cascade.indexes.docstore`), which is the corpus's own (`native_store`, ir_datasets' `docs_store()`) or one
    built once from `docs()`. `file`, when set, is the corpus file: its fingerprint is remembered on disk
    (`remember_in`) by its path, size, modification time and inode, so a 3 GB collection is hashed once, not by
    every process.
    """

    name: str
    fingerprint_fn: Callable[[], str]
    docs_fn: Callable[[], Iterator[dict]]
    native_store: Callable[[], Any] | None = None  # () -> a store of its own, with texts(docnos) and size
    count_fn: Callable[[], int] | None = None  # a count known without reading the documents
    file: Path | None = None
    memo: Path | None = field(default=None, compare=False)

    @functools.cached_property
    def fingerprint(self) -> str:
        if self.file is not None:
            return file_fingerprint(self.file, self.memo)
        return self.fingerprint_fn()

    def remember_in(self, folder: Path) -> None:
        """Where file fingerprints are remembered between processes (the artifact store's `fingerprints/`)."""
        self.memo = folder

    def docs(self) -> Iterator[dict]:
        return self.docs_fn()

    @functools.cached_property
    def size(self) -> int:
        """How many documents: the depth at which a first stage returns the whole corpus; counted by streaming
        (no text is kept) unless the source knows it. Stages with a context ask its document store instead."""
        known = self.count_fn() if self.count_fn is not None else None
        return known if known is not None else sum(1 for _ in self.docs())


def doc_text(doc: dict) -> str:
    """The text every neural stage sees: title, then body (BEIR's convention)."""
    return f"{doc['title']} {doc['text']}".strip() if doc.get("title") else doc["text"]


@dataclass
class Dataset:
    """Queries, qrels and corpus of one test collection; each part is read on first use."""

    name: str
    description: str
    queries_fn: Callable[[], pd.DataFrame]
    qrels_fn: Callable[[], pd.DataFrame]
    corpus: Corpus | None
    qrels_name: str = "default"
    info: dict = field(default_factory=dict)

    @functools.cached_property
    def qrels(self) -> pd.DataFrame:
        return self.qrels_fn()

    @functools.cached_property
    def queries(self) -> pd.DataFrame:
        return self.queries_fn()


@functools.cache
def _file_fingerprint(path: Path, size: int, mtime_ns: int) -> str:
    return f"sha256:{file_digest(path)}"


def file_fingerprint(path: Path, memo: Path | None = None) -> str:
    """The file's sha256, computed once per (path, size, mtime, inode): in this process, and in `memo` when given."""
    stat = path.stat()
    if memo is None:
        return _file_fingerprint(path, stat.st_size, stat.st_mtime_ns)
    identity = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}"
    remembered = memo / hashlib.sha256(identity.encode()).hexdigest()[:32]
    with contextlib.suppress(OSError, UnicodeDecodeError):
        value = remembered.read_text(encoding="utf-8")
        if value.startswith("sha256:") and len(value) == 71:
            return value
    value = _file_fingerprint(path, stat.st_size, stat.st_mtime_ns)
    with contextlib.suppress(OSError):  # a read-only cache only costs the next process the hash
        memo.mkdir(parents=True, exist_ok=True)
        write_text(remembered, value)
    return value


def _first(folder: Path, *names: str) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise CascadeError(f"none of {', '.join(names)} found", where=str(folder))


def beir_dataset(
    name: str,
    folder: Path,
    qrels_file: str,
    description: str,
    *,
    qrels_name: str = "default",
    label_scale: int | None = None,
) -> Dataset:
    """A BEIR folder (`corpus.jsonl[.gz]`, `queries.jsonl`, `qrels/<split>.tsv`), or TREC-format qrels; or an
    MS MARCO-style folder (`collection.tsv[.gz]`, `queries.tsv`, TREC qrels).

    The queries are those the qrels judge: unjudged topics would cost search time and count for nothing.
    """
    qrels_path = folder / qrels_file

    def qrels() -> pd.DataFrame:
        return read_qrels(qrels_path, label_scale)

    def queries() -> pd.DataFrame:
        table = read_queries(_first(folder, *QUERY_FILES))
        judged = set(read_qrels(qrels_path, label_scale)["qid"])
        return table[table["qid"].isin(judged)].reset_index(drop=True)

    corpus = None
    if any((folder / n).exists() for n in CORPUS_FILES):
        corpus_path = _first(folder, *CORPUS_FILES)
        corpus = Corpus(name, lambda: file_fingerprint(corpus_path), lambda: iter_corpus(corpus_path), file=corpus_path)
    return Dataset(name, description, queries, qrels, corpus, qrels_name, {"folder": str(folder)})


class DownloadError(CascadeError):
    """Data that could not be downloaded (offline): what may do without it, e.g. snippets, goes on without it."""


@dataclass(frozen=True)
class Entry:
    """One registered name: where its files live, relative to the data dir (None: inside the package)."""

    name: str
    folder: str | None
    qrels: str
    description: str
    official_qrels: str | None = None
    label_scale: int | None = None  # fractional grades become round(grade * scale) (see read_qrels)


# BIRCO's tasks: each query's qrels rows are its candidate pool, and every query carries its task's objective as
# `instruction`. The test split where the snapshot has it, else dev (DORIS-MAE's test split is absent).
BIRCO = [
    Entry("birco/arguana", "birco/arguana/test", "qrels/test.tsv", "BIRCO ArguAna: counter-arguments, 100 queries"),
    Entry(
        "birco/clinical-trial",
        "birco/clinical-trial/test",
        "qrels/test.tsv",
        "BIRCO Clinical-Trial: trials for a patient, 50 queries",
    ),
    Entry(
        "birco/doris-mae",
        "birco/doris-mae/dev",
        "qrels/dev.tsv",
        "BIRCO DORIS-MAE (dev): abstracts for research needs, 40 queries; fractional grades x1000",
        label_scale=1000,
    ),
    Entry("birco/relic", "birco/relic/test", "qrels/test.tsv", "BIRCO RELIC: literary quotations, 100 queries"),
    Entry("birco/wtb", "birco/wtb/test", "qrels/test.tsv", "BIRCO WhatsThatBook: books from vague memories, 100 q."),
]

REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in [
        Entry(
            "sample",
            None,
            "qrels/test.tsv",
            "built-in sample: 300+ passages written for cascade, graded qrels, negations, instructions",
        ),
        Entry(
            "msmarco-passage/dl19",
            "msmarco-passage",
            "qrels/dl19.tsv",
            "TREC DL 2019 passage, 43 queries, over the 30k-passage pool corpus (qrels filtered to it)",
            "raw/qrels.dl19-passage.txt",
        ),
        Entry(
            "msmarco-passage/dl20",
            "msmarco-passage",
            "qrels/dl20.tsv",
            "TREC DL 2020 passage, 54 queries, over the 30k-passage pool corpus (qrels filtered to it)",
            "raw/qrels.dl20-passage.txt",
        ),
        Entry(
            "msmarco-passage/dev-small",
            "msmarco-passage",
            "qrels/dev-small-1743.tsv",
            "MS MARCO dev-small queries with a relevant passage in the 30k corpus",
            "raw/qrels.msmarco-passage.dev-subset.txt",
        ),
        Entry("beir/scifact", "beir-scifact", "qrels/test.tsv", "BEIR SciFact test, 300 queries, 5,183 abstracts"),
        Entry("cranfield", "cranfield", "qrels/test.tsv", "Cranfield, 225 queries, 1,400 abstracts"),
        Entry("cisi", "cisi", "qrels/test.tsv", "CISI, 76 judged queries, 1,460 documents"),
        Entry("vaswani", "vaswani", "qrels/test.tsv", "Vaswani (NPL), 93 queries, 11,429 abstracts"),
        Entry("nevir", "nevir/beir", "qrels/test.tsv", "NevIR negation pairs as a retrieval task (BEIR view)"),
        Entry("noveleval", "noveleval-2306", "qrels/test.tsv", "NovelEval 2306, 21 queries x 20 candidates"),
        *BIRCO,
    ]
}


def load_dataset(name: str, data_dir: str | Path | None = None, qrels: str = "default") -> Dataset:
    """Resolve a dataset name lazily; unknown names and missing folders are one-line errors."""
    if qrels not in QRELS_CHOICES:
        raise CascadeError(f"qrels must be one of {', '.join(QRELS_CHOICES)}, not {qrels!r}")
    if name.startswith("irds:"):
        if qrels != "default":
            raise CascadeError("qrels: official applies to the data-dir datasets, not ir_datasets ids")
        from cascade.eval.datasets.irds import irds_dataset

        return irds_dataset(name.removeprefix("irds:"))
    entry = REGISTRY.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "; `cascade datasets` lists them"
        raise CascadeError(f"unknown dataset '{name}'{hint}")
    qrels_file = entry.qrels
    if qrels == "official":
        if entry.official_qrels is None:
            raise CascadeError(f"dataset '{name}' has no official qrels besides its default ones")
        qrels_file = entry.official_qrels
    if entry.folder is None:
        folder = SAMPLE_DIR
    else:
        root = resolve_data_dir(data_dir)
        if root is None:
            raise CascadeError(f"dataset '{name}' reads the data dir: pass --data-dir or set CASCADE_DATA")
        folder = root / entry.folder
        if not folder.is_dir():
            raise CascadeError(f"dataset '{name}' expects the folder '{folder}' in the data dir")
    return beir_dataset(name, folder, qrels_file, entry.description, qrels_name=qrels, label_scale=entry.label_scale)


def load_folder(path: str | Path, qrels_file: str = "qrels/test.tsv") -> Dataset:
    """Any BEIR-format folder the user points at."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CascadeError(f"dataset folder '{folder}' does not exist")
    return beir_dataset(f"folder:{folder.name}", folder.resolve(), qrels_file, f"BEIR folder {folder}")


def availability(data_dir: str | Path | None = None) -> list[tuple[str, bool, str]]:
    """(name, available here, description or why not) for every registered dataset."""
    rows = []
    try:
        root = resolve_data_dir(data_dir)
    except CascadeError:
        root = None
    for entry in REGISTRY.values():
        if entry.folder is None:
            rows.append((entry.name, True, entry.description))
        elif root is None:
            rows.append((entry.name, False, "needs --data-dir or CASCADE_DATA"))
        elif not (root / entry.folder / entry.qrels).exists():
            rows.append((entry.name, False, f"missing {root / entry.folder / entry.qrels}"))
        else:
            rows.append((entry.name, True, entry.description))
    rows.append(("irds:<id>", False, "any ir_datasets id; downloads on first use (offline: not available)"))
    return rows
