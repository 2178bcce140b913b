"""One tie rule for every measure (trec_eval's: score descending, then docno descending), checked against
pytrec_eval itself on runs full of ties; and evaluations with nothing to score say so instead of printing 0 or nan."""

from __future__ import annotations

import json
from pathlib import Path

import ir_measures
import numpy as np
import pandas as pd
import pytest
import pytrec_eval

from cascade.core.errors import CascadeError
from cascade.eval.measures import coverage_note, evaluate, parse_measures, tie_order

# cascade's measure -> (pytrec_eval measure, relevance_level)
PYTREC = {
    "nDCG@10": ("ndcg_cut_10", 1),
    "nDCG": ("ndcg", 1),
    "AP": ("map", 1),
    "AP(rel=2)": ("map", 2),
    "AP@10": ("map_cut_10", 1),
    "P@5": ("P_5", 1),
    "P(rel=2)@10": ("P_10", 2),
    "R@20": ("recall_20", 1),
    "R(rel=2)@1000": ("recall_1000", 2),
    "RR": ("recip_rank", 1),
    "RR(rel=2)": ("recip_rank", 2),
    "Rprec": ("Rprec", 1),
}


def tied(seed: int, queries: int = 12, docs: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(run, qrels) with scores from a handful of values, so most documents share their score with others;
    docnos of different lengths (d7 vs d10 vs x3), so byte order and numeric order differ."""
    rng = np.random.default_rng(seed)
    run_rows, qrel_rows = [], []
    for q in range(queries):
        qid = f"q{q}"
        pool = [f"{rng.choice(['d', 'x', 'doc'])}{i}" for i in rng.permutation(docs * 2)[:docs]]
        for docno in pool:
            run_rows.append((qid, docno, float(rng.integers(0, 4)) / 2))
        for docno in rng.choice(pool + [f"unretrieved{q}"], size=15, replace=False):
            qrel_rows.append((qid, str(docno), int(rng.choice([0, 0, 1, 2, 3]))))
    run_rows.append(("unjudged", "d1", 1.0))  # a query of the run without judgments is not scored
    run = pd.DataFrame(run_rows, columns=["qid", "docno", "score"])
    run["rank"] = run.groupby("qid").cumcount() + 1
    return run, pd.DataFrame(qrel_rows, columns=["qid", "docno", "label"])


def pytrec(run: pd.DataFrame, qrels: pd.DataFrame, name: str) -> dict[str, float]:
    measure, level = PYTREC[name]
    qrels_d: dict = {}
    for q, d, v in qrels.itertuples(index=False):
        qrels_d.setdefault(q, {})[d] = int(v)
    run_d: dict = {}
    for q, d, s in run[["qid", "docno", "score"]].itertuples(index=False):
        run_d.setdefault(q, {})[d] = float(s)
    family = measure.rsplit("_", 1)[0] if measure[-1].isdigit() else measure
    evaluator = pytrec_eval.RelevanceEvaluator(qrels_d, {family}, relevance_level=level)
    return {q: values[measure] for q, values in evaluator.evaluate(run_d).items()}


def trec_rr(run: pd.DataFrame, qrels: pd.DataFrame, rel: int, cutoff: int) -> dict[str, float]:
    """RR@cutoff by hand, in trec_eval's order (score descending, then docno descending)."""
    relevant = set(map(tuple, qrels[qrels["label"] >= rel][["qid", "docno"]].to_numpy()))
    out = {}
    for qid in sorted(set(qrels["qid"])):
        ranked = run[run["qid"] == qid].sort_values(["score", "docno"], ascending=False)["docno"].tolist()
        hits = [i for i, d in enumerate(ranked[:cutoff], 1) if (qid, d) in relevant]
        out[qid] = 1.0 / hits[0] if hits else 0.0
    return out


@pytest.mark.parametrize("seed", range(6))
def test_every_measure_equals_pytrec_eval_on_tied_runs(seed):
    run, qrels = tied(seed)
    aggregate, perquery = evaluate(run, qrels, parse_measures(list(PYTREC)))
    judged = sorted(set(qrels["qid"]))
    for name in PYTREC:
        ours = perquery[perquery["measure"] == name].set_index("qid")["value"]
        assert sorted(ours.index) == judged, name
        theirs = pytrec(run, qrels, name)
        for qid in judged:
            assert ours[qid] == pytest.approx(theirs[qid], abs=1e-9), (name, qid)
        assert aggregate[name] == pytest.approx(np.mean([theirs[q] for q in judged]), abs=1e-12), name


@pytest.mark.parametrize("seed", range(6))
def test_rr_at_10_follows_trec_eval_order_where_msmarco_did_not(seed):
    run, qrels = tied(seed)
    measures = parse_measures(["RR@10", "RR(rel=2)@10"])
    aggregate, perquery = evaluate(run, qrels, measures)
    for measure, rel in zip(measures, (1, 2), strict=True):
        expected = trec_rr(run, qrels, rel, 10)
        ours = perquery[perquery["measure"] == str(measure)].set_index("qid")["value"].to_dict()
        assert ours == pytest.approx(expected, abs=1e-12)
        assert aggregate[str(measure)] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)


