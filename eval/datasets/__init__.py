"""A registry of named datasets, loaded lazily (the ir_datasets idea): naming one reads nothing.

Three kinds of source:
- BEIR-format folders under the data dir (`--data-dir` or `CASCADE_DATA`);
- ir_datasets ids (`irds:<id>`), which download on first use; offline they fail with a one-line error;
- the built-in sample collection, shipped inside this package.

A dataset gives queries (`qid, query[, instruction]`), qrels (`qid, docno, label`) and a corpus handle whose
fingerprint content-addresses every index built from it.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cascade.core.digest import file_digest
from cascade.core.errors import CascadeError
from cascade.core.paths import resolve_data_dir
from cascade.eval.corpus import DocIds, iter_corpus
from cascade.eval.topics import check_queries, read_qrels, read_queries

SAMPLE_DIR = Path(__file__).parent / "sample"
QRELS_CHOICES = ("default", "official")


@dataclass
class Corpus:
    """A lazy corpus: `fingerprint` names its content, `docs()` streams `{"docno", "title", "text"}`."""

    name: str
    fingerprint_fn: Callable[[], str]
    docs_fn: Callable[[], Iterator[dict]]

    @functools.cached_property
    def fingerprint(self) -> str:
        return self.fingerprint_fn()

    def docs(self) -> Iterator[dict]:
        return self.docs_fn()

    @functools.cached_property
    def _texts(self) -> dict[str, str]:
        return {doc["docno"]: doc_text(doc) for doc in self.docs()}

    @functools.cached_property
    def size(self) -> int:
        """How many documents: the depth at which a first stage returns the whole corpus."""
        return len(self._texts)

    def text(self, docno: str) -> str:
        """A document's text (title and body) for rerankers; the corpus is read once per process."""
        try:
            return self._texts[docno]
        except KeyError:
            raise CascadeError(f"document '{docno}' is not in the corpus of '{self.name}'") from None

    def texts(self, docnos: Iterable[str]) -> list[str]:
        return [self.text(d) for d in docnos]


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


def file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return _file_fingerprint(path, stat.st_size, stat.st_mtime_ns)


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
    """A BEIR folder (`corpus.jsonl[.gz]`, `queries.jsonl`, `qrels/<split>.tsv`), or TREC-format qrels.

    The queries are those the qrels judge: unjudged topics would cost search time and count for nothing.
    """
    qrels_path = folder / qrels_file

    def qrels() -> pd.DataFrame:
        return read_qrels(qrels_path, label_scale)

    def queries() -> pd.DataFrame:
        table = read_queries(_first(folder, "queries.jsonl", "queries.jsonl.gz"))
        judged = set(read_qrels(qrels_path, label_scale)["qid"])
        return table[table["qid"].isin(judged)].reset_index(drop=True)

    corpus = None
    if any((folder / n).exists() for n in ("corpus.jsonl", "corpus.jsonl.gz")):
        corpus_path = _first(folder, "corpus.jsonl", "corpus.jsonl.gz")
        corpus = Corpus(name, lambda: file_fingerprint(corpus_path), lambda: iter_corpus(corpus_path))
    return Dataset(name, description, queries, qrels, corpus, qrels_name, {"folder": str(folder)})


class DownloadError(CascadeError):
    """Data that could not be downloaded (offline): what may do without it, e.g. snippets, goes on without it."""


# ir_datasets reports a failed download as ConnectionError, OSError or RuntimeError('All download sources failed').
_DOWNLOAD_ERRORS = (OSError, ConnectionError, RuntimeError)


def irds_dataset(irds_id: str) -> Dataset:
    """An ir_datasets id: real users download it on first use; offline, a one-line error says what to do."""
    import ir_datasets

    try:
        source = ir_datasets.load(irds_id)
    except KeyError:
        raise CascadeError(f"ir_datasets does not know the dataset '{irds_id}'") from None

    def offline(what: str, exc: Exception) -> CascadeError:
        url = re.search(r"https?://[^\s'\"()]+", str(exc))
        return DownloadError(
            f"dataset 'irds:{irds_id}' could not download its {what}"
            + (f" from {url.group(0)}" if url else f" ({type(exc).__name__})")
            + "; offline, put the data in a BEIR folder and use `dataset: {path: FOLDER}`, or a named dataset"
            " under --data-dir"
        )

    def fetch(what: str, make: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        # ir_datasets logs a warning per failed mirror; our own one-line error replaces them.
        logging.disable(logging.WARNING)
        try:
            return make()
        except _DOWNLOAD_ERRORS as exc:
            if isinstance(exc, RuntimeError) and "download" not in str(exc).lower():
                raise
            raise offline(what, exc) from None
        finally:
            logging.disable(logging.NOTSET)

    def queries() -> pd.DataFrame:
        rows = [
            {"qid": q.query_id, "query": getattr(q, "text", None) or getattr(q, "title", "")}
            for q in source.queries_iter()
        ]
        return check_queries(pd.DataFrame(rows, columns=["qid", "query"]), f"irds:{irds_id}")

    def qrels() -> pd.DataFrame:
        rows = [(q.query_id, q.doc_id, int(q.relevance)) for q in source.qrels_iter()]
        return pd.DataFrame(rows, columns=["qid", "docno", "label"]).drop_duplicates(["qid", "docno"])

    def docs() -> Iterator[dict]:
        ids = DocIds(f"irds:{irds_id}", lines=False)  # the same id checks as a corpus file's
        for number, doc in enumerate(source.docs_iter(), 1):
            docno = ids.check(str(doc.doc_id), number)
            yield {"docno": docno, "title": getattr(doc, "title", "") or "", "text": getattr(doc, "text", "")}

    def docs_checked() -> Iterator[dict]:
        try:
            yield from docs()
        except _DOWNLOAD_ERRORS as exc:
            if isinstance(exc, RuntimeError) and "download" not in str(exc).lower():
                raise
            raise offline("documents", exc) from None

    corpus = None
    if source.has_docs():
        corpus = Corpus(f"irds:{irds_id}", lambda: f"irds:{irds_id}:{ir_datasets.__version__}", docs_checked)
    return Dataset(
        f"irds:{irds_id}",
        f"ir_datasets {irds_id}",
        lambda: fetch("queries", queries),
        lambda: fetch("qrels", qrels),
        corpus,
    )


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
