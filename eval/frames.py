"""The data model: queries, qrels and runs as pandas DataFrames with PyTerrier's column names.

- queries: `qid, query[, instruction]`
- qrels:   `qid, docno, label`
- runs:    `qid, docno, score, rank` (a stage may carry `query` and other columns along)

Readers validate as they parse and raise `CascadeError` naming the file and line, so bad input never reaches a
stage. Writers are atomic.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.core.atomic import atomic_file
from cascade.core.errors import CascadeError

QUERY_COLUMNS = ["qid", "query"]
QRELS_COLUMNS = ["qid", "docno", "label"]
RUN_COLUMNS = ["qid", "docno", "score", "rank"]


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a text file, transparently gunzipping `.gz`."""
    path = Path(path)
    if not path.exists():
        raise CascadeError("file not found", where=str(path))
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


GZIP_MAGIC = b"\x1f\x8b"
_SPACE = re.compile(r"\s")


@contextlib.contextmanager
def reading(path: str | Path, what: str = "text") -> Iterator[None]:
    """Turn what a damaged file raises while being read (bad UTF-8, broken gzip, binary data, an unreadable
    file) into one CascadeError naming the file, and the line where there is one. Readers wrap their parsing."""
    try:
        yield
    except CascadeError:
        raise
    except (UnicodeDecodeError, EOFError, zlib.error, OSError) as exc:
        raise damaged_file(Path(path), what, exc) from None


def damaged_file(path: Path, what: str, exc: BaseException | None = None) -> CascadeError:
    """Why `path` cannot be read as text: one pass over its bytes finds the broken gzip stream or the first
    line that is not UTF-8 (or holds a NUL byte: binary data); `exc` is the fallback when the bytes look fine."""
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
    except OSError as error:
        return CascadeError(f"cannot read the {what} file ({error.strerror or error})", where=str(path))
    gz = path.suffix == ".gz"
    if gz and magic != GZIP_MAGIC:
        return CascadeError(f"named .gz but not gzip-compressed; not a {what} file", where=str(path))
    if not gz and magic == GZIP_MAGIC:
        return CascadeError(f"gzip-compressed, but its name does not end in .gz; not a {what} file", where=str(path))
    number = 0
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if b"\x00" in line:
                    return CascadeError(f"binary data (a NUL byte), not a {what} file", where=f"{path}:{number}")
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as bad:
                    byte = line[bad.start : bad.start + 1].hex()
                    return CascadeError(
                        f"not UTF-8 text (byte 0x{byte} at column {bad.start + 1}); not a {what} file",
                        where=f"{path}:{number}",
                    )
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        reason = "truncated" if isinstance(error, EOFError) else "corrupt"
        after = f" after line {number}" if number else ""
        return CascadeError(f"{reason} gzip data{after}; not a {what} file", where=str(path))
    except OSError as error:
        return CascadeError(f"cannot read the {what} file ({error.strerror or error})", where=str(path))
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"
    return CascadeError(f"cannot read the {what} file ({detail.splitlines()[0]})", where=str(path))


def check_text_file(path: Path, what: str, size: int = 1 << 16) -> None:
    """Refuse at once a file whose first bytes are binary, or not what its name says (gzip or plain)."""
    if not path.is_file():
        raise CascadeError("file not found" if not path.exists() else "not a file", where=str(path))
    with reading(path, what), open(path, "rb") as raw:
        head = raw.read(size)
    gz = path.suffix == ".gz"
    if (head[:2] == GZIP_MAGIC) != gz:
        raise damaged_file(path, what)
    if gz:
        with reading(path, what), gzip.open(path, "rb") as handle:
            head = handle.read(size)
    if b"\x00" in head:
        raise damaged_file(path, what)


def _line_of_row(path: Path, row: int) -> int:
    """1-based line number of the `row`-th non-blank line: pandas skips blank lines, error messages must not."""
    with open_text(path) as handle:
        seen = -1
        for number, line in enumerate(handle, 1):
            if line.strip():
                seen += 1
                if seen == row:
                    return number
    return row + 1


def _read_whitespace_table(path: Path, ncols: int, what: str) -> pd.DataFrame:
    try:
        table = pd.read_csv(
            path,
            sep=r"\s+",
            header=None,
            names=list(range(ncols)),
            dtype=str,
            engine="c",
            compression="infer",
            quoting=3,
            na_filter=True,
            keep_default_na=False,
            na_values=[""],
        )
    except pd.errors.ParserError as exc:
        raise CascadeError(f"not a {what} file: {str(exc).strip()}", where=str(path)) from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame({i: pd.Series(dtype=str) for i in range(ncols)})
    short = table[ncols - 1].isna()
    if short.any():
        row = int(np.flatnonzero(short.to_numpy())[0])
        fields = int(table.iloc[row].notna().sum())
        raise CascadeError(
            f"expected {ncols} columns in a {what} line, found {fields}", where=f"{path}:{_line_of_row(path, row)}"
        )
    return table


