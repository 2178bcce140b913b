"""Lucene through pyserini's Anserini jar: indexing and search; with `cascade.indexes.jvm` (the JVM's start and
Java's errors), the only modules in cascade that touch Java.

Indexing and search call Anserini's own entry points (`IndexCollection`, `SearchCollection`), so the per-hit loop
stays in Java: turning 1,000 hits per query into Python objects is what makes pyserini's Python search slow.
Lucene's analyzer is used as is, so scores and rankings equal pyserini's `LuceneSearcher`.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from cascade.core.atomic import TMP_MARK
from cascade.core.errors import CascadeError
from cascade.core.progress import Progress
from cascade.eval.datasets import doc_text
from cascade.eval.runs import read_run
from cascade.indexes.jvm import (  # noqa: F401  (re-exported: callers of the old home keep working)
    _java,
    anserini_jar,
    java_environment,
    java_failure,
    java_output_to,
    java_version,
    start_jvm,
)


def build_index(docs: Iterable[dict], out: Path, threads: int, log: Path, progress: bool = False) -> dict:
    """Index `{"docno", "title", "text"}` documents into `out` with Anserini's IndexCollection.

    Stores positions, document vectors (RM3 and lexical features read them) and the raw text.
    """
    records = ({"id": doc["docno"], "contents": doc_text(doc)} for doc in docs)
    flags = ["-storePositions", "-storeDocvectors", "-storeRaw"]
    return _index_collection(records, out, "JsonCollection", flags, threads, log, progress, "lucene index")


def _index_collection(
    records: Iterable[dict],
    out: Path,
    collection: str,
    flags: list[str],
    threads: int,
    log: Path,
    progress: bool,
    what: str,
) -> dict:
    """Write Anserini JSON records to a temp folder, run IndexCollection on it, check every document is in."""
    with tempfile.TemporaryDirectory(prefix="cascade-collection-") as coll:
        count = 0
        bar = Progress(f"{what}: writing documents", unit="doc", enabled=progress)
        with bar, open(Path(coll) / "docs.jsonl", "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
                bar.update()
        if count == 0:
            raise CascadeError("the corpus has no documents to index")
        args = ["-collection", collection, "-input", coll, "-index", str(out)]
        args += ["-generator", "DefaultLuceneDocumentGenerator", *flags, "-threads", str(threads)]
        if progress and sys.stderr.isatty():
            print(f"{what}: indexing {count:,} documents with {threads} threads", file=sys.stderr)
        _run_index_collection(args, out, log, what)
    indexed = index_size(out)
    if indexed != count:
        raise CascadeError(f"Lucene indexed {indexed} of {count} documents; see {log}")
    return {"documents": count, "anserini": anserini_jar().name, "java": java_version()}


def _run_index_collection(args: list[str], out: Path, log: Path, what: str) -> None:
    """Anserini's IndexCollection; a Java exception (a full disk: an IOException, which Lucene reports as a closed
    IndexWriter) is one CascadeError naming the index folder, and its stack trace goes to the log."""
    main = _java("io.anserini.index.IndexCollection").main  # starts the JVM before jnius is imported
    import jnius

    try:
        with java_output_to(log):
            main(args)
    except jnius.JavaException as exc:
        raise java_failure(exc, _final_folder(out), log, what) from None


def _final_folder(tmp: Path) -> Path:
    """The artifact folder a temp build folder (`.<key>.tmp-*`, cascade.core.atomic) becomes."""
    name = tmp.name
    if name.startswith(".") and TMP_MARK in name:
        return tmp.parent / name[1:].split(TMP_MARK, 1)[0]
    return tmp


def index_size(index: Path) -> int:
    reader = _java("io.anserini.index.IndexReaderUtils").getReader(str(index))
    try:
        return int(reader.numDocs())
    finally:
        reader.close()


def index_stats(index: Path, log: Path) -> dict[str, int]:
    """Anserini's index statistics (as its regressions' `index_stats`): documents, non_empty_documents,
    unique_terms and total_terms of the `contents` field."""
    utils = _java("io.anserini.index.IndexReaderUtils")
    with java_output_to(log):
        reader = utils.getReader(str(index))
        try:
            stats = utils.getIndexStats(reader)
            return {str(key): int(stats.get(key)) for key in stats.keySet().toArray()}
        finally:
            reader.close()


def _topic_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def search(
    index: Path,
    queries: pd.DataFrame,
    *,
    k: int,
    k1: float,
    b: float,
    rm3: dict | None,
    threads: int,
    log: Path,
    chunk: int = 1000,
    on_chunk: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """BM25 (optionally with RM3) for every query through Anserini's SearchCollection; returns a run.

    Queries go in chunks so a progress display can advance between them; each chunk is one Java call that
    searches with `threads` threads and writes a TREC file, which Arrow parses.
    """
    model = ["-bm25", "-bm25.k1", repr(float(k1)), "-bm25.b", repr(float(b))]
    if rm3 is not None:
        model += [
            "-rm3",
            "-rm3.fbTerms",
            str(rm3["fb_terms"]),
            "-rm3.fbDocs",
            str(rm3["fb_docs"]),
            "-rm3.originalQueryWeight",
            repr(float(rm3["original_query_weight"])),
        ]
    topics = [_topic_text(text) for text in queries["query"]]
    return _search_collection(index, list(queries["qid"]), topics, model, k, threads, log, chunk, on_chunk)


def _search_collection(
    index: Path,
    qids: list[str],
    topics: list[str],
    model: list[str],
    k: int,
    threads: int,
    log: Path,
    chunk: int = 1000,
    on_chunk: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Run SearchCollection over `qid<TAB>topic` lines with the ranking-model arguments `model`; returns a run."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="cascade-search-") as tmp:
        for start in range(0, len(qids), chunk):
            part = range(start, min(start + chunk, len(qids)))
            topics_file, output = Path(tmp) / f"topics{start}.tsv", Path(tmp) / f"run{start}.trec"
            with open(topics_file, "w", encoding="utf-8") as handle:
                for i in part:
                    handle.write(f"{qids[i]}\t{topics[i]}\n")
            args = [
                "-index",
                str(index),
                "-topics",
                str(topics_file),
                "-topicReader",
                "TsvString",
                "-output",
                str(output),
                "-hits",
                str(k),
                "-threads",
                str(threads),
                *model,
            ]
            with java_output_to(log):
                _java("io.anserini.search.SearchCollection").main(args)
            if not output.exists():
                raise CascadeError(f"Anserini's search wrote no run; see {log}")
            runs.append(read_run(output) if output.stat().st_size else None)
            if on_chunk:
                on_chunk(len(part))
    runs = [r for r in runs if r is not None]
    if not runs:
        return pd.DataFrame({"qid": [], "docno": [], "score": [], "rank": []})
    run = pd.concat(runs, ignore_index=True)
    # SearchCollection writes queries in its own order; restore the order of the input.
    order = {qid: i for i, qid in enumerate(qids)}
    run = run.assign(_q=run["qid"].map(order)).sort_values(["_q", "rank"], kind="mergesort")
    return run.drop(columns="_q").reset_index(drop=True)


# --------------------------------------------------------------------------- learned sparse (impact) indexes


def build_impact_index(
    docs: Iterable[tuple[str, dict[str, int]]], out: Path, threads: int, log: Path, progress: bool = False
) -> dict:
    """Index `(docno, {term: integer impact})` rows with IndexCollection `-impact -pretokenized`.

    Each term's impact is stored as its term frequency (JsonVectorCollection), and ImpactSimilarity scores a
    query as the sum of query weight x impact: an integer dot product, the quantised inner product.
    """
    records = ({"id": docno, "contents": "", "vector": vector} for docno, vector in docs)
    flags = ["-impact", "-pretokenized"]
    return _index_collection(records, out, "JsonVectorCollection", flags, threads, log, progress, "lucene impact index")


def impact_topic(vector: dict[str, int]) -> str:
    """A pretokenized query: each term repeated by its integer weight, which Anserini counts into a boost."""
    return " ".join(" ".join([term] * weight) for term, weight in vector.items() if weight > 0)


def search_impact(
    index: Path,
    queries: list[tuple[str, dict[str, int]]],
    *,
    k: int,
    threads: int,
    log: Path,
    on_chunk: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Impact (quantised dot-product) search for `(qid, {term: weight})` queries through SearchCollection.

    Queries with no positive weight are left out (SearchCollection cannot parse an empty topic); they have no
    hits, which is what they would get.
    """
    kept = [(qid, impact_topic(vector)) for qid, vector in queries]
    kept = [(qid, topic) for qid, topic in kept if topic]
    model = ["-impact", "-pretokenized"]
    return _search_collection(
        index, [q for q, _ in kept], [t for _, t in kept], model, k, threads, log, on_chunk=on_chunk
    )


