"""Lexical features of (query, document) pairs, read from the Lucene index's stored token streams.

Each document's analysed token stream (Lucene's own analysis, so terms match BM25's; stopwords leave a gap) is
dumped once per index and cached: as a CSR document-term matrix for the bag-of-words features and as a flat
array of term ids for the proximity ones. Features are then computed per query, vectorised over its candidates,
in named groups (GROUPS) whose extraction cost `bench/ltr_features.py` measures. Hand-written here because no
library computes LETOR-style feature sets over a Lucene index from Python; the formulas are the standard ones
(Lucene's BM25 idf, Dirichlet and Jelinek-Mercer language models), one line each in FEATURE_DOCS.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from cascade.core.digest import content_key
from cascade.indexes import lucene

LEXICAL_VERSION = 2  # 2: token streams (positions) beside the term matrix
STATS = ("tf", "ntf", "idf", "tfidf", "bm25")
AGGREGATES = ("sum", "min", "max", "mean")
BM25_K1, BM25_B, DIRICHLET_MU = 0.9, 0.4, 1000.0  # the core group's BM25 is the bm25 stage's default
BM25_VARIANTS = ((1.2, 0.75), (0.6, 0.3), (1.5, 0.9), (2.0, 0.75))
DIRICHLET_MUS = (100.0, 2500.0)
JM_LAMBDAS = (0.1, 0.4, 0.7)
NEAR, BIGRAM_GAP = 8, 3  # positions: a "near" pair, an ordered bigram (a stopword or two may sit between)
_STAT_DOCS = {
    "tf": "term frequency",
    "ntf": "tf / doc_len",
    "idf": "BM25 idf of matched terms (0 if unmatched)",
    "tfidf": "tf x BM25 idf",
    "bm25": "BM25 (k1 0.9, b 0.4) term score",
}
_BM25_NAMES = tuple(f"bm25_k{k1:g}_b{b:g}" for k1, b in BM25_VARIANTS)

# The feature groups in matrix order; `core` is the first feature set (its names and values are unchanged, so
# models trained on it still load: rankers.ltr selects a model's columns by name).
GROUPS: dict[str, dict[str, str]] = {
    "core": {
        "doc_len": "document length in indexed terms (stopwords excluded), as BM25 counts it",
        "query_len": "distinct analysed query terms",
        "matched_terms": "distinct query terms present in the document",
        "coverage": "matched_terms / query_len",
        **{f"{s}_{a}": f"{_STAT_DOCS[s]}, {a} over query terms" for s in STATS for a in AGGREGATES},
        "lm_dirichlet": "query log-likelihood, Dirichlet smoothing, mu 1000",
    },
    "bm25": {
        f"{name}_{agg}": f"BM25 (k1 {k1:g}, b {b:g}) term score, {agg} over query terms"
        for name, (k1, b) in zip(_BM25_NAMES, BM25_VARIANTS, strict=True)
        for agg in ("sum", "max", "mean")
    },
    "lm": {
        **{f"lm_dir_{mu:g}": f"query log-likelihood, Dirichlet smoothing, mu {mu:g}" for mu in DIRICHLET_MUS},
        **{f"lm_jm_{lam:g}": f"query log-likelihood, Jelinek-Mercer, collection weight {lam:g}" for lam in JM_LAMBDAS},
    },
    "tfidf": {
        **{f"{s}_var": f"{_STAT_DOCS[s]}, variance over query terms" for s in ("tf", "ntf", "tfidf", "bm25")},
        **{f"logtf_{a}": f"log(1 + tf), {a} over query terms" for a in ("sum", "max", "mean")},
        **{f"logtfidf_{a}": f"log(1 + tf) x BM25 idf, {a} over query terms" for a in (*AGGREGATES, "var")},
        **{f"ntfidf_{a}": f"tf / doc_len x BM25 idf, {a} over query terms" for a in ("sum", "max")},
        **{f"idf_classic_{a}": f"log(N / df) of matched terms, {a}" for a in ("sum", "max")},
        **{f"ictf_{a}": f"log(collection terms / cf) of matched terms, {a}" for a in ("sum", "max")},
    },
    "coverage": {
        "idf_coverage": "fraction of the query's BM25 idf mass the document matches",
        "unmatched_terms": "distinct query terms absent from the document",
        "query_idf_sum": "BM25 idf of the query terms, summed (query difficulty; same for all candidates)",
        "query_idf_max": "BM25 idf of the query terms, max",
        "query_idf_mean": "BM25 idf of the query terms, mean",
        "query_oov": "query terms absent from the whole index",
    },
    "proximity": {
        "min_window": "smallest span of positions covering every matched query term (NaN below 2 matched)",
        "min_window_all": "min_window when every query term is matched, else NaN",
        "window_density": "matched_terms / min_window",
        "pair_dist_min": "closest occurrences of two matched query terms: smallest distance over pairs",
        "pair_dist_mean": "closest occurrences of two matched query terms: distance averaged over pairs",
        "pairs_near": f"fraction of all query term pairs whose closest occurrences are within {NEAR} positions",
        "ordered_bigrams": f"consecutive query terms found in query order within {BIGRAM_GAP} positions",
        "ordered_bigram_frac": "ordered_bigrams / consecutive query term pairs",
        "first_pos": "position of the first query term occurrence (NaN if none)",
        "first_pos_norm": "first_pos / document positions",
    },
    "quality": {
        "unique_terms": "distinct indexed terms in the document",
        "unique_ratio": "unique_terms / doc_len",
        "entropy": "entropy of the document's term distribution (nats)",
        "positions": "document length in positions, stopwords included",
        "stopword_ratio": "fraction of positions that are stopwords",
        "dl_norm": "doc_len / average doc_len",
        "doc_avg_idf": "mean BM25 idf of the document's tokens (specificity of its vocabulary)",
    },
}
FEATURE_DOCS: dict[str, str] = {name: doc for group in GROUPS.values() for name, doc in group.items()}
FEATURES = tuple(FEATURE_DOCS)


def build_term_matrix(index: Path, out: Path, log: Path) -> dict:
    """Dump the index's token streams into `out` (see `write_streams`), timed."""
    started = time.perf_counter()
    facts = write_streams(lucene.document_tokens(index, log), out)
    return {**facts, "dump_seconds": round(time.perf_counter() - started, 3)}


