"""FollowIR p-MRR and InstructIR Robustness@10: the readers, worked examples from the formulas, end to end."""

from __future__ import annotations

import gzip
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cascade.core.errors import CascadeError
from cascade.eval.instructions import (
    newly_irrelevant,
    p_mrr,
    p_mrr_changes,
    rank_change_score,
    read_followir,
    read_instructir,
    robustness_at_k,
)
from cascade.eval.measures import evaluate, parse_measures

FIXTURES = Path(__file__).resolve().parents[1] / "eval" / "datasets" / "sample"
FOLLOWIR = FIXTURES / "followir"
INSTRUCTIR = FIXTURES / "instructir"


def run_of(ranking: dict[str, list[str]]) -> pd.DataFrame:
    """A run from ranked lists: descending scores, so the list order is the rank."""
    rows = [(q, d, float(len(docs) - i)) for q, docs in ranking.items() for i, d in enumerate(docs)]
    return pd.DataFrame(rows, columns=["qid", "docno", "score"]).assign(rank=0)


def qrels_of(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["qid", "docno", "label"])


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def copy_fixture(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / src.name))


# --- FollowIR reader ---------------------------------------------------------------------------------------------


def test_read_followir_fixture():
    data = read_followir(FOLLOWIR)
    assert data.queries.columns.tolist() == ["qid", "query", "instruction_og", "instruction_changed"]
    assert data.queries.qid.tolist() == ["301", "302", "303"]
    assert len(data.corpus) == 16 and data.corpus[0] == {
        "docno": "d01",
        "title": "Picking by lantern",
        "text": data.corpus[0]["text"],
    }
    assert len(data.qrels_og) == len(data.qrels_changed) == 15
    # the candidate pool comes from top_ranked.jsonl, which holds an unjudged document (d16) for 303
    assert data.candidates.groupby("qid").size().to_dict() == {"301": 6, "302": 6, "303": 5}
    assert "d16" in set(data.candidates[data.candidates.qid == "303"].docno)
    changed = data.queries_for("changed")
    assert changed.columns.tolist() == ["qid", "query", "instruction"]
    assert "not relevant" in changed.instruction.iloc[0]
    # the changed instructions exclude machines, timetables and deserts
    assert newly_irrelevant(data.qrels_og, data.qrels_changed).values.tolist() == [
        ["301", "d02"],
        ["301", "d03"],
        ["302", "d08"],
        ["302", "d09"],
        ["303", "d12"],
    ]


def test_followir_pool_without_top_ranked_is_the_judged_documents(tmp_path):
    folder = copy_fixture(FOLLOWIR, tmp_path)
    (folder / "top_ranked.jsonl").unlink()
    pool = read_followir(folder).candidates
    assert pool[pool.qid == "303"].docno.tolist() == ["d11", "d12", "d13", "d14"]
    assert len(pool) == 15


def test_followir_query_without_changed_qrels_names_file_and_query(tmp_path):
    folder = copy_fixture(FOLLOWIR, tmp_path)
    path = folder / "qrels_changed" / "test.tsv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.startswith("302\t")))
    with pytest.raises(CascadeError) as exc:
        read_followir(folder)
    assert one_line(exc) == f"{path}: query '302' has no changed-instruction judgments"


def test_followir_query_line_missing_a_field_names_file_and_line(tmp_path):
    folder = copy_fixture(FOLLOWIR, tmp_path)
    path = folder / "queries.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"instruction_changed"', '"instruction_changd"')
    path.write_text("".join(lines))
    with pytest.raises(CascadeError) as exc:
        read_followir(folder)
    assert one_line(exc) == f"{path}:2: FollowIR query line lacks field 'instruction_changed'"


def test_followir_missing_file_and_bad_json_are_one_line(tmp_path):
    folder = copy_fixture(FOLLOWIR, tmp_path)
    (folder / "qrels_og" / "test.tsv").unlink()
    with pytest.raises(CascadeError, match=r"qrels_og: no test.tsv \(or test.tsv.gz\) in the folder$") as exc:
        read_followir(folder)
    one_line(exc)
    folder = copy_fixture(FOLLOWIR, tmp_path / "again")
    with open(folder / "queries.jsonl", "a") as handle:
        handle.write("{not json\n")
    with pytest.raises(CascadeError, match=r"queries.jsonl:4: not a JSON FollowIR query line") as exc:
        read_followir(folder)
    one_line(exc)