class ImpactSearcher:
    """One query at a time through Anserini's `SimpleImpactSearcher` (what pyserini's LuceneImpactSearcher wraps).

    Used to time per-query latency; the stage's own search goes through `search_impact`. Each calling thread gets
    its own Java searcher: `SimpleImpactSearcher.search(Map, k)` keeps per-call state in the searcher, and two
    threads sharing one fail with a ConcurrentModificationException. Threads that call `search` must call
    `detach()` before they end (pyjnius attaches each thread to the JVM).
    """

    def __init__(self, index: Path) -> None:
        import threading

        self._index = str(index)
        self._local = threading.local()
        self._opened: list = []
        self._lock = threading.Lock()
        self.retries = 0
        self._map = _java("java.util.HashMap")
        self._int = _java("java.lang.Integer")
        self._searcher()  # open (and fail on a bad index) in the constructor's thread

    def _searcher(self):
        searcher = getattr(self._local, "searcher", None)
        if searcher is None:
            searcher = _java("io.anserini.search.SimpleImpactSearcher")(self._index)
            self._local.searcher = searcher
            with self._lock:
                self._opened.append(searcher)
        return searcher

    def search(self, vector: dict[str, int], k: int) -> int:
        """Search and fetch the hits' docids, as pyserini does; returns the number of hits."""
        query = self._map()
        for term, weight in vector.items():
            if weight > 0:
                query.put(term, self._int(int(weight)))
        if query.isEmpty():
            return 0
        return len(self._search(query, k))

    def _search(self, query, k: int, tries: int = 3):
        """Anserini 1.7.1's `encode_with_onnx` iterates a HashMap that another thread's search can change, even
        with one searcher per thread: a rare ConcurrentModificationException. The search is read-only, so it is
        retried (counted in `retries`), never turned into a wrong result."""
        import jnius

        for attempt in range(tries):
            try:
                return self._searcher().search(query, k)
            except jnius.JavaException as exc:
                if "ConcurrentModification" not in str(exc) or attempt == tries - 1:
                    raise
                with self._lock:
                    self.retries += 1
        raise AssertionError("unreachable")

    @staticmethod
    def detach() -> None:
        import jnius

        jnius.detach()

    def close(self) -> None:
        with self._lock:
            for searcher in self._opened:
                searcher.close()
            self._opened.clear()


