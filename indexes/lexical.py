"""Lexical features of (query, document) pairs, read from the Lucene index's stored document vectors.

The document-term matrix is dumped once per index (Lucene's own analysis, so terms match BM25's) and cached as
CSR arrays; features are then computed per query with sparse slicing, vectorised over its candidates.
Hand-written here because no library computes LTR feature sets over a Lucene index from Python; the formulas
are the standard ones (Lucene's BM25 idf, Dirichlet-smoothed language model), listed in FEATURES.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cascade.core.digest import content_key
from cascade.indexes import lucene

LEXICAL_VERSION = 1
STATS = ("tf", "ntf", "idf", "tfidf", "bm25")
AGGREGATES = ("sum", "min", "max", "mean")
FEATURES = (
    "doc_len",
    "query_len",
    "matched_terms",
    "coverage",
    *(f"{stat}_{agg}" for stat in STATS for agg in AGGREGATES),
    "lm_dirichlet",
)
BM25_K1, BM25_B, DIRICHLET_MU = 0.9, 0.4, 1000.0


def build_term_matrix(index: Path, out: Path, log: Path) -> dict:
    """Dump the index's document vectors into CSR arrays (`tf.npz`) plus `vocab.json` and `docnos.json`."""
    import scipy.sparse as sp

    vocab: dict[str, int] = {}
    docnos, indptr, indices, data = [], [0], [], []
    for docno, terms in lucene.document_vectors(index, log):
        docnos.append(docno)
        for term, count in sorted(terms.items()):
            indices.append(vocab.setdefault(term, len(vocab)))
            data.append(count)
        indptr.append(len(indices))
    matrix = sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(docnos), len(vocab)),
    )
    sp.save_npz(out / "tf.npz", matrix)
    (out / "vocab.json").write_text(json.dumps(sorted(vocab, key=vocab.get)))
    (out / "docnos.json").write_text(json.dumps(docnos))
    return {"documents": len(docnos), "terms": len(vocab), "postings": int(matrix.nnz)}


@dataclass
class TermStats:
    """The document-term matrix with what BM25 and the LM need: df, document lengths, collection frequencies."""

    tf: object  # scipy.sparse.csr_matrix
    vocab: dict[str, int]
    row: dict[str, int]
    doc_len: np.ndarray
    idf: np.ndarray
    collection_prob: np.ndarray
    avg_len: float

    @classmethod
    def load(cls, folder: Path) -> TermStats:
        import scipy.sparse as sp

        tf = sp.load_npz(folder / "tf.npz").tocsr()
        vocab = {t: i for i, t in enumerate(json.loads((folder / "vocab.json").read_text()))}
        row = {d: i for i, d in enumerate(json.loads((folder / "docnos.json").read_text()))}
        doc_len = np.asarray(tf.sum(axis=1)).ravel()
        df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float64)
        n = tf.shape[0]
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))  # Lucene's BM25 idf
        cf = np.asarray(tf.sum(axis=0)).ravel().astype(np.float64)
        return cls(tf, vocab, row, doc_len, idf, cf / max(cf.sum(), 1.0), float(doc_len.mean()) if n else 0.0)

    def features(self, query_terms: list[str], docnos: list[str]) -> np.ndarray:
        """One row of FEATURES per document, for one analysed query."""
        unique = list(dict.fromkeys(query_terms))
        cols = np.asarray([self.vocab[t] for t in unique if t in self.vocab], dtype=np.int64)
        rows = np.asarray([self.row.get(d, -1) for d in docnos], dtype=np.int64)
        known = rows >= 0
        out = np.zeros((len(docnos), len(FEATURES)), dtype=np.float64)
        if not known.any():
            return out
        r = rows[known]
        dl = self.doc_len[r].astype(np.float64)
        q_len = float(len(unique))
        tf = self.tf[r][:, cols].toarray().astype(np.float64) if len(cols) else np.zeros((len(r), 0))
        idf = np.broadcast_to(self.idf[cols], tf.shape)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * dl / max(self.avg_len, 1e-9))
        stats = {
            "tf": tf,
            "ntf": tf / np.maximum(dl, 1.0)[:, None],
            "idf": np.where(tf > 0, idf, 0.0),
            "tfidf": tf * idf,
            "bm25": idf * tf / (tf + norm[:, None]),
        }
        matched = (tf > 0).sum(axis=1).astype(np.float64)
        values = [dl, np.full(len(r), q_len), matched, matched / q_len if q_len else np.zeros(len(r))]
        for stat in STATS:
            block = stats[stat]
            if block.shape[1] == 0:
                values += [np.zeros(len(r))] * len(AGGREGATES)
                continue
            values += [block.sum(1), block.min(1), block.max(1), block.mean(1)]
        p_c = self.collection_prob[cols]
        lm = np.log((tf + DIRICHLET_MU * p_c) / (dl[:, None] + DIRICHLET_MU)).sum(1) if len(cols) else np.zeros(len(r))
        values.append(lm)
        out[known] = np.column_stack(values)
        return out


def term_stats(store, lucene_folder: Path, log: Path) -> TermStats:
    """The cached term statistics of one Lucene index (built on first use)."""
    made_from = {"lucene": lucene_folder.name, "version": LEXICAL_VERSION}
    folder, _ = store.get_or_build(
        "lexical", content_key(made_from), lambda tmp: build_term_matrix(lucene_folder, tmp, log), made_from
    )
    return TermStats.load(folder)