def test_followir_query_without_candidates_is_an_error(tmp_path):
    folder = copy_fixture(FOLLOWIR, tmp_path)
    path = folder / "top_ranked.jsonl"
    path.write_text("".join(line for line in path.read_text().splitlines(True) if '"303"' not in line))
    with pytest.raises(CascadeError) as exc:
        read_followir(folder)
    assert one_line(exc) == f"{path}: query '303' has no candidates"


def test_followir_unjudged_query_and_unknown_candidate_are_left_out_with_a_warning(tmp_path, capsys):
    folder = copy_fixture(FOLLOWIR, tmp_path)
    with open(folder / "queries.jsonl", "a") as handle:
        handle.write('{"_id": "304", "text": "t", "instruction_og": "a", "instruction_changed": "b"}\n')
    with open(folder / "top_ranked.jsonl", "a") as handle:
        handle.write('{"qid": "301", "pid": "d99"}\n')
    data = read_followir(folder)
    assert data.queries.qid.tolist() == ["301", "302", "303"] and "d99" not in set(data.candidates.docno)
    err = capsys.readouterr().err
    assert "1 queries have no judgments and are left out" in err
    assert "1 candidates are not in the corpus and are left out" in err


# --- p-MRR worked examples ---------------------------------------------------------------------------------------


def test_rank_change_score_worked_examples():
    assert rank_change_score(1, 4) == pytest.approx(0.75)  # dropped 1 -> 4: 1 - 1/4
    assert rank_change_score(4, 1) == pytest.approx(-0.75)  # rose 4 -> 1: 1/4 - 1
    assert rank_change_score(3, 3) == 0.0
    assert rank_change_score(2, 1) == pytest.approx(-0.5)  # 1/2 - 1
    assert rank_change_score(2, 10) == pytest.approx(0.8)  # 1 - 2/10


def test_p_mrr_averages_documents_then_queries():
    qrels_og = qrels_of([("A", "x", 1), ("A", "y", 1), ("A", "z", 1), ("B", "u", 2), ("B", "v", 0)])
    qrels_changed = qrels_of([("A", "x", 0), ("A", "y", 0), ("A", "z", 1), ("B", "u", 0), ("B", "v", 0)])
    run_og = run_of({"A": ["x", "y", "z", "w"], "B": ["v", "w", "t", "u"]})
    # A: x 1 -> 4 (+0.75), y 2 -> 1 (-0.5): mean 0.125.  B: u 4 -> 1 (-0.75).
    run_changed = run_of({"A": ["y", "z", "w", "x"], "B": ["u", "v", "w", "t"]})
    value, perquery = p_mrr(run_og, run_changed, qrels_og, qrels_changed)
    assert perquery.to_dict("records") == [
        {"qid": "A", "p_mrr": pytest.approx(0.125), "docs": 2},
        {"qid": "B", "p_mrr": pytest.approx(-0.75), "docs": 1},
    ]
    assert value == pytest.approx((0.125 - 0.75) / 2)
    # the same runs for both instructions: no change, p-MRR 0
    assert p_mrr(run_og, run_og, qrels_og, qrels_changed)[0] == 0.0


def test_p_mrr_unretrieved_document_ranks_one_past_the_run():
    qrels_og = qrels_of([("A", "x", 1), ("A", "y", 1)])
    qrels_changed = qrels_of([("A", "x", 0), ("A", "y", 1)])
    # x is ranked 1 originally; the changed run (3 documents) leaves it out: rank 4, so 1 - 1/4
    changes = p_mrr_changes(run_of({"A": ["x", "y"]}), run_of({"A": ["y", "a", "b"]}), qrels_og, qrels_changed)
    assert changes[["docno", "og_rank", "new_rank"]].values.tolist() == [["x", 1, 4]]
    assert changes.p_mrr.tolist() == [pytest.approx(0.75)]
    # absent from the original run of 2 documents (rank 3), first in the changed run: 1/3 - 1
    changes = p_mrr_changes(run_of({"A": ["y", "a"]}), run_of({"A": ["x", "y"]}), qrels_og, qrels_changed)
    assert changes.og_rank.tolist() == [3] and changes.p_mrr.tolist() == [pytest.approx(-2 / 3)]