def write_streams(streams, out: Path) -> dict:
    """`tf.npz` (CSR counts), `tokens.npy` + `token_ptr.npy` (term id per position, -1 for a stopword gap),
    `vocab.json` and `docnos.json` from (docno, [term or None]) streams."""
    import scipy.sparse as sp

    vocab: dict[str, int] = {}
    docnos, tokens, token_ptr = [], [], [0]
    for docno, stream in streams:
        docnos.append(docno)
        tokens += [-1 if t is None else vocab.setdefault(t, len(vocab)) for t in stream]
        token_ptr.append(len(tokens))
    ids, ptr = np.asarray(tokens, dtype=np.int32), np.asarray(token_ptr, dtype=np.int64)
    rows = np.repeat(np.arange(len(docnos)), np.diff(ptr))
    keep = ids >= 0
    ones = np.ones(int(keep.sum()), dtype=np.float32)
    matrix = sp.csr_matrix((ones, (rows[keep], ids[keep])), shape=(len(docnos), len(vocab)))
    matrix.sum_duplicates()
    sp.save_npz(out / "tf.npz", matrix)
    np.save(out / "tokens.npy", ids)
    np.save(out / "token_ptr.npy", ptr)
    (out / "vocab.json").write_text(json.dumps(sorted(vocab, key=vocab.get)))
    (out / "docnos.json").write_text(json.dumps(docnos))
    return {"documents": len(docnos), "terms": len(vocab), "postings": int(matrix.nnz)}


@dataclass
class _Query:
    """One query's candidates: what every group reads, computed once."""

    r: np.ndarray  # index rows of the known candidates
    cols: np.ndarray  # term ids of the distinct query terms the index knows, in query order
    q_len: float
    dl: np.ndarray
    tf: np.ndarray  # (candidates, cols)
    idf: np.ndarray  # (cols,)


def _aggregate(block: np.ndarray, aggs: tuple[str, ...]) -> list[np.ndarray]:
    if block.shape[1] == 0:
        return [np.zeros(block.shape[0]) for _ in aggs]
    return [getattr(block, agg)(axis=1) for agg in aggs]


