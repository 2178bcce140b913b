"""Shared text-file helpers of the readers: opening (gzip or plain), damaged-file errors, whitespace tables."""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.core.errors import CascadeError


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