def test_p_mrr_ranks_by_score_not_by_the_rank_column():
    qrels_og, qrels_changed = qrels_of([("A", "x", 1)]), qrels_of([("A", "x", 0)])
    run_og = pd.DataFrame({"qid": ["A", "A"], "docno": ["y", "x"], "score": [1.0, 2.0], "rank": [1, 2]})
    run_changed = run_of({"A": ["y", "x"]})
    assert p_mrr(run_og, run_changed, qrels_og, qrels_changed)[0] == pytest.approx(0.5)  # 1 -> 2


def test_p_mrr_skips_queries_without_changes_and_warns_on_missing_runs(capsys):
    qrels_og = qrels_of([("A", "x", 1), ("B", "u", 1), ("C", "c", 1)])
    qrels_changed = qrels_of([("A", "x", 0), ("B", "u", 1), ("C", "c", 0)])
    run = run_of({"A": ["x"], "B": ["u"]})
    value, perquery = p_mrr(run, run_of({"A": ["y", "x"], "B": ["u"]}), qrels_og, qrels_changed)
    assert perquery.qid.tolist() == ["A"] and value == pytest.approx(0.5)
    assert "1 queries are missing from the original or changed run" in capsys.readouterr().err
    nothing, empty = p_mrr(run, run, qrels_og, qrels_of([("A", "x", 1), ("B", "u", 1), ("C", "c", 1)]))
    assert math.isnan(nothing) and empty.empty


def test_p_mrr_query_without_changed_qrels_is_an_error():
    with pytest.raises(CascadeError, match="query 'B' has no changed-instruction judgments"):
        p_mrr(
            run_of({"A": ["x"]}),
            run_of({"A": ["x"]}),
            qrels_of([("A", "x", 1), ("B", "u", 1)]),
            qrels_of([("A", "x", 0)]),
        )


def test_p_mrr_end_to_end_on_the_fixture():
    data = read_followir(FOLLOWIR)
    pool = data.candidates.groupby("qid").docno.apply(list).to_dict()
    assert pool["301"] == ["d01", "d02", "d03", "d04", "d05", "d15"]
    run_og = run_of(
        {"301": ["d02", "d01", "d03", "d05", "d04", "d15"], "302": ["d08", "d06", "d07", "d09", "d10"],
         "303": ["d11", "d13", "d14", "d12", "d16"]}
    )  # fmt: skip
    run_changed = run_of(
        {"301": ["d01", "d05", "d04", "d03", "d15", "d02"], "302": ["d08", "d06", "d07", "d10"],
         "303": ["d12", "d11", "d13", "d14", "d16"]}
    )  # fmt: skip
    # 301: d02 1 -> 6 (1 - 1/6), d03 3 -> 4 (1 - 3/4): 13/24
    # 302: d08 1 -> 1 (0), d09 4 -> unretrieved in a 4-document run, rank 5 (1 - 4/5): 1/10
    # 303: d12 4 -> 1 (1/4 - 1): -3/4
    value, perquery = p_mrr(run_og, run_changed, data.qrels_og, data.qrels_changed)
    assert perquery.p_mrr.tolist() == pytest.approx([13 / 24, 1 / 10, -3 / 4])
    assert perquery.docs.tolist() == [2, 2, 1]
    assert value == pytest.approx((13 / 24 + 1 / 10 - 3 / 4) / 3)  # = -13/360
    # the original run is scored with the original judgments as usual: 301's top document is relevant
    ndcg, _ = evaluate(run_og, data.qrels_og, parse_measures(["RR@10"]))
    assert ndcg["RR@10"] == 1.0


# --- InstructIR ----------------------------------------------------------------------------------------------------


def test_read_instructir_fixture_and_gzip(tmp_path):
    data = read_instructir(INSTRUCTIR)
    assert data.queries.columns.tolist() == ["qid", "query", "instruction", "base_qid"]
    assert data.base_of == {"501_1": "501", "501_2": "501", "502_1": "502", "502_2": "502"}
    assert data.qrels.values.tolist()[0] == ["501_1", "8801_1", 1]
    assert len(data.corpus) == 12
    folder = copy_fixture(INSTRUCTIR, tmp_path)
    for name in ("queries.jsonl", "corpus.jsonl"):
        with gzip.open(folder / f"{name}.gz", "wt") as handle:
            handle.write((folder / name).read_text())
        (folder / name).unlink()
    again = read_instructir(folder)
    assert again.queries.equals(data.queries) and again.corpus == data.corpus