@dataclass
class TermStats:
    """The token streams with what the formulas need: df, lengths, collection frequencies, document priors."""

    tf: object  # scipy.sparse.csr_matrix
    vocab: dict[str, int]
    row: dict[str, int]
    tokens: np.ndarray
    token_ptr: np.ndarray
    doc_len: np.ndarray
    idf: np.ndarray
    idf_classic: np.ndarray
    ictf: np.ndarray
    collection_prob: np.ndarray
    avg_len: float
    quality: np.ndarray  # (documents, len(GROUPS["quality"]))

    @classmethod
    def load(cls, folder: Path) -> TermStats:
        import scipy.sparse as sp

        tf = sp.load_npz(folder / "tf.npz").tocsr()
        vocab = {t: i for i, t in enumerate(json.loads((folder / "vocab.json").read_text()))}
        row = {d: i for i, d in enumerate(json.loads((folder / "docnos.json").read_text()))}
        tokens, token_ptr = np.load(folder / "tokens.npy"), np.load(folder / "token_ptr.npy")
        n = tf.shape[0]
        doc_len = np.asarray(tf.sum(axis=1)).ravel().astype(np.float64)
        df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float64)
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))  # Lucene's BM25 idf
        cf = np.asarray(tf.sum(axis=0)).ravel().astype(np.float64)
        total = max(cf.sum(), 1.0)
        avg_len = float(doc_len.mean()) if n else 0.0
        # document priors, once per index
        safe_len = np.maximum(doc_len, 1.0)
        unique = np.diff(tf.indptr).astype(np.float64)
        p = tf.data / np.repeat(safe_len, np.diff(tf.indptr))
        entropy = np.bincount(np.repeat(np.arange(n), np.diff(tf.indptr)), -p * np.log(p), minlength=n)
        positions = np.diff(token_ptr).astype(np.float64)
        quality = np.column_stack(
            [
                unique,
                unique / safe_len,
                entropy,
                positions,
                (positions - doc_len) / np.maximum(positions, 1.0),
                doc_len / max(avg_len, 1e-9),
                (tf @ idf) / safe_len,
            ]
        )
        return cls(
            tf, vocab, row, tokens, token_ptr, doc_len, idf, np.log(n / np.maximum(df, 1.0)),
            np.log(total / np.maximum(cf, 1.0)), cf / total, avg_len, quality,
        )  # fmt: skip

    def features(self, query_terms: list[str], docnos: list[str], groups: tuple[str, ...] = ()) -> np.ndarray:
        """One row of FEATURES per document, for one analysed query (only `groups`' columns when given, for the
        benchmark; the others stay 0)."""
        unique = list(dict.fromkeys(query_terms))
        rows = np.asarray([self.row.get(d, -1) for d in docnos], dtype=np.int64)
        known = rows >= 0
        out = np.zeros((len(docnos), len(FEATURES)), dtype=np.float64)
        if not known.any():
            return out
        q = self.prepare(unique, rows[known])
        start = 0
        for name, group in GROUPS.items():
            if not groups or name in groups:
                out[known, start : start + len(group)] = np.column_stack(self.group(name, q, unique))
            start += len(group)
        return out

    def prepare(self, unique: list[str], r: np.ndarray) -> _Query:
        cols = np.asarray([self.vocab[t] for t in unique if t in self.vocab], dtype=np.int64)
        tf = self.tf[r][:, cols].toarray().astype(np.float64) if len(cols) else np.zeros((len(r), 0))
        return _Query(r, cols, float(len(unique)), self.doc_len[r], tf, self.idf[cols])

    def group(self, name: str, q: _Query, unique: list[str]) -> list[np.ndarray]:
        """The columns of one group, in GROUPS order."""
        return getattr(self, f"_group_{name}")(q, unique)

    def _bm25_scores(self, q: _Query, k1: float, b: float) -> np.ndarray:
        norm = k1 * (1 - b + b * q.dl / max(self.avg_len, 1e-9))
        return q.idf * q.tf / (q.tf + norm[:, None])

    def _dirichlet(self, q: _Query, mu: float) -> np.ndarray:
        if not len(q.cols):
            return np.zeros(len(q.r))
        return np.log((q.tf + mu * self.collection_prob[q.cols]) / (q.dl[:, None] + mu)).sum(1)

    def _group_core(self, q: _Query, unique: list[str]) -> list[np.ndarray]:
        n, tf, idf = len(q.r), q.tf, q.idf
        matched = (tf > 0).sum(axis=1).astype(np.float64)
        stats = {
            "tf": tf,
            "ntf": tf / np.maximum(q.dl, 1.0)[:, None],
            "idf": np.where(tf > 0, idf, 0.0),
            "tfidf": tf * idf,
            "bm25": self._bm25_scores(q, BM25_K1, BM25_B),
        }
        coverage = matched / q.q_len if q.q_len else np.zeros(n)
        values = [q.dl, np.full(n, q.q_len), matched, coverage]
        for stat in STATS:
            values += _aggregate(stats[stat], AGGREGATES)
        return [*values, self._dirichlet(q, DIRICHLET_MU)]

    def _group_bm25(self, q: _Query, unique: list[str]) -> list[np.ndarray]:
        values = []
        for k1, b in BM25_VARIANTS:
            values += _aggregate(self._bm25_scores(q, k1, b), ("sum", "max", "mean"))
        return values

    def _group_lm(self, q: _Query, unique: list[str]) -> list[np.ndarray]:
        values = [self._dirichlet(q, mu) for mu in DIRICHLET_MUS]
        ntf = q.tf / np.maximum(q.dl, 1.0)[:, None]
        p_c = self.collection_prob[q.cols]
        for lam in JM_LAMBDAS:
            values.append(np.log((1 - lam) * ntf + lam * p_c).sum(1) if len(q.cols) else np.zeros(len(q.r)))
        return values

    def _group_tfidf(self, q: _Query, unique: list[str]) -> list[np.ndarray]:
        tf, idf, present = q.tf, q.idf, q.tf > 0
        ntf, logtf = tf / np.maximum(q.dl, 1.0)[:, None], np.log1p(tf)
        values = _aggregate(tf, ("var",)) + _aggregate(ntf, ("var",)) + _aggregate(tf * idf, ("var",))
        values += _aggregate(self._bm25_scores(q, BM25_K1, BM25_B), ("var",))
        values += _aggregate(logtf, ("sum", "max", "mean")) + _aggregate(logtf * idf, (*AGGREGATES, "var"))
        values += _aggregate(ntf * idf, ("sum", "max"))
        values += _aggregate(np.where(present, self.idf_classic[q.cols], 0.0), ("sum", "max"))
        return values + _aggregate(np.where(present, self.ictf[q.cols], 0.0), ("sum", "max"))

    def _group_coverage(self, q: _Query, unique: list[str]) -> list[np.ndarray]:
        n, mass = len(q.r), float(q.idf.sum())
        matched = (q.tf > 0).sum(axis=1).astype(np.float64)
        covered = (np.where(q.tf > 0, q.idf, 0.0).sum(1) / mass) if mass > 0 else np.zeros(n)
        idf = q.idf if len(q.idf) else np.zeros(1)
        query = [float(idf.sum()), float(idf.max()), float(idf.mean()), q.q_len - len(q.cols)]
        return [covered, q.q_len - matched, *(np.full(n, v) for v in query)]

    def _group_proximity(self, q: _Query, unique: list[str]) -> list[np.ndarray]:
        out = np.full((len(q.r), len(GROUPS["proximity"])), np.nan)
        n_terms, n_pairs, n_bigrams = len(q.cols), len(q.cols) * (len(q.cols) - 1) / 2, max(len(q.cols) - 1, 0)
        out[:, [5, 6, 7]] = 0.0
        if not n_terms:
            return list(out.T)
        which = {int(c): i for i, c in enumerate(q.cols)}
        for j, row in enumerate(q.r):
            seq = self.tokens[self.token_ptr[row] : self.token_ptr[row + 1]]
            hits = np.flatnonzero(np.isin(seq, q.cols))
            if not len(hits):
                continue
            terms = [which[t] for t in seq[hits].tolist()]
            out[j, 8], out[j, 9] = hits[0], hits[0] / max(len(seq), 1)
            where: dict[int, np.ndarray] = {}
            for t in set(terms):
                where[t] = hits[[i for i, x in enumerate(terms) if x == t]]
            if len(where) < 2:
                continue
            window = _min_window(hits.tolist(), terms, len(where))
            out[j, 0], out[j, 2] = window, len(where) / window
            out[j, 1] = window if len(where) == n_terms else np.nan
            dists = [np.abs(np.subtract.outer(where[a], where[b])).min() for a, b in combinations(sorted(where), 2)]
            out[j, 3], out[j, 4] = min(dists), float(np.mean(dists))
            out[j, 5] = sum(d <= NEAR for d in dists) / n_pairs
            bigrams = 0
            for a in range(n_terms - 1):
                if a in where and a + 1 in where:
                    gaps = np.subtract.outer(where[a + 1], where[a])
                    bigrams += bool(((gaps > 0) & (gaps <= BIGRAM_GAP)).any())
            out[j, 6], out[j, 7] = bigrams, bigrams / n_bigrams if n_bigrams else 0.0
        return list(out.T)

    def _group_quality(self, q: _Query, unique: list[str]) -> list[np.ndarray]:
        return list(self.quality[q.r].T)


def _min_window(positions: list[int], terms: list[int], needed: int) -> float:
    """Length of the shortest span of `positions` (sorted) holding `needed` distinct `terms`: two pointers."""
    counts: dict[int, int] = {}
    best, left = float("inf"), 0
    for right, term in enumerate(terms):
        counts[term] = counts.get(term, 0) + 1
        while len(counts) == needed:
            best = min(best, positions[right] - positions[left] + 1)
            counts[terms[left]] -= 1
            if not counts[terms[left]]:
                del counts[terms[left]]
            left += 1
    return float(best)


def term_stats(store, lucene_folder: Path, log: Path) -> TermStats:
    """The cached token streams and term statistics of one Lucene index (dumped on first use)."""
    made_from = {"lucene": lucene_folder.name, "version": LEXICAL_VERSION}
    folder, _ = store.get_or_build(
        "lexical", content_key(made_from), lambda tmp: build_term_matrix(lucene_folder, tmp, log), made_from
    )
    return TermStats.load(folder)