def test_the_tied_runs_do_split_the_providers():
    """Without the rule, ir_measures' msmarco provider (RR@k) orders ties by docno ascending: the runs above do
    tell the rules apart, so the tests above are not passing by luck."""
    differ = 0
    for seed in range(6):
        run, qrels = tied(seed)
        raw = ir_measures.calc_aggregate(
            parse_measures(["RR@10"]),
            qrels.rename(columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"}),
            run.rename(columns={"qid": "query_id", "docno": "doc_id"})[["query_id", "doc_id", "score"]],
        )
        ours, _ = evaluate(run, qrels, parse_measures(["RR@10"]))
        differ += abs(next(iter(raw.values())) - ours["RR@10"]) > 1e-9
    assert differ >= 3


def test_runs_without_ties_score_as_before():
    """Strictly ordered scores are passed on as the same order: every provider's value is unchanged."""
    run, qrels = tied(0)
    run["score"] = np.random.default_rng(1).permutation(len(run)).astype(float) / 3.0
    measures = parse_measures(["nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000", "AP(rel=2)", "P@5"])
    ours, _ = evaluate(run, qrels, measures)
    theirs = ir_measures.calc_aggregate(
        measures,
        qrels.rename(columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"}),
        run.rename(columns={"qid": "query_id", "docno": "doc_id"})[["query_id", "doc_id", "score"]],
    )
    assert ours == pytest.approx({str(m): v for m, v in theirs.items()}, abs=1e-12)


def test_tie_order_is_score_then_docno_descending_in_byte_order():
    run = pd.DataFrame(
        {"qid": ["q", "q", "q", "q", "p"], "docno": ["d10", "d9", "D9", "é1", "z"], "score": [1.0, 1.0, 1.0, 1.0, 0.0]}
    )
    order = tie_order(run)
    assert order["qid"].tolist() == ["p", "q", "q", "q", "q"]
    expected = sorted(["d10", "d9", "D9", "é1"], key=lambda d: d.encode("utf-8"), reverse=True)
    assert order["docno"].tolist()[1:] == expected == ["é1", "d9", "d10", "D9"]


def test_per_query_frame_is_sorted_and_the_same_for_a_shuffled_run():
    run, qrels = tied(2)
    measures = parse_measures(["nDCG@10", "RR@10", "AP"])
    first = evaluate(run, qrels, measures)
    second = evaluate(run.sample(frac=1.0, random_state=3), qrels.sample(frac=1.0, random_state=4), measures)
    perquery = first[1]
    assert list(zip(perquery["qid"], perquery["measure"], strict=True)) == sorted(
        zip(perquery["qid"], perquery["measure"], strict=True)
    )
    assert first[0] == second[0]  # bit for bit: summed in the same order
    pd.testing.assert_frame_equal(first[1], second[1])


# --- nothing to score ---------------------------------------------------------------------------------------------

RUN = pd.DataFrame({"qid": ["q1", "q1"], "docno": ["d1", "d2"], "score": [2.0, 1.0], "rank": [1, 2]})
QRELS = pd.DataFrame({"qid": ["q1", "q2"], "docno": ["d1", "d5"], "label": [1, 1]})


@pytest.mark.parametrize(
    ("run", "qrels", "pattern"),
    [
        (RUN.iloc[:0], QRELS, "the run is empty"),
        (RUN, QRELS.iloc[:0], "the qrels hold no judgments"),
        (RUN.assign(qid="q9"), QRELS, r"no query of the run is judged in the qrels \(run: 1 query, e.g. 'q9'; "),
    ],
)
def test_nothing_to_score_is_an_error(run, qrels, pattern):
    with pytest.raises(CascadeError, match=pattern):
        evaluate(run, qrels, parse_measures(["nDCG@10", "RR@10"]))


def test_partial_overlap_is_counted():
    run = pd.concat([RUN, RUN.assign(qid="q7")], ignore_index=True)
    note = coverage_note(run, QRELS)
    assert note == (
        "1 of 2 judged queries have no results in the run and count 0 (e.g. 'q2'); "
        "1 of the run's 2 queries have no judgments and are not scored (e.g. 'q7')"
    )
    assert coverage_note(RUN, QRELS.iloc[:1]) is None


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d5 1\n")
    (tmp_path / "empty-qrels.txt").write_text("")
    (tmp_path / "header-qrels.tsv").write_text("query-id\tcorpus-id\tscore\n")
    (tmp_path / "run.trec").write_text("q1 Q0 d2 1 2 t\nq1 Q0 d1 2 2 t\n")  # a tie: d2 ranks first (docno desc)
    (tmp_path / "empty.trec").write_text("")
    (tmp_path / "other.trec").write_text("q9 Q0 d1 1 2 t\n")
    return tmp_path


def one_line_error(result, pattern: str) -> None:
    import re

    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(pattern, lines[0]), result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("qrels", "run", "pattern"),
    [
        ("qrels.txt", "empty.trec", r"empty\.trec: the run is empty"),
        ("qrels.txt", "other.trec", r"other\.trec: no query of the run is judged in the qrels"),
        ("empty-qrels.txt", "run.trec", r"empty-qrels\.txt: the qrels hold no judgments"),
        ("header-qrels.tsv", "run.trec", r"header-qrels\.tsv: the qrels hold no judgments"),
    ],
)
def test_cli_eval_refuses_nothing_to_score(cascade, files, qrels, run, pattern):
    one_line_error(cascade("eval", files / qrels, files / "run.trec", files / run), pattern)


def test_cli_eval_warns_on_partial_overlap_and_prints_decimals(cascade, files):
    result = cascade("eval", files / "qrels.txt", files / "run.trec", "-m", "RR", "-m", "P@1", "--decimals", "6")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"cascade: warning: {files / 'run.trec'}: 1 of 2 judged queries have no results in the run and count 0 "
        "(e.g. 'q2')"
    ]
    # d2 (unjudged) before d1 under the tie rule: RR 1/2 on q1, 0 on q2
    assert result.stdout.splitlines()[1] == f"{files / 'run.trec'}\t0.250000\t0.000000"


