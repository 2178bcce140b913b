"""The `cv` suite task on the built-in sample, with the real LightGBM and Lucene: no query is scored by a model
that saw it, the folds are seeded, and bad input is one line naming its key."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cascade.core.env import Context
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import load_dataset
from cascade.eval.report import ReportOptions
from cascade.eval.report.board import build_board
from cascade.eval.report.markdown import leaderboard_markdown
from cascade.eval.report.runs import collect_runs
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config
from cascade.pipelines.suites import run_suite
from cascade.pipelines.suites.crossval import CV_MODELS, assign_folds
from cascade.rankers import BM25, LTR
from cascade.rankers.engine import execute
from tests.test_cli_errors import assert_clean_failure

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "configs" / "suites" / "sample-cv.yaml"
PIPELINE = ROOT / "configs" / "sample" / "bm25.yaml"


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("cv")
    session = Context(store=ArtifactStore(cache_dir), threads=2, progress=False)
    (outcome,) = run_suite(SUITE, [PIPELINE], out / "runs", session)
    assert outcome.folder is not None, outcome.note
    return outcome.folder


def read_run(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "run.trec", sep=" ", names=["qid", "q0", "docno", "rank", "score", "tag"], dtype=str)


def test_no_query_is_scored_by_a_model_that_saw_it(cv_run: Path, cache_dir: Path) -> None:
    manifest = json.loads((cv_run / "manifest.json").read_text())
    cv = manifest["cv"]
    assert manifest["protocol"] == "cross-validated" and cv["folds"] == 3 and cv["seed"] == 42
    assignment = cv["assignment"]["sample"]
    run = read_run(cv_run)
    sample = load_dataset("sample")
    assert set(run["qid"]) == set(assignment) == set(sample.queries["qid"])  # every query scored, each with a fold
    sizes = pd.Series(assignment).value_counts()
    assert sorted(sizes.index) == [1, 2, 3] and sizes.max() - sizes.min() <= 1
    for card in cv["models"]:
        held_out = {q for q, f in assignment.items() if f == card["fold"]}
        learnt = set(card["train_queries"].get("sample", [])) | set(card["dev_queries"].get("sample", []))
        assert held_out and learnt and not learnt & held_out  # its own fold is never in what it learnt from
        assert learnt <= set(assignment) - held_out


def test_each_query_is_ranked_by_its_folds_model(cv_run: Path, cache_dir: Path) -> None:
    """Rerank one query of each fold with that fold's model alone (the plain `ltr` stage): the run's order."""
    manifest = json.loads((cv_run / "manifest.json").read_text())
    assignment, store = manifest["cv"]["assignment"]["sample"], ArtifactStore(cache_dir)
    sample = load_dataset("sample")
    ctx = Context(store=store, corpus=sample.corpus, threads=2, progress=False)
    run = read_run(cv_run)
    for card in manifest["cv"]["models"]:
        qid = sorted(q for q, f in assignment.items() if f == card["fold"])[0]
        queries = sample.queries[sample.queries["qid"] == qid]
        model = store.path(CV_MODELS, card["model"])
        alone = execute([BM25(k1=0.9, b=0.4, k=1000), LTR(model=str(model), k=30)], queries, ctx).frame
        assert alone["docno"].head(30).tolist() == run.loc[run["qid"] == qid, "docno"].head(30).tolist()


def test_importances_and_protocol_label(cv_run: Path) -> None:
    manifest = json.loads((cv_run / "manifest.json").read_text())
    gains = manifest["cv"]["feature_importance_gain"]
    assert "score:bm25" in gains and any(k.startswith("lexical:") for k in gains) and max(gains.values()) > 0
    assert all("feature_importance_gain" in card for card in manifest["cv"]["models"])
    metrics = json.loads((cv_run / "metrics.json").read_text())
    assert metrics["summary"]["protocol"].startswith("cross-validated: 3 folds")
    assert 0.4 < metrics["measures"]["nDCG@10"] <= 1.0


def test_the_leaderboard_labels_each_row_with_its_protocol(cv_run: Path, cache_dir: Path, tmp_path: Path) -> None:
    """The cv row says cross-validated; a run whose model is a `train:` model (strict: other queries only) says
    strict; a run that trains nothing says neither."""
    root = cv_run.parent.parent.parent
    strict = ROOT / "configs" / "sample" / "bm25-ltr.yaml"
    for config in (strict, PIPELINE):
        run_config(load_config(config), config, root / "plain", cache_dir=cache_dir, progress=False)
    runs = {(run.suite, run.name): run for run in collect_runs(root)}
    assert runs["sample-cv", "sample-bm25-ltr-cv"].protocol == "cross-validated"
    assert runs["default", "sample-bm25-ltr"].protocol == "strict" and runs["default", "sample-bm25"].protocol is None
    text = leaderboard_markdown(build_board(list(runs.values()), ReportOptions()))
    cv_row = next(line for line in text.splitlines() if "cross-validated: 3 folds over sample" in line)
    assert cv_row.startswith("| sample-bm25-ltr-cv |")
    header = next(line for line in text.splitlines() if line.startswith("| pipeline") and "protocol" in line)
    assert header
    assert any(line.startswith("| sample-bm25-ltr |") and "| strict |" in line for line in text.splitlines())


def test_a_rerun_writes_the_same_run_and_finds_every_model(cv_run: Path, cache_dir: Path, tmp_path: Path) -> None:
    session = Context(store=ArtifactStore(cache_dir), threads=1, progress=False)
    (again,) = run_suite(SUITE, [PIPELINE], tmp_path / "runs", session)
    assert again.folder is not None
    for name in ("run.trec", "perquery.tsv", "metrics.json"):
        assert (again.folder / name).read_bytes() == (cv_run / name).read_bytes()
    stages = json.loads((again.folder / "manifest.json").read_text())["stages"]
    assert all(stage["cached"] for stage in stages)


def test_verify_reruns_a_cv_figure_through_the_suite(cv_run: Path, cache_dir: Path, tmp_path: Path, cascade) -> None:
    """A `kind: suite` regression config checks the cv figure (its `pool` names the pipelines pooled with it)."""
    value = json.loads((cv_run / "metrics.json").read_text())["measures"]["nDCG@10"]
    check = tmp_path / "cv-check.yaml"
    check.write_text(
        f"kind: suite\nname: sample-cv-bm25\nsuite: {SUITE}\ntask: cv\npipeline: {PIPELINE}\npool: []\n"
        f"expected:\n  tolerance: 1.0e-4\n  why: the sample's cv run\n  measures: {{nDCG@10: {value:.6f}}}\n"
    )
    result = cascade("verify", check, "--cache", cache_dir, "--threads", "2", "-q")
    assert result.returncode == 0, result.stderr
    assert "1 OK, 0 OKISH, 0 FAIL" in result.stdout
    missing = check.read_text().replace("pool: []", "pool: [nowhere.yaml]")
    check.write_text(missing)
    assert_clean_failure(cascade("verify", check, "-q"), r"cv-check\.yaml:6: pool\[0\]: no such file: nowhere\.yaml")


def test_pipelines_with_one_short_name_are_one_pool(tmp_path: Path, cache_dir: Path) -> None:
    """As dl19-X and dl20-X: a second dataset (40 of the sample's queries under new ids, as a BEIR folder) pooled
    with the sample; one assignment over both, and no model learns from a query of its own fold in either."""
    sample_dir = ROOT / "eval" / "datasets" / "sample"
    other = tmp_path / "other"
    (other / "qrels").mkdir(parents=True)
    (other / "corpus.jsonl").write_bytes((sample_dir / "corpus.jsonl").read_bytes())
    lines = (sample_dir / "queries.jsonl").read_text().splitlines()[:40]
    (other / "queries.jsonl").write_text("\n".join(line.replace('"_id": "q', '"_id": "x') for line in lines) + "\n")
    kept = {f"q{i:02d}" for i in range(1, 41)}
    qrels = (sample_dir / "qrels" / "test.tsv").read_text().splitlines()
    rows = [qrels[0]] + ["x" + row[1:] for row in qrels[1:] if row.split("\t")[0] in kept]
    (other / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    second = tmp_path / "bm25.yaml"  # its short name is its name, `bm25`: sample-bm25's short name too
    second.write_text(
        PIPELINE.read_text()
        .replace("name: sample-bm25", "name: bm25")
        .replace("dataset: sample", f"dataset: {{path: {other}}}")
    )
    session = Context(store=ArtifactStore(cache_dir), threads=2, progress=False)
    outcomes = run_suite(SUITE, [PIPELINE, second], tmp_path / "runs", session)
    assert [o.folder is not None for o in outcomes] == [True, True]
    manifests = [json.loads((o.folder / "manifest.json").read_text()) for o in outcomes]
    assert manifests[0]["cv"]["assignment"] == manifests[1]["cv"]["assignment"]
    assignment = manifests[0]["cv"]["assignment"]
    assert set(assignment) == {"sample", str(other)} and len(assignment[str(other)]) == 40
    for card in manifests[0]["cv"]["models"]:
        learnt = {(k, q) for part in ("train_queries", "dev_queries") for k, qs in card[part].items() for q in qs}
        held_out = {(k, q) for k, folds in assignment.items() for q, f in folds.items() if f == card["fold"]}
        assert not learnt & held_out and {k for k, _ in learnt} == set(assignment)
    for outcome, key in zip(outcomes, ["sample", str(other)], strict=True):
        assert set(read_run(outcome.folder)["qid"]) == set(assignment[key])


def test_the_fold_assignment_is_seeded() -> None:
    units = [("a", f"q{i}") for i in range(10)] + [("b", f"q{i}") for i in range(7)]
    first = assign_folds(units, 4, 1)
    assert first == assign_folds(list(reversed(units)), 4, 1)  # the order units come in does not matter
    assert first != assign_folds(units, 4, 2)
    assert sorted(pd.Series(first).value_counts().tolist()) == [4, 4, 4, 5]


@pytest.mark.parametrize(
    ("task", "pattern"),
    [
        ("{folds: 1}", r"cv\.yaml:3: tasks\[0\]\.cv\.folds: Input should be greater than or equal to 2"),
        ("{folds: 100}", r"cv\.yaml:3: tasks\[0\]\.cv\.folds: 100 folds for 99 queries \(sample\)"),
        (
            "{folds: 3, features: [bm25, dense_rerank]}",
            r"cv\.yaml:3: tasks\[0\]\.cv\.features\[1\]: feature 'dense_rerank' is not provided by any stage of "
            r"sample-bm25 \(stages: bm25; or 'lexical'\)",
        ),
        ("{folds: 3, featurez: [bm25]}", r"cv\.yaml:3: tasks\[0\]\.cv\.featurez: unknown key"),
    ],
)
def test_bad_cv_input_is_one_line_naming_the_key(tmp_path: Path, cascade, task: str, pattern: str) -> None:
    suite = tmp_path / "cv.yaml"
    suite.write_text(f"suite: bad-cv\ntasks:\n  - cv: {task}\n")
    out = tmp_path / "out"
    result = cascade("suite", suite, "--pipelines", PIPELINE, "--out", out, "--cache", tmp_path / "cache", "-q")
    assert_clean_failure(result, pattern, out)
