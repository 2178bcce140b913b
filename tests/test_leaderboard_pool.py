"""`cascade leaderboard --pool A+B --reference GLOB`: DL19 and DL20 runs as one pooled section, tested against a
second run besides the baseline (issue 15: "each best pipeline against the official BM25 run and against the
bi-encoder rerank, over DL19+DL20 together").

Run folders are written the way tests/test_pool_runs.py writes them (perquery.tsv, metrics.json, manifest.json),
with seeded per-query values; "pooled by hand" means concatenating their perquery.tsv files as text.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from cascade.core.errors import CascadeError
from cascade.eval.report import ReportOptions, build_board, collect_runs, compare_section, read_run_folder
from cascade.eval.report.markdown import README_END, README_START, leaderboard_markdown
from cascade.eval.report.pool import parse_pools

DL19, DL20 = "msmarco-passage/dl19", "msmarco-passage/dl20"
POOL = f"{DL19}+{DL20}"
POOLED = "msmarco-passage/dl19+dl20 (official qrels)"
QUERIES = {DL19: [str(1000 + i) for i in range(23)], DL20: [str(2000 + i) for i in range(31)]}
# pipeline -> (shift of its nDCG@10 over the BM25 run's, ms/query): the reranker and the fusion are clearly better
PIPELINES = {
    "official-bm25-run": (0.0, 1.0),
    "official-bm25-dense-rerank": (0.15, 30.0),
    "official-fusion": (0.2, 50.0),
}
BASELINE = ("*-official-bm25-run",)


def run_folder(
    root: Path, name: str, dataset: str, values: dict[str, dict[str, float]], ms: float, **manifest: object
) -> Path:
    """A run folder as `cascade run` leaves it, minus the run file: what the report reads."""
    folder = root / name
    folder.mkdir(parents=True)
    rows = "".join(f"{qid}\t{m}\t{v!r}\n" for m, per_query in values.items() for qid, v in per_query.items())
    (folder / "perquery.tsv").write_text("qid\tmeasure\tvalue\n" + rows, encoding="utf-8")
    means = {m: float(np.mean(list(v.values()))) for m, v in values.items()}
    metrics = {"name": name, "dataset": dataset, "qrels": "official", "queries": len(QUERIES[dataset])}
    (folder / "metrics.json").write_text(json.dumps({**metrics, "measures": means}), encoding="utf-8")
    info = {"name": name, "config_hash": f"hash-{name}", "ms_per_query": ms, "dataset": {"name": dataset}}
    info |= {"stages": [{"stage": "rerank", "ms_per_query": ms}], "git": {"commit": "a" * 40, "dirty": False}}
    (folder / "manifest.json").write_text(json.dumps(info | manifest), encoding="utf-8")
    return folder


def per_query(dataset: str, shift: float, seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(len(QUERIES[dataset])).uniform(0.2, 0.7, len(QUERIES[dataset]))
    ndcg = np.clip(base + shift + rng.normal(0, 0.12, len(base)), 0, 1)
    ap = np.clip(0.6 * ndcg + rng.normal(0, 0.05, len(base)), 0, 1)
    return {
        "nDCG@10": dict(zip(QUERIES[dataset], ndcg.round(4).tolist(), strict=True)),
        "AP(rel=2)": dict(zip(QUERIES[dataset], ap.round(4).tolist(), strict=True)),
    }


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Three pipelines on DL19 and DL20 (the DL20 ones twice as slow), plus one on DL19 only."""
    root = tmp_path / "runs"
    for i, (pipeline, (shift, ms)) in enumerate(PIPELINES.items()):
        for year, dataset in (("dl19", DL19), ("dl20", DL20)):
            cost = ms * (2 if year == "dl20" else 1)
            run_folder(root, f"{year}-{pipeline}", dataset, per_query(dataset, shift, 10 * i + len(year)), cost)
    run_folder(root, "dl19-official-splade", DL19, per_query(DL19, 0.1, 99), 5.0)
    return root


def board(root: Path, **options: object):
    return build_board(collect_runs(root), ReportOptions(baselines=BASELINE, **options))


def section_of(the_board, dataset: str):
    (section,) = [s for s in the_board.sections if s.dataset == dataset]
    return section


def run_of(section, name: str):
    (run,) = [r for r in section.runs if r.name == name]
    return run


