"""Measures are ir_measures objects; cascade adds parsing with clear errors, one tie rule and per-query output.

Aggregates are ir_measures' own: the mean over every judged query, a judged query missing from the run counting
as 0 (ir_measures fills it in with the measure's default, like `trec_eval -c`); queries of the run without
judgments are not scored. Per-query values come from the same evaluator, so both always agree.

One tie rule for every measure and provider: within a query, documents rank by score descending, then by docno
descending (byte order), which is trec_eval's own order. ir_measures hands measures to different providers that
break ties differently (pytrec_eval as above; its msmarco provider, which computes `RR@k`, by docno ascending), so
`evaluate` first orders each query's documents by this rule and passes on only that order, as strictly decreasing
scores n, n-1, ..., 1: every provider then sees the same ranking, and a run without ties scores exactly as before.

The per-query frame is sorted by (qid, measure) and the aggregates are summed in that order, so the same run and
qrels give the same bytes in every process. Nothing to score (an empty run or qrels, or no query in common) is a
CascadeError; a partial overlap is legitimate and `coverage_note` words it for a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cascade.core.errors import CascadeError

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


TIE_RULE = "score descending, then docno descending (trec_eval's order)"


def _nested(qids: pd.Series, docnos: pd.Series, values: pd.Series, cast: type) -> dict[str, dict[str, float]]:
    """{qid: {docno: value}}: ir_measures' native input. Built once here, because every ir_measures provider
    otherwise converts a DataFrame again (0.5 s of a 1.5 s cached run on DL19)."""
    out: dict[str, dict] = {}
    for qid, docno, value in zip(qids.astype(str).tolist(), docnos.astype(str).tolist(), values.tolist(), strict=True):
        out.setdefault(qid, {})[docno] = cast(value)
    return out


def tie_order(run: pd.DataFrame) -> pd.DataFrame:
    """`qid, docno, score` in the one tie rule's order: qid ascending, score descending, docno descending.

    A (qid, docno) given twice keeps its last score (as a {qid: {docno: score}} mapping would)."""
    frame = pd.DataFrame(
        {
            "qid": run["qid"].astype(str).to_numpy(),
            "docno": run["docno"].astype(str).to_numpy(),
            "score": run["score"].astype("float64").to_numpy(),
        }
    ).drop_duplicates(["qid", "docno"], keep="last")
    return frame.sort_values(["qid", "score", "docno"], ascending=[True, False, False], kind="mergesort")


def _ranked(run: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{qid: {docno: n - position}}: each query's documents in `TIE_RULE`'s order, as strictly decreasing scores,
    so that no provider is left a tie to break its own way."""
    frame = tie_order(run)
    by_query = frame.groupby("qid", sort=False)
    order = by_query["qid"].transform("size").to_numpy() - by_query.cumcount().to_numpy()
    return _nested(frame["qid"], frame["docno"], pd.Series(order, index=frame.index), float)


def _examples(qids: set[str], n: int = 3) -> str:
    return "e.g. " + ", ".join(repr(q) for q in sorted(qids)[:n]) + (", ..." if len(qids) > n else "")


def _queries(qids: set[str]) -> str:
    """`2 queries, e.g. 'q1', 'q2'`: a count and the first few ids."""
    return f"{len(qids)} {'query' if len(qids) == 1 else 'queries'}, {_examples(qids)}"


def coverage_note(run: pd.DataFrame, qrels: pd.DataFrame, where: str | None = None) -> str | None:
    """Refuse what cannot be scored (CascadeError: empty qrels, empty run, no query in common); word a partial
    overlap, with its counts, for a warning (None when the run and the qrels have the same queries)."""
    judged = set(qrels["qid"].astype(str)) if len(qrels) else set()
    ranked = set(run["qid"].astype(str)) if len(run) else set()
    if not judged:
        raise CascadeError("the qrels hold no judgments: nothing to score against", where=where)
    if not ranked:
        raise CascadeError("the run is empty: no query has a ranked document", where=where)
    common = judged & ranked
    if not common:
        raise CascadeError(
            f"no query of the run is judged in the qrels (run: {_queries(ranked)}; qrels: {_queries(judged)})",
            where=where,
        )
    parts = []
    if len(common) < len(judged):
        missing = judged - common
        parts.append(
            f"{len(missing)} of {len(judged)} judged queries have no results in the run and count 0 "
            f"({_examples(missing)})"
        )
    if len(common) < len(ranked):
        unjudged = ranked - common
        parts.append(
            f"{len(unjudged)} of the run's {len(ranked)} queries have no judgments and are not scored "
            f"({_examples(unjudged)})"
        )
    return "; ".join(parts) or None


def evaluate(
    run: pd.DataFrame, qrels: pd.DataFrame, measures: Sequence, *, where: str | None = None
) -> tuple[dict[str, float], pd.DataFrame]:
    """Return ({canonical measure: aggregate}, per-query frame `qid, measure, value` sorted by qid and measure).

    The aggregate is each measure's own ir_measures aggregator over the per-query values (added in the frame's
    order), so both always agree. Ties follow `TIE_RULE` for every measure; nothing to score is a CascadeError.
    """
    import ir_measures

    coverage_note(run, qrels, where)
    run_ir = _ranked(run)
    qrels_ir = _nested(qrels["qid"], qrels["docno"], qrels["label"], int)
    evaluator = ir_measures.evaluator(list(measures), qrels_ir)
    names = {canonical(m): m for m in measures}
    rows = [(str(m.query_id), canonical(m.measure), float(m.value)) for m in evaluator.iter_calc(run_ir)]
    rows.sort(key=lambda row: (row[0], row[1]))
    aggregators = {name: m.aggregator() for name, m in names.items()}
    for _, name, value in rows:
        aggregators[name].add(value)
    perquery = pd.DataFrame(rows, columns=["qid", "measure", "value"])
    aggregate = {name: float(agg.result()) if rows else float("nan") for name, agg in aggregators.items()}
    return aggregate, perquery
