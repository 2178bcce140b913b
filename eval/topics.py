"""Queries (`qid, query[, instruction]`) and qrels (`qid, docno, label`): their readers, checks and writers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.core.atomic import atomic_file
from cascade.core.errors import CascadeError
from cascade.eval.textfiles import (
    _SPACE,
    _line_of_row,
    _numeric,
    _read_whitespace_table,
    check_text_file,
    open_text,
    reading,
)

QUERY_COLUMNS = ["qid", "query"]
QRELS_COLUMNS = ["qid", "docno", "label"]


def read_qrels(path: str | Path, label_scale: int | None = None) -> pd.DataFrame:
    """Read TREC qrels (`qid iter docno label`) or a BEIR qrels TSV (header `query-id corpus-id score`).

    Repeated identical judgments are merged; the same (qid, docno) with two different labels is an error,
    because no measure can be trusted on such a file. `label_scale` reads fractional grades (BIRCO's DORIS-MAE)
    as `round(grade * scale)`: ir_measures needs integer grades, and nDCG is unchanged by scaling every gain.
    """
    path = Path(path)
    check_text_file(path, "qrels")
    with reading(path, "qrels"):
        return _read_qrels(path, label_scale)


def _read_qrels(path: Path, label_scale: int | None) -> pd.DataFrame:
    with open_text(path) as handle:
        first = handle.readline().split()
    header = bool(first) and first[0] in {"query-id", "query_id", "qid"}
    if header or len(first) == 3:
        table = _read_tsv_qrels(path, header)
        qid, docno, label, offset = table[0], table[1], 2, (1 if header else 0)
    else:
        table = _read_whitespace_table(path, 4, "TREC qrels")
        qid, docno, label, offset = table[0], table[2], 3, 0
    qrels = pd.DataFrame({"qid": qid.astype(str), "docno": docno.astype(str)})
    if label_scale is None:
        qrels["label"] = _numeric(table, label, path, "label", integer=True, offset=offset)
    else:
        qrels["label"] = np.rint(_numeric(table, label, path, "label", offset=offset) * label_scale).astype("int64")
    dup = qrels.duplicated(["qid", "docno"], keep=False)
    if dup.any():
        same = qrels[dup].groupby(["qid", "docno"])["label"].nunique()
        conflicts = same[same > 1]
        if len(conflicts):
            q, d = conflicts.index[0]
            rows = np.flatnonzero(((qrels.qid == q) & (qrels.docno == d)).to_numpy())
            labels = qrels.label.iloc[rows].tolist()
            raise CascadeError(
                f"conflicting judgments for query {q!r}, document {d!r}: labels {labels}",
                where=f"{path}:{_line_of_row(path, int(rows[1]) + offset)}",
            )
        qrels = qrels.drop_duplicates(["qid", "docno"]).reset_index(drop=True)
    return qrels


def _read_tsv_qrels(path: Path, header: bool) -> pd.DataFrame:
    try:
        table = pd.read_csv(
            path,
            sep="\t",
            header=None,
            skiprows=1 if header else 0,
            names=[0, 1, 2],
            dtype=str,
            quoting=3,
            keep_default_na=False,
            na_values=[""],
        )
    except pd.errors.ParserError as exc:
        raise CascadeError(f"not a qrels TSV file: {str(exc).strip()}", where=str(path)) from None
    short = table[2].isna()
    if short.any():
        row = int(np.flatnonzero(short.to_numpy())[0]) + (1 if header else 0)
        raise CascadeError(
            "expected 3 tab-separated columns in a qrels line", where=f"{path}:{_line_of_row(path, row)}"
        )
    return table


def write_qrels(qrels: pd.DataFrame, path: str | Path) -> None:
    with atomic_file(path) as handle:
        for qid, docno, label in qrels[QRELS_COLUMNS].itertuples(index=False):
            handle.write(f"{qid} 0 {docno} {int(label)}\n")


def write_qrels_tsv(qrels: pd.DataFrame, path: str | Path) -> None:
    """BEIR's qrels TSV, with its header."""
    with atomic_file(path) as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid, docno, label in qrels[QRELS_COLUMNS].itertuples(index=False):
            handle.write(f"{qid}\t{docno}\t{int(label)}\n")


def check_queries(queries: pd.DataFrame, source: str, lines: list[int] | None = None) -> pd.DataFrame:
    """Refuse empty queries, empty or spaced qids and repeated qids; `lines` maps rows to file lines."""
    qids = queries["qid"].astype(str)
    spaced = (qids == "") | qids.str.contains(_SPACE)
    if spaced.any():
        row = int(np.flatnonzero(spaced.to_numpy())[0])
        where = f"{source}:{lines[row]}" if lines else source
        problem = "is empty" if qids.iloc[row] == "" else "contains whitespace"
        raise CascadeError(f"query id {qids.iloc[row]!r} {problem}: a TREC run cannot hold it", where=where)
    empty = queries["query"].fillna("").astype(str).str.strip() == ""
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        where = f"{source}:{lines[row]}" if lines else source
        raise CascadeError(f"query {queries.qid.iloc[row]!r} is empty", where=where)
    dup = queries["qid"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        where = f"{source}:{lines[row]}" if lines else source
        raise CascadeError(f"query id {queries.qid.iloc[row]!r} appears twice", where=where)
    return queries


def read_queries(path: str | Path) -> pd.DataFrame:
    """Read BEIR `queries.jsonl` (`_id`, `text`[, `instruction`]) or a TREC topics TSV (`qid<TAB>query`)."""
    path = Path(path)
    rows, lines = [], []
    with reading(path, "queries"), open_text(path) as handle:
        jsonl = path.name.endswith((".jsonl", ".jsonl.gz"))
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if jsonl:
                try:
                    obj = json.loads(line)
                    row = {"qid": str(obj["_id"]), "query": obj.get("text", "")}
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise CascadeError(f"not a BEIR query line ({exc})", where=f"{path}:{number}") from None
                if obj.get("instruction"):
                    row["instruction"] = obj["instruction"]
            else:
                qid, _, text = line.rstrip("\n").partition("\t")
                row = {"qid": qid.strip(), "query": text}
            rows.append(row)
            lines.append(number)
    queries = pd.DataFrame(rows, columns=_query_columns(rows))
    if "instruction" in queries:
        queries["instruction"] = queries["instruction"].fillna("").astype(str)
    return check_queries(queries, str(path), lines)


def _query_columns(rows: list[dict]) -> list[str]:
    return QUERY_COLUMNS + (["instruction"] if any("instruction" in r for r in rows) else [])
