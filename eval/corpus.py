"""Corpora: JSONL and BEIR corpus readers (with the document-id check) and the BEIR folder writer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
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


def iter_corpus(path: str | Path) -> Iterator[dict]:
    """Yield BEIR corpus documents as `{"docno", "title", "text"}`; the line number names a broken record.

    Document ids are checked here, so every stage sees the same refusal: an id that is empty, holds whitespace
    (a TREC run line would get more than six fields) or appears twice (a run would repeat a (qid, docno) pair).
    """
    ids = DocIds(str(path))
    for number, obj in iter_jsonl(path, "BEIR corpus"):
        if "_id" not in obj:
            raise CascadeError("not a BEIR corpus line (no '_id')", where=f"{path}:{number}")
        value = obj["_id"]
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise CascadeError(f"document id {value!r} is not a string", where=f"{path}:{number}")
        docno = ids.check(str(value), number)
        yield {"docno": docno, "title": obj.get("title") or "", "text": obj.get("text") or ""}


class DocIds:
    """The ids of one corpus seen so far; `check` refuses an empty id, one with whitespace, or one seen before.

    `position` is the id's line in a file (`source:line`), or its ordinal in a corpus with no file (`lines=False`).
    """

    def __init__(self, source: str, lines: bool = True) -> None:
        self.source, self.lines = source, lines
        self.seen: dict[str, int] = {}

    def _where(self, position: int) -> str:
        return f"{self.source}:{position}" if self.lines else f"{self.source} (document {position})"

    def check(self, docno: str, position: int) -> str:
        if not docno:
            raise CascadeError("empty document id", where=self._where(position))
        if _SPACE.search(docno):
            raise CascadeError(
                f"document id {docno!r} contains whitespace: a TREC run cannot hold it", where=self._where(position)
            )
        first = self.seen.setdefault(docno, position)
        if first != position:
            what = "line" if self.lines else "document"
            raise CascadeError(
                f"document id {docno!r} appears twice (first on {what} {first})", where=self._where(position)
            )
        return docno
