"""Sparse vectors of a corpus on disk: CSR arrays in `.npy` files, checked against the corpus they claim to encode.

A folder holds `indptr.npy` (int64, rows + 1), `indices.npy` (int32 term ids, sorted within a row), `data.npy`
(float32 weights > 0), `docnos.txt` (one per row) and `card.json` (the store's card: encoder, corpus
fingerprint, shape). Every index (Seismic, Lucene impact, exact) is built from the same folder, so their
results differ only by the index, never by the vectors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.core.errors import CascadeError

FILES = ("indptr.npy", "indices.npy", "data.npy", "docnos.txt")


@dataclass
class SparseVectors:
    """Rows of term weights: row i is `indices[indptr[i]:indptr[i+1]]` with `data[...]`; `dim` is the vocabulary."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    dim: int
    docnos: list[str] | None = None

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def csr(self):
        """A scipy CSR matrix sharing these arrays."""
        from scipy.sparse import csr_matrix

        return csr_matrix((self.data, self.indices, self.indptr), shape=(len(self), self.dim), copy=False)

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.indptr[i], self.indptr[i + 1]
        return self.indices[start:end], self.data[start:end]

    @classmethod
    def from_rows(cls, rows: list[tuple[np.ndarray, np.ndarray]], dim: int, docnos: list[str] | None = None):
        lengths = np.fromiter((len(r[0]) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.concatenate([r[0] for r in rows]).astype(np.int32) if rows else np.zeros(0, np.int32)
        data = np.concatenate([r[1] for r in rows]).astype(np.float32) if rows else np.zeros(0, np.float32)
        return cls(indptr, indices, data, dim, docnos)


def save(vectors: SparseVectors, folder: Path) -> dict:
    """Write the arrays into `folder`; returns facts for the store's card."""
    np.save(folder / "indptr.npy", vectors.indptr.astype(np.int64, copy=False))
    np.save(folder / "indices.npy", vectors.indices.astype(np.int32, copy=False))
    np.save(folder / "data.npy", vectors.data.astype(np.float32, copy=False))
    docnos = vectors.docnos or []
    (folder / "docnos.txt").write_text("".join(f"{d}\n" for d in docnos), encoding="utf-8")
    return {
        "rows": len(vectors),
        "nnz": vectors.nnz,
        "dim": vectors.dim,
        "nnz_per_row": round(vectors.nnz / max(len(vectors), 1), 2),
    }


def write_shard(vectors: SparseVectors, folder: Path, stem: str) -> list[str]:
    """One shard's arrays (`cascade.indexes.shards`), each written atomically."""
    from cascade.indexes.shards import save_array

    return [
        save_array(folder, f"{stem}.indptr.npy", vectors.indptr.astype(np.int64, copy=False)),
        save_array(folder, f"{stem}.indices.npy", vectors.indices.astype(np.int32, copy=False)),
        save_array(folder, f"{stem}.data.npy", vectors.data.astype(np.float32, copy=False)),
    ]


def assemble(shards: Path, report, out: Path, dim: int) -> dict:
    """Stream the shards' rows into one folder of arrays (the layout `save` writes), in corpus order."""
    from cascade.indexes.shards import concat_docnos, shard_files, stream_npy

    indptr_files = shard_files(shards, report, ".indptr.npy")
    counts = [(len(p) - 1, int(p[-1])) for p in (np.load(f, mmap_mode="r") for f in indptr_files)]
    rows = sum(rows for rows, _ in counts)
    offsets = np.cumsum([0] + [size for _, size in counts])
    nnz = int(offsets[-1])

    def indptr_parts():
        yield np.zeros(1, np.int64)
        for path, offset in zip(indptr_files, offsets[:-1], strict=True):
            yield np.load(path)[1:] + offset

    stream_npy(out / "indptr.npy", np.int64, (rows + 1,), indptr_parts())
    stream_npy(out / "indices.npy", np.int32, (nnz,), (np.load(f) for f in shard_files(shards, report, ".indices.npy")))
    stream_npy(out / "data.npy", np.float32, (nnz,), (np.load(f) for f in shard_files(shards, report, ".data.npy")))
    concat_docnos(shards, report, out / "docnos.txt")
    return {"rows": rows, "nnz": nnz, "dim": dim, "nnz_per_row": round(nnz / max(rows, 1), 2), **report.facts()}


def load(folder: Path, corpus_fingerprint: str | None = None, mmap: bool = True) -> SparseVectors:
    """Read and check a vectors folder; any mismatch with its card or its corpus is a one-line error naming the file.

    `corpus_fingerprint`, when given, must equal the one the vectors were encoded from: vectors of another
    corpus would silently return the wrong documents.
    """
    folder = Path(folder)
    card_path = folder / "card.json"
    if not card_path.is_file():
        raise CascadeError("not a corpus vectors folder (no card.json)", where=str(folder))
    for name in FILES:
        if not (folder / name).is_file():
            raise CascadeError(f"corpus vectors file is missing ({name})", where=str(folder / name))
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise CascadeError(f"not valid JSON ({exc.msg})", where=f"{card_path}:{exc.lineno}") from None
    made_from = card.get("made_from", {})
    if corpus_fingerprint is not None and made_from.get("corpus") != corpus_fingerprint:
        raise CascadeError(
            f"corpus vectors were encoded from corpus {made_from.get('corpus')!r}, not from this corpus "
            f"({corpus_fingerprint})",
            where=str(card_path),
        )
    mode = "r" if mmap else None
    try:
        indptr = np.load(folder / "indptr.npy", mmap_mode=mode)
        indices = np.load(folder / "indices.npy", mmap_mode=mode)
        data = np.load(folder / "data.npy", mmap_mode=mode)
    except (ValueError, OSError) as exc:
        raise CascadeError(f"unreadable corpus vectors array ({exc})", where=str(folder)) from None
    docnos = (folder / "docnos.txt").read_text(encoding="utf-8").splitlines()
    rows, dim = int(card.get("rows", -1)), int(card.get("dim", 0))
    _check(folder, indptr, indices, data, docnos, rows, dim)
    return SparseVectors(indptr, indices, data, dim, docnos)


def _check(folder: Path, indptr, indices, data, docnos: list[str], rows: int, dim: int) -> None:
    def bad(name: str, message: str) -> CascadeError:
        return CascadeError(message, where=str(folder / name))

    if len(docnos) != rows:
        raise bad("docnos.txt", f"{len(docnos)} document ids, but the card says {rows} rows")
    if indptr.ndim != 1 or len(indptr) != rows + 1 or indptr[0] != 0:
        raise bad("indptr.npy", f"expected {rows + 1} row offsets starting at 0, found {len(indptr)}")
    if len(indices) != indptr[-1] or len(data) != indptr[-1]:
        found = f"{len(indices)} term ids and {len(data)} weights"
        raise bad("indices.npy", f"{found}, but the row offsets end at {indptr[-1]}")
    if np.any(np.diff(indptr) < 0):
        raise bad("indptr.npy", "row offsets decrease")
    if len(indices) and (int(indices.max()) >= dim or int(indices.min()) < 0):
        raise bad("indices.npy", f"term ids outside the vocabulary of {dim}")


def quantize(weights: np.ndarray, scale: float) -> np.ndarray:
    """Integer impacts for Lucene: round(weight x scale); zeros are dropped by the caller."""
    return np.rint(np.asarray(weights, dtype=np.float64) * scale).astype(np.int64)
