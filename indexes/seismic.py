"""Seismic (Bruch et al., SIGIR 2024) through `pyseismic-lsr`: build from CSR vectors, save, open, search.

Documents go in by row number (`add_documents_by_id`, term ids as components), so a hit maps back to a docno
through the vectors' docno list and queries address term 42 as the string "42". Seismic prints its build
progress from Rust straight to file descriptor 1: builds run inside `output_to(log)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cascade.core.errors import CascadeError
from cascade.indexes.process import output_to
from cascade.indexes.sparse_vectors import SparseVectors

INDEX_STEM = "index"
INDEX_FILE = "index.index.seismic"
BUILD_KNOBS = ("n_postings", "centroid_fraction", "summary_energy", "doc_cut", "nknn", "max_fraction")


def seismic_version() -> str:
    from importlib.metadata import version

    return version("pyseismic-lsr")


def build_seismic(vectors: SparseVectors, out: Path, knobs: dict, threads: int, log: Path) -> dict:
    """Build a Seismic index of `vectors` into `out`; returns facts for the card."""
    import seismic

    unknown = set(knobs) - set(BUILD_KNOBS)
    if unknown:
        raise CascadeError(f"unknown Seismic build parameter(s): {', '.join(sorted(unknown))}", where="seismic")
    dataset = seismic.SeismicDataset(dim=vectors.dim)
    ids = [str(i) for i in range(len(vectors))]
    with output_to(log):
        added = dataset.add_documents_by_id(
            ids,
            np.ascontiguousarray(vectors.indices, dtype=np.int64),
            np.ascontiguousarray(vectors.data, dtype=np.float32),
            np.ascontiguousarray(vectors.indptr, dtype=np.int64),
        )
        index = seismic.SeismicIndex.build_from_dataset(dataset, num_threads=threads, **knobs)
        index.save(str(out / INDEX_STEM))
    if not (out / INDEX_FILE).is_file():
        raise CascadeError(f"Seismic wrote no index; see {log}")
    return {"documents": int(added), "empty_documents": len(vectors) - int(added), "seismic": seismic_version()}


def open_seismic(folder: Path, log: Path) -> Any:
    import seismic

    with output_to(log):
        return seismic.SeismicIndex.load(str(folder / INDEX_FILE))


def _query_arrays(query: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import seismic

    terms, weights = query
    return np.array([str(int(t)) for t in terms], dtype=seismic.get_seismic_string()), np.asarray(
        weights, dtype=np.float32
    )


def _hits(result: list[tuple[str, float, str]]) -> tuple[np.ndarray, np.ndarray]:
    docs = np.fromiter((int(doc) for _, _, doc in result), dtype=np.int64, count=len(result))
    scores = np.fromiter((score for _, score, _ in result), dtype=np.float32, count=len(result))
    return docs, scores


def search_one(index: Any, query: tuple[np.ndarray, np.ndarray], knobs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (row indices, scores) of one query; `knobs`: k, query_cut, heap_factor, n_knn."""
    terms, weights = _query_arrays(query)
    if not len(terms):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return _hits(index.search("q", terms, weights, **knobs))


def search_batch(
    index: Any, queries: list[tuple[np.ndarray, np.ndarray]], knobs: dict, threads: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Top-k of every query with Seismic's own thread pool; results in query order."""
    if not queries:
        return []
    import seismic

    ids = np.array([str(i) for i in range(len(queries))], dtype=seismic.get_seismic_string())
    arrays = [_query_arrays(q) for q in queries]
    results = index.batch_search(ids, [a[0] for a in arrays], [a[1] for a in arrays], num_threads=threads, **knobs)
    # Results come back in the order the threads finish, each hit tagged with its query's id; a query with no
    # hit has no tag, and stays empty.
    out = [(np.zeros(0, np.int64), np.zeros(0, np.float32))] * len(queries)
    for result in results:
        if result:
            out[int(result[0][0])] = _hits(result)
    return out