def document_tokens(index: Path, log: Path):
    """(docno, [term or None per position]) for every document, one Java call each (Anserini's
    IndexReaderUtils.getDocumentTokens over the stored document vectors with positions). The list's text form is
    parsed: analysed terms never hold ", ", and Java's null (a removed stopword) prints as `null`, so a document
    term spelled "null" also reads as a gap."""
    utils = _java("io.anserini.index.IndexReaderUtils")
    with java_output_to(log):
        reader = utils.getReader(str(index))
    try:
        for internal in range(int(reader.maxDoc())):
            docno = utils.convertLuceneDocidToDocid(reader, internal)
            text = utils.getDocumentTokens(reader, docno).toString()[1:-1]
            yield docno, [None if t == "null" else t for t in text.split(", ")] if text else []
    finally:
        reader.close()


def document_vectors(index: Path, log: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """(docno, {analysed term: tf}) for every document, from the doc vectors stored at indexing time.

    One Java call per document: the map's text form is parsed here, because reading it entry by entry through
    jnius costs two calls per term. Analysed terms never hold spaces, so ", " and the last "=" split safely.
    """
    utils = _java("io.anserini.index.IndexReaderUtils")
    with java_output_to(log):
        reader = utils.getReader(str(index))
    try:
        for internal in range(int(reader.maxDoc())):
            docno = utils.convertLuceneDocidToDocid(reader, internal)
            vector = utils.getDocumentVector(reader, docno)
            text = vector.toString()[1:-1] if vector is not None else ""
            terms: dict[str, int] = {}
            for entry in text.split(", ") if text else []:
                term, _, count = entry.rpartition("=")
                terms[term] = int(count)
            yield docno, terms
    finally:
        reader.close()


def analyze(texts: list[str]) -> list[list[str]]:
    """Lucene's default English analysis (the one the index used): Porter stemming, stopwords removed."""
    utils = _java("io.anserini.analysis.AnalyzerUtils")
    return [list(utils.analyze(text).toArray()) for text in texts]