def dataset_folder(root: Path, queries: list[tuple[str, str]], qrels: str) -> Path:
    root.mkdir()
    docs = [("d1", "the lighthouse keeper"), ("d2", "espresso under pressure"), ("d3", "circuit breakers trip")]
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return root


CONFIG = "name: tiny\ndataset: {{path: {path}}}\nmeasures: [nDCG@10]\npipeline:\n  - bm25: {{k: 10}}\n"


def test_cli_run_refuses_qrels_without_a_query_of_the_run(cascade, tmp_path):
    data = dataset_folder(tmp_path / "data", [("q1", "lighthouse keeper")], "q7\td1\t1\n")
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG.format(path=data))
    result = cascade("run", config, "--out", tmp_path / "runs", "--cache", tmp_path / "cache", "-q")
    one_line_error(result, "has no judged queries")
    assert not (tmp_path / "runs" / "tiny").exists()


def test_cli_run_warns_when_a_judged_query_has_no_results(cascade, tmp_path):
    data = dataset_folder(tmp_path / "data", [("q1", "lighthouse keeper"), ("q2", "zzzqqq")], "q1\td1\t1\nq2\td2\t1\n")
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG.format(path=data))
    result = cascade("run", config, "--out", tmp_path / "runs", "--cache", tmp_path / "cache", "-q")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("cascade: warning:")]
    assert warnings == [
        "cascade: warning: tiny on folder:data: 1 of 2 judged queries have no results in the run and count 0 "
        "(e.g. 'q2')"
    ]
    metrics = json.loads((tmp_path / "runs" / "tiny" / "metrics.json").read_text())
    assert metrics["measures"]["nDCG@10"] == pytest.approx(0.5)
