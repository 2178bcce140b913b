"""Corpora: JSONL and BEIR corpus readers (with the document-id check) and the BEIR folder writer."""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from cascade.core.atomic import atomic_file
from cascade.core.errors import CascadeError
from cascade.eval.textfiles import _SPACE, open_text, reading
from cascade.eval.topics import write_qrels_tsv


def write_beir_folder(
    folder: str | Path, docs: Iterable[dict], queries: pd.DataFrame, qrels: pd.DataFrame, split: str = "test"
) -> Path:
    """Write `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`: the layout `cascade.eval.datasets` reads."""
    folder = Path(folder)
    with atomic_file(folder / "corpus.jsonl") as handle:
        for doc in docs:
            record = {"_id": doc["docno"], "title": doc.get("title", ""), "text": doc["text"]}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    with atomic_file(folder / "queries.jsonl") as handle:
        for row in queries.to_dict("records"):
            record = {"_id": row["qid"], "text": row["query"]}
            if row.get("instruction"):
                record["instruction"] = row["instruction"]
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    write_qrels_tsv(qrels, folder / "qrels" / f"{split}.tsv")
    return folder


def iter_jsonl(path: str | Path, what: str = "JSON") -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line; a line that is not a JSON object names the file and line."""
    path = Path(path)
    with reading(path, what), open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CascadeError(f"not a {what} line ({exc.msg})", where=f"{path}:{number}") from None
            if not isinstance(obj, dict):
                raise CascadeError(f"a {what} line must be a JSON object", where=f"{path}:{number}")
            yield number, obj


CORPUS_FILES = ("corpus.jsonl", "corpus.jsonl.gz", "collection.tsv", "collection.tsv.gz", "corpus.tsv", "corpus.tsv.gz")


def iter_corpus(path: str | Path) -> Iterator[dict]:
    """Yield corpus documents as `{"docno", "title", "text"}` from a BEIR `corpus.jsonl[.gz]` or a TSV collection
    (`docno<TAB>text`, MS MARCO's `collection.tsv`, gzipped or not); the line number names a broken record.

    Document ids are checked here, so every stage sees the same refusal: an id that is empty, holds whitespace
    (a TREC run line would get more than six fields) or appears twice (a run would repeat a (qid, docno) pair).
    """
    path = Path(path)
    ids = DocIds(str(path))
    for number, docno, title, text in _records(path):
        yield {"docno": ids.check(docno, number), "title": title, "text": text}
    ids.finish(lambda: ((docno, number) for number, docno, _, _ in _records(path)))


def _records(path: Path) -> Iterator[tuple[int, str, str, str]]:
    """(line, raw id, title, text) of each record, in file order."""
    if path.name.endswith((".tsv", ".tsv.gz")):
        yield from _tsv_records(path)
        return
    for number, obj in iter_jsonl(path, "BEIR corpus"):
        if "_id" not in obj:
            raise CascadeError("not a BEIR corpus line (no '_id')", where=f"{path}:{number}")
        value = obj["_id"]
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise CascadeError(f"document id {value!r} is not a string", where=f"{path}:{number}")
        yield number, str(value), obj.get("title") or "", obj.get("text") or ""


def _tsv_records(path: Path) -> Iterator[tuple[int, str, str, str]]:
    with reading(path, "TSV collection"), open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n").removesuffix("\r")
            if not line.strip():
                continue
            docno, tab, text = line.partition("\t")
            if not tab:
                raise CascadeError("not a collection line (docno<TAB>text): no tab", where=f"{path}:{number}")
            yield number, docno, "", text


class DocIds:
    """The ids of one corpus, checked as they stream past: `check` refuses an empty id or one with whitespace at
    once; `finish`, at the end, refuses an id seen twice.

    Why not a dict of every id: at 8.8M passages that is about 1 GB. Each id leaves an 8-byte hash instead (70 MB),
    and only when two hashes meet is the corpus read again, to name the first repeated id and both its lines.
    `position` is the id's line in a file (`source:line`), or its ordinal in a corpus with no file (`lines=False`).
    """

    def __init__(self, source: str, lines: bool = True) -> None:
        self.source, self.lines = source, lines
        self.hashes = array("q")

    def _where(self, position: int) -> str:
        return f"{self.source}:{position}" if self.lines else f"{self.source} (document {position})"

    def check(self, docno: str, position: int) -> str:
        if not docno:
            raise CascadeError("empty document id", where=self._where(position))
        if _SPACE.search(docno):
            raise CascadeError(
                f"document id {docno!r} contains whitespace: a TREC run cannot hold it", where=self._where(position)
            )
        self.hashes.append(hash(docno))
        return docno

    def finish(self, rescan: Callable[[], Iterable[tuple[str, int]]]) -> None:
        """Refuse the first id that appears twice; `rescan` yields (id, position) again, in the same order."""
        import numpy as np

        hashes = np.frombuffer(self.hashes, dtype=np.int64)
        ordered = np.sort(hashes)
        repeated = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
        if not repeated:
            return
        first: dict[str, int] = {}
        for docno, position in rescan():
            if hash(docno) not in repeated:
                continue
            seen = first.setdefault(docno, position)
            if seen != position:
                what = "line" if self.lines else "document"
                raise CascadeError(
                    f"document id {docno!r} appears twice (first on {what} {seen})", where=self._where(position)
                )