def pool_by_hand(root: Path, out: Path, pipeline: str) -> Path:
    """dl19-X and dl20-X as one folder, by concatenating the per-query tables as text."""
    folder = out / f"dl19+dl20-{pipeline}"
    folder.mkdir(parents=True)
    tables = [(root / f"{year}-{pipeline}" / "perquery.tsv").read_text().splitlines() for year in ("dl19", "dl20")]
    (folder / "perquery.tsv").write_text("\n".join([tables[0][0], *tables[0][1:], *tables[1][1:]]) + "\n")
    metrics = {"name": folder.name, "dataset": "msmarco-passage/dl19+dl20", "qrels": "official"}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_pooled_section_holds_query_weighted_means_and_costs(runs):
    the_board = board(runs, pools=parse_pools([POOL]))
    titles = [s.dataset for s in the_board.sections]
    assert titles == [f"{DL19} (official qrels)", f"{DL20} (official qrels)", POOLED]  # pooled after its datasets
    pooled = section_of(the_board, POOLED)
    assert {r.name for r in pooled.runs} == {f"dl19+dl20-{p}" for p in PIPELINES}
    assert pooled.baseline.name == "dl19+dl20-official-bm25-run"  # the --baseline glob selects the pooled run
    assert pooled.aligned.queries == 23 + 31
    years = [section_of(the_board, f"{d} (official qrels)") for d in (DL19, DL20)]
    for pipeline, (_, ms) in PIPELINES.items():
        run = run_of(pooled, f"dl19+dl20-{pipeline}")
        for measure in ("nDCG@10", "AP(rel=2)"):
            members = [
                s.mean(run_of(s, f"{y}-{pipeline}"), measure).mean for s, y in zip(years, ("dl19", "dl20"), strict=True)
            ]
            weighted = (members[0] * 23 + members[1] * 31) / 54
            assert pooled.mean(run, measure).mean == pytest.approx(weighted, abs=1e-12)
        assert run.ms_per_query == pytest.approx(round((ms * 23 + 2 * ms * 31) / 54, 4))
        assert run.stage_ms == [("rerank", pytest.approx(round((ms * 23 + 2 * ms * 31) / 54, 4)))]
    note = leaderboard_markdown(the_board).split(f"### {POOLED}\n\n")[1].splitlines()[0]
    assert f"pooled from {DL19} (23 queries) and {DL20} (31 queries)" in note
    assert "Left out, on one dataset only: dl19-official-splade." in note
    assert "Holm-Bonferroni over 2 comparisons per measure" in note


def test_a_cross_validated_member_makes_the_pooled_run_cross_validated(runs):
    for year, dataset in (("dl19", DL19), ("dl20", DL20)):
        run_folder(
            runs, f"{year}-official-ltr-cv", dataset, per_query(dataset, 0.1, 7), 3.0, protocol="cross-validated"
        )
    pooled = section_of(board(runs, pools=parse_pools([POOL])), POOLED)
    assert run_of(pooled, "dl19+dl20-official-ltr-cv").summary == {"protocol": "cross-validated"}
    assert run_of(pooled, "dl19+dl20-official-fusion").summary == {}


def test_a_cv_suite_run_is_tested_in_the_pooled_section_of_the_runs_it_reranks(runs):
    """The `cv` suite's cross-validated runs pool with the `msmarco` suite's baseline and references: one section."""
    for year, dataset in (("dl19", DL19), ("dl20", DL20)):
        run_folder(runs / "suites", f"{year}-signals-ltr-cv", dataset, per_query(dataset, 0.25, 3), 3.0, suite="cv")
        for pipeline in ("official-bm25-run", "official-bm25-dense-rerank"):  # msmarco suite copies: counted once
            shutil.copytree(runs / f"{year}-{pipeline}", runs / "suites" / f"msmarco-{year}-{pipeline}")
            manifest = json.loads((runs / f"{year}-{pipeline}" / "manifest.json").read_text())
            (runs / "suites" / f"msmarco-{year}-{pipeline}" / "manifest.json").write_text(
                json.dumps(manifest | {"suite": "msmarco"})
            )
    the_board = board(runs, pools=parse_pools([POOL]), references=("dl19+dl20-*-dense-rerank",))
    pooled = section_of(the_board, POOLED)
    assert {r.name for r in pooled.runs} == {f"dl19+dl20-{p}" for p in PIPELINES} | {"dl19+dl20-signals-ltr-cv"}
    assert pooled.suite == "default"  # the first suite in the report's order that has a member
    cv = run_of(pooled, "dl19+dl20-signals-ltr-cv")
    assert pooled.pair(cv, "nDCG@10") is not None  # against the official BM25 run
    assert pooled.versus(cv, pooled.references[0]) is not None  # and against the bi-encoder rerank
    assert [s.dataset for s in the_board.sections].count(POOLED) == 1