def _numeric(table: pd.DataFrame, col: int, path: Path, name: str, integer: bool = False, offset: int = 0) -> pd.Series:
    """Column `col` as numbers; `offset` counts the lines before the table's first row (a header)."""
    values = pd.to_numeric(table[col], errors="coerce")
    bad = values.isna() | (~np.isfinite(values)) if not integer else values.isna() | (values % 1 != 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CascadeError(
            f"{name} {table[col].iloc[row]!r} is not {'an integer' if integer else 'a number'}",
            where=f"{path}:{_line_of_row(path, row + offset)}",
        )
    return values.astype("int64") if integer else values.astype("float64")


def read_run(path: str | Path) -> pd.DataFrame:
    """Read a TREC run (`qid Q0 docno rank score tag`), sorted by qid then score, ranks renumbered from 1.

    Ranks are recomputed from the scores (ties keep the file's order), because trec_eval and ir_measures ignore
    the rank column, and so must anything that compares runs.
    """
    path = Path(path)
    check_text_file(path, "TREC run")
    with reading(path, "TREC run"):
        run = _read_run_fast(path)
        if run is None:
            table = _read_whitespace_table(path, 6, "TREC run")
            run = pd.DataFrame(
                {
                    "qid": table[0].astype(str),
                    "docno": table[2].astype(str),
                    "score": _numeric(table, 4, path, "score"),
                    "rank": _numeric(table, 3, path, "rank", integer=True),
                }
            )
        dup = _pair_codes(run).duplicated()
        if dup.any():
            row = int(np.flatnonzero(dup.to_numpy())[0])
            raise CascadeError(
                f"document {run.docno.iloc[row]!r} appears twice for query {run.qid.iloc[row]!r}",
                where=f"{path}:{_line_of_row(path, row)}",
            )
    return normalise_run(run)


def _read_run_fast(path: Path) -> pd.DataFrame | None:
    """Parse a well-formed, single-space separated run with Arrow (5x pandas on millions of lines).

    Returns None on anything unusual (tabs, short lines, bad numbers); the slow path then finds the line.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = ["qid", "q0", "docno", "rank", "score", "tag"]
    types = {
        "qid": pa.string(),
        "q0": pa.string(),
        "docno": pa.string(),
        "rank": pa.int64(),
        "score": pa.float64(),
        "tag": pa.string(),
    }
    try:
        table = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=names),
            parse_options=pcsv.ParseOptions(delimiter=" ", quote_char=False),
            convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        return None
    if table.num_rows == 0 or table["score"].null_count or table["rank"].null_count:
        return None
    frame = table.select(["qid", "docno", "score", "rank"]).to_pandas()
    if not np.isfinite(frame["score"].to_numpy()).all():
        return None
    return frame


def _pair_codes(run: pd.DataFrame) -> pd.Series:
    """One int64 per (qid, docno): duplicate checks on strings were 15x slower on a 7M-line run."""
    q, _ = pd.factorize(run["qid"])
    d, docs = pd.factorize(run["docno"])
    return pd.Series(q.astype("int64") * max(len(docs), 1) + d)


def normalise_run(run: pd.DataFrame) -> pd.DataFrame:
    """Sort by (qid in first-seen order, score desc, original order) and renumber ranks 1..n per query."""
    if run.empty:
        return run.assign(rank=pd.Series(dtype="int64")).reset_index(drop=True)
    codes = pd.factorize(run["qid"])[0]
    scores = run["score"].to_numpy(dtype="float64")
    same_q = codes[1:] == codes[:-1]
    ordered = np.all(codes[1:] >= codes[:-1]) and not np.any(same_q & (scores[1:] > scores[:-1]))
    if not ordered:
        order = np.lexsort((np.arange(len(run)), -scores, codes))
        run = run.iloc[order]
        codes = codes[order]
    run = run.reset_index(drop=True)
    starts = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(codes)])
    run["rank"] = (np.arange(len(codes)) - np.repeat(starts, sizes) + 1).astype("int64")
    return run


def format_run(run: pd.DataFrame, tag: str = "cascade") -> bytes:
    """TREC run text; scores are the shortest decimal that round-trips, so re-reading a run is lossless."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if run.empty:
        return b""

    def text(value: str) -> pa.Scalar:
        return pa.scalar(value, pa.large_string())

    lines = pc.binary_join_element_wise(
        pa.array(run["qid"].astype(str), type=pa.large_string()),
        text("Q0"),
        pa.array(run["docno"].astype(str), type=pa.large_string()),
        pc.cast(pa.array(run["rank"].to_numpy(dtype="int64")), pa.large_string()),
        pc.cast(pa.array(run["score"].to_numpy(dtype="float64")), pa.large_string()),
        text(tag),
        text(" "),
    )
    return ("\n".join(lines.to_pylist()) + "\n").encode("utf-8")


def write_run(run: pd.DataFrame, path: str | Path, tag: str = "cascade") -> None:
    if any(c.isspace() for c in tag) or not tag:
        raise CascadeError(f"run tag {tag!r} must be one word")
    with atomic_file(path, "wb") as handle:
        handle.write(format_run(run, tag))


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
