"""Documents by docno, from disk: what every stage that reads texts (rerankers, training data, snippets) uses.

Why SQLite: measured on the 30k MS MARCO passages (11.0 MB of text), a `WITHOUT ROWID` table keyed by docno
builds in 0.06 s, takes 12.7 MB (1.15x the text) and returns a batch of 100 random passages at 2.8 us a passage;
LMDB returns them at 1.1 us but needs another compiled dependency and a map size fixed in advance, and the Lucene
index's stored raw field needs the JVM in every process that reranks (and a Lucene index for pipelines that have
none). A reranker spends milliseconds per passage in its model, so the lookup is not the cost; SQLite ships with
Python, is one file, and opens in microseconds whatever the corpus size, so a reranking process no longer grows
with the corpus it reads from.

An ir_datasets corpus uses its own `docs_store()` instead (`Corpus.native_store`): nothing is copied.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from cascade.core.digest import content_key
from cascade.core.errors import CascadeError
from cascade.core.progress import Progress
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import doc_text

DOCSTORE_VERSION = 1
FILE = "docs.sqlite"
_BATCH = 500  # docnos per SELECT ... IN (...): well under SQLite's bound on variables
_OPEN: dict[str, Any] = {}


class DocStore(Protocol):
    size: int

    def lookup(self, docnos: Iterable[str]) -> dict[str, tuple[str, str]]:
        """(title, body) of each docno the store has; the others are left out."""
        ...

    def texts(self, docnos: Iterable[str]) -> list[str]:
        """Title and body of each document (`doc_text`), in the order asked; a missing docno is an error."""
        ...


def texts_of(store: DocStore, docnos: Iterable[str], corpus: str) -> list[str]:
    wanted = [str(d) for d in docnos]
    found = store.lookup(wanted)
    if len(found) != len(set(wanted)):
        missing = next(d for d in wanted if d not in found)
        raise CascadeError(
            f"document '{missing}' is not in the corpus of '{corpus}' ({store.size:,} documents): the run names a "
            "document of another collection"
        )
    return [doc_text({"title": found[d][0], "text": found[d][1]}) for d in wanted]


class SqliteDocStore:
    """A read-only SQLite file of (docno, title, text); opened immutable: a content-addressed file never changes."""

    def __init__(self, path: Path, size: int, corpus: str) -> None:
        self.path, self.size, self.corpus = path, size, corpus
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        return self._db

    def lookup(self, docnos: Iterable[str]) -> dict[str, tuple[str, str]]:
        unique = list(dict.fromkeys(str(d) for d in docnos))
        found: dict[str, tuple[str, str]] = {}
        try:
            for start in range(0, len(unique), _BATCH):
                batch = unique[start : start + _BATCH]
                query = f"SELECT docno, title, text FROM docs WHERE docno IN ({','.join('?' * len(batch))})"
                found.update((d, (title, text)) for d, title, text in self._connection().execute(query, batch))
        except sqlite3.DatabaseError as exc:
            raise CascadeError(
                f"the document store is damaged ({exc}); remove its folder and run again", where=str(self.path)
            ) from None
        return found

    def texts(self, docnos: Iterable[str]) -> list[str]:
        return texts_of(self, docnos, self.corpus)


def build_sqlite(docs: Iterable[dict], out: Path, progress: bool = False, total: int | None = None) -> dict:
    """Write every document's text into `out/docs.sqlite`, in one transaction (no journal: the folder is a temp
    folder that only becomes the artifact once complete). Duplicate ids are left to the corpus reader, which
    refuses them by name and line once it has read the whole corpus."""
    started = time.perf_counter()
    db = sqlite3.connect(out / FILE)
    count = 0
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")  # 256 MB of page cache while inserting
        db.execute("CREATE TABLE docs(docno TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL) WITHOUT ROWID")
        with Progress("document store", total=total, unit="doc", enabled=progress) as bar:
            rows = ((doc["docno"], doc.get("title") or "", doc.get("text") or "") for doc in bar.track(docs))
            for chunk in _chunks(rows, 10_000):
                db.executemany("INSERT OR IGNORE INTO docs VALUES (?, ?, ?)", chunk)
        db.commit()
        count = db.total_changes
    finally:
        db.close()
    seconds = time.perf_counter() - started
    return {
        "documents": count,
        "bytes": (out / FILE).stat().st_size,
        "build_seconds": round(seconds, 3),
        "sqlite": sqlite3.sqlite_version,
    }


def _chunks(rows: Iterable[tuple], size: int) -> Iterable[list[tuple]]:
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def docstore(ctx: Any, stage: str = "corpus") -> DocStore:
    """The document store of the context's corpus (see `open_docstore`)."""
    return open_docstore(ctx.require_corpus(stage), ctx.store, ctx.progress or getattr(ctx, "log_progress", False))


def docstore_address(corpus: Any) -> tuple[dict, str]:
    made_from = {"corpus": corpus.fingerprint, "version": DOCSTORE_VERSION}
    return made_from, content_key(made_from)


def open_docstore(corpus: Any, store: ArtifactStore, progress: bool = False) -> DocStore:
    """The corpus's own store, or the SQLite file built once per corpus content; opened once per process."""
    if corpus.native_store is not None:
        key = f"native:{corpus.fingerprint}"
        if key not in _OPEN:
            _OPEN[key] = corpus.native_store()
        return _OPEN[key]
    made_from, key = docstore_address(corpus)
    folder, _ = store.get_or_build(
        "docstore", key, lambda tmp: build_sqlite(corpus.docs(), tmp, progress), {**made_from, "name": corpus.name}
    )
    path = str(folder / FILE)
    if path not in _OPEN:
        _OPEN[path] = SqliteDocStore(folder / FILE, int(store.card("docstore", key)["documents"]), corpus.name)
    return _OPEN[path]