def test_pooled_p_values_are_those_of_compare_on_folders_pooled_by_hand(runs, tmp_path, cascade):
    pooled = section_of(board(runs, pools=parse_pools([POOL])), POOLED)
    by_hand = {p: read_run_folder(pool_by_hand(runs, tmp_path / "hand", p)) for p in PIPELINES}
    for pipeline in ("official-bm25-dense-rerank", "official-fusion"):
        mine = pooled.pair(run_of(pooled, f"dl19+dl20-{pipeline}"), "nDCG@10")
        runs_by_hand = [by_hand[pipeline], by_hand["official-bm25-run"]]
        theirs = compare_section(runs_by_hand, runs_by_hand[1], ReportOptions(measures=("nDCG@10",))).analysis.pairs[0]
        assert (mine.p_perm, mine.p_t, mine.diff.mean, mine.wins, mine.losses) == (
            theirs.p_perm,
            theirs.p_t,
            theirs.diff.mean,
            theirs.wins,
            theirs.losses,
        )
        # the same resamples; only float32 rounding of a wider matrix product differs
        assert (mine.diff.low, mine.diff.high) == pytest.approx((theirs.diff.low, theirs.diff.high), abs=1e-6)
    fusion, base = (by_hand[p].folder for p in ("official-fusion", "official-bm25-run"))
    result = cascade("compare", fusion, base, "--baseline", base, "-m", "nDCG@10")
    assert result.returncode == 0, result.stderr
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("dl19+dl20-official-fusion vs")]
    mine = pooled.pair(run_of(pooled, "dl19+dl20-official-fusion"), "nDCG@10")
    cells = row.split()  # ..., p t, p t holm, p rand, p rand holm[, marker]
    p_rand = cells[-3] if cells[-1] in ("▲", "▼") else cells[-2]
    assert p_rand == (f"{mine.p_perm:.4f}" if mine.p_perm >= 1e-4 else "<0.0001")


def test_reference_adds_a_column_counted_in_the_correction(runs):
    without = section_of(board(runs, pools=parse_pools([POOL])), POOLED)
    the_board = board(runs, pools=parse_pools([POOL]), references=("*-official-bm25-dense-rerank",))
    pooled = section_of(the_board, POOLED)
    reference = run_of(pooled, "dl19+dl20-official-bm25-dense-rerank")
    fusion, base = run_of(pooled, "dl19+dl20-official-fusion"), pooled.baseline
    assert pooled.references == [reference] and pooled.reference_measure == "nDCG@10"
    # 2 against the baseline + fusion against the reference; the baseline against the reference is the reference
    # against the baseline, already in the family
    assert pooled.analysis.family_size("nDCG@10") == 3 and pooled.analysis.family_size("AP(rel=2)") == 2
    family = [p for p in pooled.analysis.pairs if p.measure == "nDCG@10"]
    expected = multipletests([p.p_perm for p in family], method="holm")[1]
    assert [p.p_perm_adj for p in family] == pytest.approx(list(expected))
    versus = pooled.versus(fusion, reference)
    assert versus.diff.mean == pytest.approx(
        pooled.mean(fusion, "nDCG@10").mean - pooled.mean(reference, "nDCG@10").mean
    )
    # a larger family: no baseline comparison of nDCG@10 is more significant than without the reference
    for run in (fusion, reference):
        assert pooled.pair(run, "nDCG@10").p_perm_adj >= without.pair(run, "nDCG@10").p_perm_adj
    back = pooled.versus(base, reference)  # the baseline's cell: the reference-vs-baseline test, negated
    forward = pooled.pair(reference, "nDCG@10")
    assert back.diff.mean == -forward.diff.mean and back.p_perm_adj == forward.p_perm_adj
    # AP's family is as without --reference
    assert [p.p_perm_adj for p in pooled.analysis.pairs if p.measure == "AP(rel=2)"] == [
        p.p_perm_adj for p in without.analysis.pairs if p.measure == "AP(rel=2)"
    ]
    text = leaderboard_markdown(the_board).split(f"### {POOLED}\n\n")[1]
    note, _, head, _, *rows = text.splitlines()
    assert "2 comparisons per measure, 3 for nDCG@10 with the 1 against the reference " in note
    columns = [c.strip() for c in head.strip("|").split("|")]
    at = columns.index("Δ nDCG@10 vs dl19+dl20-official-bm25-dense-rerank (p)")
    assert columns[at - 1] == "W/T/L nDCG@10" and columns[at + 1] == "ms/query"
    cells = {r.split("|")[1].strip(): r.split("|")[at + 1].strip() for r in rows if r.startswith("| ")}
    assert cells[reference.label] == "reference"
    p = f"{versus.p_perm_adj:.4f}" if versus.p_perm_adj >= 1e-4 else "<0.0001"
    assert cells[fusion.label] == f"{versus.diff.mean:+.4f} ({p})"


