"""Exact top-k by inner product over sparse vectors with scipy: the oracle every approximate index is measured against.

The corpus is held transposed (term -> documents, an inverted index in CSR form), so a batch of queries is one
sparse product `Q @ X.T` that touches only the posting lists of the queries' terms. Only documents with a positive
score are returned: a query whose terms no document has gets an empty result, not k arbitrary documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cascade.indexes.sparse_vectors import SparseVectors


@dataclass
class ExactIndex:
    """The transposed corpus matrix: row t lists the documents holding term t."""

    inverted: Any  # scipy.sparse.csr_matrix [dim, docs]
    docs: int

    @property
    def dim(self) -> int:
        return int(self.inverted.shape[0])

    def known_terms(self) -> np.ndarray:
        """Boolean mask over the vocabulary: which terms at least one document has."""
        return np.diff(self.inverted.indptr) > 0


def build_exact(vectors: SparseVectors) -> ExactIndex:
    matrix = vectors.csr()
    return ExactIndex(matrix.T.tocsr(), len(vectors))


def query_matrix(queries: list[tuple[np.ndarray, np.ndarray]], dim: int):
    """Queries (term ids, weights) as a CSR matrix; terms outside the vocabulary are dropped."""
    rows = []
    for terms, weights in queries:
        inside = (terms >= 0) & (terms < dim)
        order = np.argsort(terms[inside], kind="stable")
        rows.append((terms[inside][order], weights[inside][order]))
    return SparseVectors.from_rows(rows, dim).csr()


def top_k_rows(scores, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row of a sparse score matrix: (doc indices, scores) of the k best, ties broken by lower doc index."""
    scores = scores.tocsr()
    out = []
    for i in range(scores.shape[0]):
        start, end = scores.indptr[i], scores.indptr[i + 1]
        docs, values = scores.indices[start:end], scores.data[start:end]
        positive = values > 0
        docs, values = docs[positive], values[positive]
        if len(values) > k:
            cut = np.argpartition(-values, k - 1)[:k]
            # keep every document tied with the k-th score, so the tie-break below is by doc index
            kth = values[cut].min()
            cut = np.flatnonzero(values >= kth)
            docs, values = docs[cut], values[cut]
        order = np.lexsort((docs, -values))[:k]
        out.append((docs[order].astype(np.int64), values[order].astype(np.float32)))
    return out


def search_exact(
    index: ExactIndex, queries: list[tuple[np.ndarray, np.ndarray]], k: int, batch: int = 64
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact top-k documents (row indices, scores) for each query, in query order."""
    results: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(queries), batch):
        q = query_matrix(queries[start : start + batch], index.dim)
        results += top_k_rows(q @ index.inverted, k)
    return results


def search_one(index: ExactIndex, query: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """One query: what the per-query latency of exact search is measured on."""
    return search_exact(index, [query], k, batch=1)[0]
