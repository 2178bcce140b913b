"""Suites on the built-in sample: the NevIR pair protocol, instruction pools, FollowIR and InstructIR formats,
their run folders in the leaderboard, and bad input through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cascade.core.env import Context
from cascade.eval.negation import pair_measures, read_pairs
from cascade.eval.report import ReportOptions
from cascade.eval.report.board import build_board
from cascade.eval.report.markdown import leaderboard_markdown
from cascade.eval.report.runs import collect_runs
from cascade.pipelines.suites import load_pipelines, run_suite
from cascade.rankers.pool import Pool
from tests.test_cli_errors import assert_clean_failure

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "configs" / "sample"
SUITES = ROOT / "configs" / "suites"


@pytest.fixture(scope="module")
def suite_runs(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("suites")
    session = Context.open(None, cache_dir, 2, False)
    pipelines = [SAMPLE / "bm25.yaml", SAMPLE / "bm25-dense-rerank.yaml"]
    run_suite(SUITES / "sample-negation.yaml", pipelines, out, session)
    run_suite(SUITES / "sample-instruction.yaml", pipelines, out, session)
    return out


def test_negation_pairs_are_rescored_independently_from_pairs_tsv(suite_runs: Path) -> None:
    pairs = read_pairs(ROOT / "eval" / "datasets" / "sample" / "negation.jsonl")
    for name in ("bm25", "bm25-dense-rerank"):
        folder = suite_runs / "sample-negation" / "nevir-pairs" / name
        scores = pd.read_csv(folder / "pairs.tsv", sep="\t", dtype={"pair": str, "qid": str, "docno": str})
        assert len(scores) == 4 * len(pairs.table)
        # an independent scorer: plain dictionaries, strict inequalities (a tie is wrong)
        s = {(r.qid, r.docno): r.score for r in scores.itertuples()}
        right = [
            s[(f"{p}-q1", f"{p}-doc1")] > s[(f"{p}-q1", f"{p}-doc2")]
            and s[(f"{p}-q2", f"{p}-doc2")] > s[(f"{p}-q2", f"{p}-doc1")]
            for p in pairs.table["id"]
        ]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["measures"]["paired_accuracy"] == pytest.approx(sum(right) / len(right))
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["suite"] == "sample-negation"
        assert "pool(" in manifest["pipeline"]  # the protocol's pool stage is part of the recorded pipeline
        perquery = pd.read_csv(folder / "perquery.tsv", sep="\t", dtype={"qid": str})
        assert set(perquery["measure"]) == {"paired_accuracy", "pairwise_accuracy", "same_first"}
        assert perquery["qid"].nunique() == len(pairs.table)


def test_pair_measures_count_a_tie_as_wrong() -> None:
    rows = []
    for pair, (a, b, c, d) in {"right": (2, 1, 1, 2), "tie": (1, 1, 1, 2), "blind": (2, 1, 2, 1)}.items():
        rows += [
            (pair, f"{pair}-q1", f"{pair}-doc1", a),
            (pair, f"{pair}-q1", f"{pair}-doc2", b),
            (pair, f"{pair}-q2", f"{pair}-doc1", c),
            (pair, f"{pair}-q2", f"{pair}-doc2", d),
        ]
    scores = pd.DataFrame(rows, columns=["pair", "qid", "docno", "score"])
    table = pair_measures(scores).pivot(index="qid", columns="measure", values="value")
    assert table.loc["right"].to_dict() == {"paired_accuracy": 1.0, "pairwise_accuracy": 1.0, "same_first": 0.0}
    assert table.loc["tie"].to_dict() == {"paired_accuracy": 0.0, "pairwise_accuracy": 0.5, "same_first": 0.0}
    assert table.loc["blind"].to_dict() == {"paired_accuracy": 0.0, "pairwise_accuracy": 0.5, "same_first": 1.0}


def test_pool_stage_keeps_the_pool_and_floors_unreturned_documents() -> None:
    pools = pd.DataFrame({"qid": ["q", "q", "q"], "docno": ["a", "b", "c"]})
    upstream = pd.DataFrame({"qid": ["q", "q", "q"], "docno": ["a", "x", "b"], "score": [5.0, 4.0, 3.0]})
    run = Pool(pools).transform(upstream, None)
    assert run["docno"].tolist() == ["a", "b", "c"]
    assert run["score"].tolist() == [5.0, 3.0, 2.0]  # c was not returned: one below the lowest returned score
    assert run["rank"].tolist() == [1, 2, 3]


def test_instruction_pools_name_the_stages_that_ignore_instructions(suite_runs: Path) -> None:
    folder = suite_runs / "sample-instruction" / "sample"
    bm25 = json.loads((folder / "bm25" / "metrics.json").read_text())
    assert "nDCG@10" not in bm25["measures"]  # no instructed run is claimed for a pipeline that cannot read one
    assert bm25["summary"]["instruction"].startswith("not read by bm25")
    dense = json.loads((folder / "bm25-dense-rerank" / "metrics.json").read_text())
    assert "read by dense_rerank" in dense["summary"]["instruction"]
    assert "ignored by bm25" in dense["summary"]["instruction"]
    perquery = pd.read_csv(folder / "bm25-dense-rerank" / "perquery.tsv", sep="\t", dtype={"qid": str})
    wide = perquery.pivot(index="qid", columns="measure", values="value")
    assert len(wide) == 20
    difference = wide["nDCG@10"] - wide["nDCG@10 (no instruction)"]
    assert (wide["Δ nDCG@10"] - difference).abs().max() < 2e-6  # perquery.tsv keeps 6 decimals
    assert (wide["Δ nDCG@10"] != 0).any()  # the instruction changed the dense scores of some queries


def test_followir_and_instructir_formats_run_through_the_suite(suite_runs: Path) -> None:
    followir = suite_runs / "sample-instruction" / "followir" / "bm25-dense-rerank"
    metrics = json.loads((followir / "metrics.json").read_text())
    assert -1.0 <= metrics["measures"]["p-MRR"] <= 1.0
    assert (followir / "run.changed.trec").exists()
    assert not (suite_runs / "sample-instruction" / "followir" / "bm25").exists()  # skipped: cannot read one
    instructir = suite_runs / "sample-instruction" / "instructir" / "bm25"
    summary = json.loads((instructir / "metrics.json").read_text())["summary"]
    robustness = summary["robustness nDCG@10"]
    per_base = pd.read_csv(instructir / "robustness.tsv", sep="\t")
    assert robustness == pytest.approx(per_base["worst"].mean())
    assert robustness <= json.loads((instructir / "metrics.json").read_text())["measures"]["nDCG@10"] + 1e-12


def test_leaderboard_has_one_section_per_suite_with_summary_columns(suite_runs: Path) -> None:
    board = build_board(collect_runs(suite_runs), ReportOptions())
    assert {"sample-negation", "sample-instruction"} <= set(board.suites)
    text = leaderboard_markdown(board)
    assert "paired_accuracy" in text
    header = next(line for line in text.splitlines() if line.startswith("| pipeline") and "no instruction" in line)
    assert "| instruction |" in header  # the summary column of the instruction protocol


def test_a_nevir_line_missing_a_field_is_one_line_error(tmp_path: Path, cascade) -> None:
    pairs = tmp_path / "pairs.jsonl"
    good = {"id": "p1", "q1": "a cat", "q2": "not a cat", "doc1": "cats", "doc2": "dogs"}
    bad = {k: v for k, v in good.items() if k != "doc2"} | {"id": "p2"}
    pairs.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    suite = tmp_path / "neg.yaml"
    suite.write_text(f"suite: neg\ntasks:\n  - negation_pairs: {{pairs: {pairs}}}\n")
    out = tmp_path / "out"
    result = cascade("suite", suite, "-p", SAMPLE / "bm25.yaml", "--out", out, "-q")
    assert_clean_failure(result, r"pairs\.jsonl:2: missing field 'doc2'", out)


def test_an_unknown_task_kind_names_the_line(tmp_path: Path, cascade) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text("suite: bad\ntasks:\n  - negation_pairs: {pairs: sample}\n  - negations: {}\n")
    result = cascade("suite", suite, "-p", SAMPLE / "bm25.yaml", "--out", tmp_path / "out", "-q")
    assert_clean_failure(result, r"bad\.yaml:4: tasks\[1\]\.negations: unknown task kind", tmp_path / "out")


def test_pipelines_with_one_short_name_but_different_chains_keep_their_full_names(tmp_path: Path) -> None:
    paths = []
    for name, depth in (("dl19-x", 10), ("dl20-x", 20), ("dl20-y", 10)):
        dataset = f"msmarco-passage/{name.split('-')[0]}"
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\ndataset: {dataset}\npipeline:\n  - bm25: {{k: {depth}}}\n")
        paths.append(path)
    every, distinct = load_pipelines(paths)
    assert [r.label for r in every] == ["x", "x", "y"]
    assert sorted(r.label for r in distinct) == ["dl19-x", "dl20-x"]  # dl20-y is dl19-x's chain: run once


def test_resample_splits_a_trained_pipelines_queries_and_skips_untrained_ones(tmp_path: Path, cache_dir: Path) -> None:
    suite = tmp_path / "resample.yaml"
    suite.write_text("suite: rs\ntasks:\n  - resample: {rule: {rule: quantile, fraction: 0.5}}\n")
    session = Context.open(None, cache_dir, 2, False)
    outcomes = run_suite(suite, [SAMPLE / "bm25.yaml", SAMPLE / "bm25-ltr.yaml"], tmp_path / "out", session)
    skipped = {o.pipeline: o.note for o in outcomes if o.folder is None}
    assert "no stage is trained" in skipped["sample-bm25"]
    (done,) = [o for o in outcomes if o.folder is not None]
    metrics = json.loads((done.folder / "metrics.json").read_text())
    sides = pd.read_csv(done.folder / "splits.tsv", sep="\t", dtype={"qid": str})
    assert sides["side"].value_counts().to_dict() == {"interpolation": 50, "extrapolation": 49}
    perquery = pd.read_csv(done.folder / "perquery.tsv", sep="\t", dtype={"qid": str})
    values = perquery[perquery["measure"] == "nDCG@10"].merge(sides, on="qid")
    expected = values.groupby("side")["value"].mean()
    assert metrics["summary"]["interpolation nDCG@10"] == pytest.approx(expected["interpolation"], abs=1e-6)
    assert metrics["summary"]["extrapolation nDCG@10"] == pytest.approx(expected["extrapolation"], abs=1e-6)