def test_without_the_new_options_nothing_changes(runs):
    plain = leaderboard_markdown(board(runs))
    assert "dl19+dl20" not in plain and "Δ" not in plain
    # a pool adds its section and nothing else; a reference glob that matches only pooled runs leaves the
    # per-dataset sections as they were
    pooled = leaderboard_markdown(board(runs, pools=parse_pools([POOL]), references=("dl19+dl20-*-dense-rerank",)))
    before, section = pooled.split(f"### {POOLED}\n\n")
    assert before == plain + "\n"  # the blank line between two sections
    assert "Δ nDCG@10 vs dl19+dl20-official-bm25-dense-rerank (p)" in section


def test_cli_writes_the_pooled_section_to_markdown_html_and_readme(runs, tmp_path, cascade):
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\n{README_START}\nold\n{README_END}\n", encoding="utf-8")
    site, out = tmp_path / "site", tmp_path / "board.md"
    result = cascade(
        "leaderboard", runs, "--baseline", BASELINE[0], "--pool", POOL, "--reference", "*-official-bm25-dense-rerank",
        "--out", out, "--html", site, "--readme", readme,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for text in (out.read_text(), readme.read_text(), (site / "leaderboard.md").read_text()):
        assert f"## {POOLED}\n" in text and "| dl19+dl20-official-fusion |" in text
        assert "Δ nDCG@10 vs dl19+dl20-official-bm25-dense-rerank (p)" in text
    page = (site / "index.html").read_text()
    assert page.index(f"<h3>{DL20} (official qrels)</h3>") < page.index(f"<h3>{POOLED}</h3>")
    assert "pooled from</dt>" in page
    assert "runs made at commit `aaaaaaaaaaaa`." in readme.read_text()  # the members' commit, not "None"


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        ("msmarco-passage/dl19", "--pool 'msmarco-passage/dl19' is not of the form A+B"),
        (f"{POOL}+x", "is not of the form A+B"),
        (f"{DL19}+", "is not of the form A+B"),
        (f"{DL19}+{DL19}", f"--pool '{DL19}+{DL19}' names the dataset '{DL19}' twice"),
        (f"{DL19}+msmarco-passage/dl21", f"--pool '{DL19}+msmarco-passage/dl21': no run is on dataset"),
    ],
)
def test_bad_pools_are_one_line_errors(runs, cascade, pool, message):
    result = cascade("leaderboard", runs, "--pool", pool, "--out", runs / "x.md")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and not (runs / "x.md").exists()


def test_the_same_pool_twice_and_shared_queries_are_refused(runs, cascade):
    with pytest.raises(CascadeError, match=re.escape(f"--pool '{DL20}+{DL19}' is given twice")):
        parse_pools([POOL, f"{DL20}+{DL19}"])
    shutil.rmtree(runs / "dl20-official-fusion")
    shared = per_query(DL20, 0.2, 5)
    shared["nDCG@10"]["1000"] = shared["AP(rel=2)"]["1000"] = 0.5  # a DL19 query in a DL20 run
    run_folder(runs, "dl20-official-fusion", DL20, shared, 1.0)
    result = cascade("leaderboard", runs, "--pool", POOL, "--out", runs / "x.md")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"--pool '{POOL}': query '1000' is in both datasets" in result.stderr


def test_a_reference_that_names_no_run_is_an_error(runs):
    with pytest.raises(CascadeError, match="--reference nope names no run"):
        board(runs, references=("nope",))
    with pytest.raises(CascadeError, match=r"--reference '\*-official-\*' matches 4 runs on msmarco-passage/dl19"):
        board(runs, references=("*-official-*",))
