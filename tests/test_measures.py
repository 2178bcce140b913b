"""cascade's evaluation equals ir_measures' own calc_aggregate, measure by measure."""

from __future__ import annotations

import zlib

import ir_measures
import pandas as pd
import pytest

from cascade.eval.datasets import load_dataset
from cascade.eval.measures import evaluate, parse_measures


def test_aggregates_equal_ir_measures_calc_aggregate():
    data = load_dataset("sample")
    qrels = data.qrels
    # A deterministic, imperfect run: every judged document, scored by a hash of its ids.
    run = qrels[["qid", "docno"]].copy()
    run["score"] = [zlib.crc32(f"{q}/{d}".encode()) % 1000 / 7.0 for q, d in zip(run.qid, run.docno, strict=True)]
    run["rank"] = 0
    measures = parse_measures(["nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000", "AP(rel=2)", "P@5", "NumQ"])
    ours, perquery = evaluate(run, qrels, measures)
    theirs = ir_measures.calc_aggregate(
        measures,
        pd.DataFrame(
            {"query_id": qrels.qid.astype(object), "doc_id": qrels.docno.astype(object), "relevance": qrels.label}
        ),
        pd.DataFrame({"query_id": run.qid.astype(object), "doc_id": run.docno.astype(object), "score": run.score}),
    )
    assert ours == pytest.approx({str(m): v for m, v in theirs.items()}, abs=1e-12)
    assert set(perquery["measure"]) == set(ours)
    assert perquery[perquery.measure == "NumQ"]["value"].sum() == ours["NumQ"] == qrels.qid.nunique()


def test_unknown_measure_is_a_cascade_error():
    from cascade.core.errors import CascadeError

    with pytest.raises(CascadeError, match="unknown measure 'nDCG@'"):
        parse_measures(["nDCG@"])
