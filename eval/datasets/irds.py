"""ir_datasets ids (`irds:<id>`): real users download on first use; offline, a one-line error says what to do.

Datasets that share documents (DL19, DL20 and dev over msmarco-passage) share one corpus: its name and
fingerprint come from ir_datasets' `docs_parent_id`. Texts are read through ir_datasets' own `docs_store()`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pandas as pd

from cascade.core.errors import CascadeError
from cascade.eval.corpus import DocIds
from cascade.eval.datasets import Corpus, Dataset, DownloadError, doc_text
from cascade.eval.topics import check_queries

# ir_datasets reports a failed download as ConnectionError, OSError or RuntimeError('All download sources failed').
_DOWNLOAD_ERRORS = (OSError, ConnectionError, RuntimeError)


def _irds_doc(doc: Any) -> dict:
    return {"docno": str(doc.doc_id), "title": getattr(doc, "title", "") or "", "text": getattr(doc, "text", "") or ""}


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
            yield {**_irds_doc(doc), "docno": docno}
        ids.finish(lambda: ((str(doc.doc_id), n) for n, doc in enumerate(source.docs_iter(), 1)))

    def docs_checked() -> Iterator[dict]:
        try:
            yield from docs()
        except _DOWNLOAD_ERRORS as exc:
            if isinstance(exc, RuntimeError) and "download" not in str(exc).lower():
                raise
            raise offline("documents", exc) from None

    class NativeStore:
        """ir_datasets' own random access to documents (its `docs_store()`): nothing is copied."""

        def __init__(self) -> None:
            self.store = source.docs_store()
            self.size = source.docs_count()

        def lookup(self, docnos: Iterable[str]) -> dict[str, tuple[str, str]]:
            logging.disable(logging.WARNING)
            try:
                found = self.store.get_many(list(docnos))
            except _DOWNLOAD_ERRORS as exc:
                if isinstance(exc, RuntimeError) and "download" not in str(exc).lower():
                    raise
                raise offline("documents", exc) from None
            finally:
                logging.disable(logging.NOTSET)
            return {d: (doc["title"], doc["text"]) for d, doc in ((d, _irds_doc(v)) for d, v in found.items())}

        def texts(self, docnos: Iterable[str]) -> list[str]:
            wanted = [str(d) for d in docnos]
            found = self.lookup(wanted)
            missing = next((d for d in wanted if d not in found), None)
            if missing is not None:
                raise CascadeError(f"document '{missing}' is not in the corpus of 'irds:{irds_id}'")
            return [doc_text({"title": found[d][0], "text": found[d][1]}) for d in wanted]

    corpus = None
    if source.has_docs():
        # One corpus, one index: DL19, DL20 and dev share msmarco-passage's documents (docs_parent_id), so they
        # share its fingerprint, and with it every index and embedding built from it.
        parent = ir_datasets.docs_parent_id(irds_id)
        corpus = Corpus(
            f"irds:{parent}",
            lambda: f"irds:{parent}:{ir_datasets.__version__}",
            docs_checked,
            native_store=NativeStore,
            count_fn=source.docs_count,
        )
    return Dataset(
        f"irds:{irds_id}",
        f"ir_datasets {irds_id}",
        lambda: fetch("queries", queries),
        lambda: fetch("qrels", qrels),
        corpus,
    )