def test_instructir_line_missing_base_query_id_names_file_and_line(tmp_path):
    folder = copy_fixture(INSTRUCTIR, tmp_path)
    path = folder / "queries.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(', "base_query_id": "502"', "")
    path.write_text("".join(lines))
    with pytest.raises(CascadeError) as exc:
        read_instructir(folder)
    assert one_line(exc) == f"{path}:3: InstructIR query line lacks field 'base_query_id'"


def test_instructir_judgments_for_an_unknown_query_are_an_error(tmp_path):
    folder = copy_fixture(INSTRUCTIR, tmp_path)
    path = folder / "qrels" / "test.tsv"
    with open(path, "a") as handle:
        handle.write("503_1\t8803\t1\n")
    with pytest.raises(CascadeError) as exc:
        read_instructir(folder)
    assert one_line(exc) == f"{path}: judgments for query '503_1', which is not in queries.jsonl"


def test_instructir_without_corpus_says_so(tmp_path):
    folder = copy_fixture(INSTRUCTIR, tmp_path)
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(CascadeError) as exc:
        read_instructir(folder)
    assert one_line(exc) == f"{folder}: no corpus.jsonl (or corpus.jsonl.gz) in the folder"


def test_robustness_is_the_mean_of_each_base_querys_worst_instance():
    perquery = pd.DataFrame(
        [
            ("a1", "nDCG@10", 1.0), ("a2", "nDCG@10", 0.4), ("a3", "nDCG@10", 0.7),
            ("b1", "nDCG@10", 0.6),
            ("c1", "nDCG@10", 0.0), ("c2", "nDCG@10", 0.9),
            ("a2", "P@5", 1.0),
        ],
        columns=["qid", "measure", "value"],
    )  # fmt: skip
    base_of = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "c1": "c", "c2": "c"}
    robustness, mean, per_base = robustness_at_k(perquery, base_of, "nDCG@10")
    assert per_base.to_dict("records") == [
        {"base_qid": "a", "instances": 3, "mean": pytest.approx(0.7), "worst": 0.4},
        {"base_qid": "b", "instances": 1, "mean": 0.6, "worst": 0.6},
        {"base_qid": "c", "instances": 2, "mean": 0.45, "worst": 0.0},
    ]
    assert robustness == pytest.approx((0.4 + 0.6 + 0.0) / 3)
    assert mean == pytest.approx((1.0 + 0.4 + 0.7 + 0.6 + 0.0 + 0.9) / 6)
    with pytest.raises(CascadeError, match="query 'c2' has no base query"):
        robustness_at_k(perquery, {k: v for k, v in base_of.items() if k != "c2"})
    with pytest.raises(CascadeError, match=r"no per-query nDCG@20 values \(measures here: P@5, nDCG@10\)"):
        robustness_at_k(perquery, base_of, "nDCG@20")


def test_robustness_end_to_end_on_the_fixture():
    data = read_instructir(INSTRUCTIR)
    run = run_of(
        {
            "501_1": ["8801_1", "8801_0", "8801_2"],  # target first: nDCG@10 = 1
            "501_2": ["8801_0", "8801_1", "8801_2", "8803"],  # target third: 1/log2(4) = 0.5
            "502_1": ["8802_0", "8802_1", "8808"],  # target second: 1/log2(3)
            "502_2": ["8802_2", "8806", "8802_0"],  # target first: 1
        }
    )
    aggregate, perquery = evaluate(run, data.qrels, parse_measures(["nDCG@10"]))
    robustness, mean, per_base = robustness_at_k(perquery, data.base_of)
    second = 1 / math.log2(3)
    assert per_base.worst.tolist() == pytest.approx([0.5, second])
    assert robustness == pytest.approx((0.5 + second) / 2)
    assert mean == pytest.approx((1 + 0.5 + second + 1) / 4) == pytest.approx(aggregate["nDCG@10"])
