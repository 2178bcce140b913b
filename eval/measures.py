"""Measures are ir_measures objects; cascade adds parsing with clear errors and per-query output.

Aggregates are ir_measures' own (mean over the queries that have judgments and appear in the run, as
trec_eval does); per-query values come from the same evaluator so both always agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from eval.errors import CascadeError

DEFAULT_MEASURES = ("nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000", "AP(rel=2)")


def parse_measures(names: Sequence[str], where: str | None = None) -> list:
    """Parse measure strings into ir_measures objects; the message names the bad one."""
    import ir_measures

    parsed = []
    for name in names:
        try:
            parsed.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError, AttributeError):
            raise CascadeError(f"unknown measure {name!r} (ir_measures syntax, e.g. nDCG@10)", where=where) from None
    return parsed


def canonical(measure: object) -> str:
    return str(measure)


def _ir_frames(run: pd.DataFrame, qrels: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    run_ir = pd.DataFrame(
        {
            "query_id": run["qid"].astype(str).astype(object),
            "doc_id": run["docno"].astype(str).astype(object),
            "score": run["score"].astype("float64"),
        }
    )
    qrels_ir = pd.DataFrame(
        {
            "query_id": qrels["qid"].astype(str).astype(object),
            "doc_id": qrels["docno"].astype(str).astype(object),
            "relevance": qrels["label"].astype("int64"),
        }
    )
    return run_ir, qrels_ir


def evaluate(run: pd.DataFrame, qrels: pd.DataFrame, measures: Sequence) -> tuple[dict[str, float], pd.DataFrame]:
    """Return ({canonical measure: mean}, per-query frame `qid, measure, value`)."""
    import ir_measures

    run_ir, qrels_ir = _ir_frames(run, qrels)
    evaluator = ir_measures.evaluator(list(measures), qrels_ir)
    rows = [(m.query_id, canonical(m.measure), float(m.value)) for m in evaluator.iter_calc(run_ir)]
    perquery = pd.DataFrame(rows, columns=["qid", "measure", "value"])
    aggregate = {canonical(m): float(v) for m, v in evaluator.calc_aggregate(run_ir).items()}
    ordered = {canonical(m): aggregate.get(canonical(m), float("nan")) for m in measures}
    return ordered, perquery
