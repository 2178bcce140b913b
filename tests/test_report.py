"""Reports from real run folders of the built-in sample: Markdown, README embedding, `cascade compare`, topdocs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cascade.core.errors import CascadeError
from cascade.eval.datasets import load_dataset
from cascade.eval.pareto import pareto_front
from cascade.eval.report import ReportOptions, build_board, collect_runs
from cascade.eval.report.html import leaderboard_html
from cascade.eval.report.markdown import README_END, README_START, embed, leaderboard_markdown
from cascade.eval.report.plot import Point
from cascade.eval.topdocs import read_topdocs, snippet, topdocs_jsonl
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample_runs(tmp_path_factory, cache_dir) -> Path:
    """sample-bm25 and sample-bm25-rm3 made by the real runner."""
    out = tmp_path_factory.mktemp("report") / "runs"
    for name in ("bm25.yaml", "bm25-rm3.yaml"):
        path = ROOT / "configs" / "sample" / name
        run_config(load_config(path), path, out, cache_dir=cache_dir, progress=False)
    return out


@pytest.fixture
def runs(sample_runs, tmp_path) -> Path:
    """A private copy the test may change."""
    return Path(shutil.copytree(sample_runs, tmp_path / "runs"))


def shorten(folder: Path, name: str, keep: int) -> None:
    """Turn a copied run folder into another config that has per-query values for only `keep` queries."""
    perquery = pd.read_csv(folder / "perquery.tsv", sep="\t", dtype={"qid": str})
    kept = sorted(perquery["qid"].unique())[:keep]
    perquery[perquery["qid"].isin(kept)].to_csv(folder / "perquery.tsv", sep="\t", index=False)
    for file in ("manifest.json", "metrics.json"):
        data = json.loads((folder / file).read_text())
        data["name"] = name
        if file == "manifest.json":
            data["config_hash"] = "short" + data["config_hash"]
        (folder / file).write_text(json.dumps(data))


def test_topdocs_hold_the_top_three_with_corpus_snippets(sample_runs):
    records = read_topdocs(sample_runs / "sample-bm25" / "topdocs.jsonl")
    dataset = load_dataset("sample")
    assert set(records) == set(dataset.queries["qid"])
    corpus = {d["docno"]: d for d in dataset.corpus.docs()}
    first = records["q01"]
    assert first["query"] == dataset.queries.set_index("qid").loc["q01", "query"]
    assert [d["rank"] for d in first["docs"]] == [1, 2, 3]
    run = pd.read_csv(sample_runs / "sample-bm25" / "run.trec", sep=" ", header=None, dtype={0: str, 2: str})
    assert [d["docno"] for d in first["docs"]] == run[run[0] == "q01"][2].head(3).tolist()
    doc = corpus[first["docs"][0]["docno"]]
    assert first["docs"][0]["text"] == snippet(doc["title"], doc["text"])
    assert len(first["docs"][0]["text"]) <= 300 and first["docs"][0]["text"].startswith(doc["title"])
    assert read_topdocs(sample_runs / "sample-bm25" / "topdocs.jsonl", {"q02"}).keys() == {"q02"}


def test_markdown_has_one_row_per_config_even_when_a_run_is_copied(runs):
    shutil.copytree(runs / "sample-bm25", runs / "again" / "sample-bm25")
    board = build_board(collect_runs(runs), ReportOptions(baselines=("sample-bm25",)))
    text = leaderboard_markdown(board)
    rows = [line for line in text.splitlines() if line.startswith("| sample-")]
    assert [row.split("|")[1].strip() for row in rows] == ["sample-bm25-rm3", "sample-bm25"]
    assert "Holm-Bonferroni" in text and "baseline: sample-bm25 (chosen with --baseline)" in text
    assert "99/99" in rows[0] and "baseline" in rows[1]
    (run,) = [r for r in board.sections[0].runs if r.name == "sample-bm25"]
    assert len(run.copies) == 1
    assert "same config also in" in leaderboard_html(board)


def test_a_run_missing_queries_scores_zero_visibly_or_is_refused(runs):
    shutil.copytree(runs / "sample-bm25", runs / "sample-short")
    shorten(runs / "sample-short", "sample-short", keep=90)
    board = build_board(collect_runs(runs), ReportOptions(baselines=("sample-bm25",)))
    text = leaderboard_markdown(board)
    assert "sample-short covers 90/99" in text and "--missing zero" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| sample-short")]
    assert "| 90/99 |" in row
    section = board.sections[0]
    short = next(r for r in section.runs if r.name == "sample-short")
    base = next(r for r in section.runs if r.name == "sample-bm25")
    # Zeros on the 9 missing queries: the mean drops by exactly their baseline share, and they count as losses.
    assert section.mean(short, "nDCG@10").mean < section.mean(base, "nDCG@10").mean
    assert section.pair(short, "nDCG@10").ties + section.pair(short, "nDCG@10").losses == 99
    with pytest.raises(CascadeError, match="sample-short covers 90 of 99"):
        build_board(collect_runs(runs), ReportOptions(missing="refuse"))


def test_baseline_pattern_errors_are_one_line(runs):
    with pytest.raises(CascadeError, match="matches 2 runs"):
        build_board(collect_runs(runs), ReportOptions(baselines=("sample-*",)))
    with pytest.raises(CascadeError, match="names no run"):
        build_board(collect_runs(runs), ReportOptions(baselines=("nope",)))


def test_cli_leaderboard_writes_markdown_html_and_readme(cascade, runs, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{README_START}\nold table\n{README_END}\n\nafter\n")
    result = cascade(
        "leaderboard", runs, "--html", tmp_path / "site", "--baseline", "*-bm25", "--correction", "bonferroni",
        "--readme", readme,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "index.html").read_text()
    assert "Bonferroni" in page and "<svg" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n\n" + README_START) and text.endswith(README_END + "\n\nafter\n")
    assert "old table" not in text and "| sample-bm25-rm3 |" in text and "Generated by `make leaderboard`" in text
    assert "Bonferroni" in text and "Do not edit by hand" in text


def test_cli_readme_without_markers_is_a_one_line_error(cascade, runs, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# nothing to fill\n")
    result = cascade("leaderboard", runs, "--readme", readme)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "markers" in result.stderr and readme.read_text() == "# nothing to fill\n"


def test_cli_compare_prints_the_statistics(cascade, runs):
    result = cascade(
        "compare", runs / "sample-bm25-rm3", runs / "sample-bm25", "--baseline", runs / "sample-bm25",
        "-m", "nDCG@10", "-m", "AP(rel=2)", "--correction", "fdr_bh",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "== nDCG@10" in out and "== AP(rel=2)" in out and "== RR(rel=2)@10" not in out
    assert "sample-bm25-rm3 vs sample-bm25" in out and "Benjamini-Hochberg" in out and "99/99" in out
    again = cascade(
        "compare", runs / "sample-bm25-rm3", runs / "sample-bm25", "--baseline", runs / "sample-bm25",
        "-m", "nDCG@10", "-m", "AP(rel=2)", "--correction", "fdr_bh",
    )  # fmt: skip
    assert again.stdout == out  # seeded: the same runs give the same numbers


def test_cli_compare_refuses_what_cannot_be_compared(cascade, runs, tmp_path):
    shutil.copytree(runs / "sample-bm25", runs / "sample-short")
    shorten(runs / "sample-short", "sample-short", keep=50)
    refused = cascade("compare", runs / "sample-bm25", runs / "sample-short", "--missing", "refuse")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "covers 50 of 99" in refused.stderr
    zero = cascade("compare", runs / "sample-bm25", runs / "sample-short")
    assert zero.returncode == 0 and "sample-short covers 50/99" in zero.stdout
    other = runs / "other"
    shutil.copytree(runs / "sample-bm25", other)
    metrics = json.loads((other / "metrics.json").read_text())
    (other / "metrics.json").write_text(json.dumps({**metrics, "dataset": "cranfield"}))
    mixed = cascade("compare", runs / "sample-bm25", other)
    assert mixed.returncode == 2 and "different datasets" in mixed.stderr
    bad = cascade("compare", runs / "sample-bm25", tmp_path / "nowhere")
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    wrong = cascade("compare", runs / "sample-bm25", runs / "sample-bm25-rm3", "--correction", "sidak")
    assert wrong.returncode == 2 and "--correction must be one of holm, bonferroni, fdr_bh" in wrong.stderr


def test_pareto_front_keeps_only_undominated_runs():
    points = [Point("fast", 1, 0.4), Point("slow-good", 50, 0.7), Point("dominated", 60, 0.5), Point("mid", 10, 0.6)]
    front = pareto_front([(p.ms, p.score) for p in points])
    assert [points[i].label for i in front] == ["fast", "mid", "slow-good"]


def test_pareto_front_tie_rule():
    """Equal cost: only the better one; equal quality: only the cheaper one; equal on both: all of them."""
    assert pareto_front([(1.0, 0.5), (1.0, 0.6)]) == [1]
    assert pareto_front([(2.0, 0.6), (1.0, 0.6)]) == [1]
    assert pareto_front([(1.0, 0.6), (0.5, 0.2), (1.0, 0.6)]) == [1, 0, 2]
    assert pareto_front([(None, 0.9), (1.0, float("nan")), (2.0, 0.1)]) == [2]
    assert pareto_front([]) == []


def test_embed_keeps_everything_outside_the_markers():
    text = f"a\n{README_START}\nx\n{README_END}\nb\n"
    assert embed(text, "new") == f"a\n{README_START}\nnew\n{README_END}\nb\n"


def test_read_topdocs_filters_by_qid_even_with_escaped_ids(tmp_path):
    qids = ["plain", 'quo"te', "back\\slash", "ünï"]
    records = [{"qid": q, "query": f"query {q}", "docs": []} for q in qids]
    path = tmp_path / "topdocs.jsonl"
    path.write_text(topdocs_jsonl(records), encoding="utf-8")
    assert set(read_topdocs(path)) == set(qids)
    for q in qids:
        assert read_topdocs(path, {q}) == {q: records[qids.index(q)]}
    assert read_topdocs(tmp_path / "missing.jsonl", {"plain"}) == {}
