"""`cascade verify`: the regression matrix (issue 14) on the built-in sample's expected scores."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cascade.pipelines.config import Expected, load_config
from cascade.pipelines.verify import FAIL, OK, OKISH, compare, status_of

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "configs" / "sample").glob("*.yaml"))
ROW = re.compile(r"^(\S+)\s{2,}(.+?)\s{2,}(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(OK|OKISH|FAIL)$")


def rows(stdout: str) -> list[tuple[str, ...]]:
    return [m.groups() for line in stdout.splitlines() if (m := ROW.match(line))]


def with_expected(tmp_path: Path, source: Path, block: str, name: str | None = None) -> Path:
    """A copy of a sample config whose `expected:` block is replaced by `block`."""
    text = source.read_text(encoding="utf-8")
    text = text[: text.index("\nexpected:")].rsplit("\n# What", 1)[0]
    if name:
        text = text.replace(f"name: {load_config(source).name}", f"name: {name}")
    path = tmp_path / source.name
    path.write_text(text + "\n" + block, encoding="utf-8")
    return path


def test_every_sample_config_says_what_it_scores() -> None:
    for path in SAMPLES:
        config = load_config(path)
        assert config.expected is not None, path
        assert set(config.expected.values()) == set(config.measures), path
        assert config.expected.why


def test_sample_matrix_is_all_ok(cascade, cache_dir: Path) -> None:
    done = cascade("verify", *SAMPLES, "--cache", cache_dir, "-q")
    assert done.returncode == 0, done.stderr + done.stdout
    table = rows(done.stdout)
    names = {load_config(p).name for p in SAMPLES}
    assert {r[0] for r in table} == names
    configs = [load_config(p) for p in SAMPLES]
    figures = sum(len(c.expected.values()) + len(c.expected.index.given() if c.expected.index else {}) for c in configs)
    assert len(table) == figures
    assert sum(r[1].startswith("index ") for r in table) >= 4  # index facts are checked too
    assert all(r[-1] == OK for r in table), done.stdout
    assert f"{len(table)} OK, 0 OKISH, 0 FAIL ({len(SAMPLES)} configs)" in done.stdout


def test_a_wrong_expected_value_fails(cascade, cache_dir: Path, tmp_path: Path) -> None:
    block = (
        "expected:\n  tolerance: 1.0e-4\n  why: deliberately wrong\n"
        "  measures: {nDCG@10: 0.9314, AP(rel=2): 0.6731}\n  index: {documents: 326, total_terms: 15125}\n"
    )
    path = with_expected(tmp_path, ROOT / "configs/sample/bm25.yaml", block)
    done = cascade("verify", path, "--cache", cache_dir, "-q")
    assert done.returncode == 1, done.stderr + done.stdout
    status = {r[1]: r[-1] for r in rows(done.stdout)}
    assert status == {"nDCG@10": FAIL, "AP(rel=2)": OK, "index documents": FAIL, "index total_terms": OK}
    assert "2 OK, 0 OKISH, 2 FAIL" in done.stdout


def test_within_one_and_a_half_tolerances_is_okish(cascade, cache_dir: Path, tmp_path: Path) -> None:
    # sample-bm25 scores nDCG@10 0.731352: 0.7320 is 6.5e-4 away, beyond 5e-4 and within 1.5 x 5e-4
    block = (
        "expected:\n  tolerance: 1.0e-4\n  why: per-measure tolerance\n"
        "  measures: {nDCG@10: {value: 0.7320, tolerance: 5.0e-4}, RR(rel=2)@10: 0.7251}\n"
    )
    path = with_expected(tmp_path, ROOT / "configs/sample/bm25.yaml", block)
    done = cascade("verify", path, "--cache", cache_dir, "-q")
    assert done.returncode == 0, done.stderr + done.stdout  # OKISH does not fail the matrix, as in Anserini
    assert {r[1]: r[-1] for r in rows(done.stdout)} == {"nDCG@10": OKISH, "RR(rel=2)@10": OK}


def test_bad_input_is_exit_2_before_any_run(cascade, tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    text = (ROOT / "configs/sample/bm25.yaml").read_text(encoding="utf-8")
    bare.write_text(text[: text.index("\n# What")] + "\n", encoding="utf-8")
    done = cascade("verify", bare, "--cache", tmp_path / "cache")
    assert done.returncode == 2 and "no 'expected:' block" in done.stderr
    wrong = with_expected(
        tmp_path,
        ROOT / "configs/sample/dense.yaml",
        "expected: {tolerance: 1.0e-4, why: x, measures: {nDCG@20: 0.5}}\n",
    )
    done = cascade("verify", wrong, "--cache", tmp_path / "cache")
    assert done.returncode == 2 and "dense.yaml:" in done.stderr and "not one of the config's measures" in done.stderr
    text_tolerance = with_expected(
        tmp_path,
        ROOT / "configs/sample/bm25.yaml",
        "expected:\n  tolerance: 1e-4\n  why: x\n  measures: {nDCG@10: 0.7}\n",
    )
    done = cascade("verify", text_tolerance, "--cache", tmp_path / "cache")
    assert done.returncode == 2 and "bm25.yaml:" in done.stderr and "write 1.0e-4" in done.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("card.json"))


def test_the_expected_block_is_not_in_the_config_hash(tmp_path: Path) -> None:
    source = ROOT / "configs/sample/bm25.yaml"
    text = source.read_text(encoding="utf-8")
    bare = tmp_path / "bare.yaml"
    bare.write_text(text[: text.index("\n# What")] + "\n", encoding="utf-8")
    other = with_expected(tmp_path, source, "expected: {tolerance: 0.5, why: other, measures: {nDCG@10: 0.1}}\n")
    hashes = {load_config(p).config_hash for p in (source, bare, other)}
    assert len(hashes) == 1
    assert load_config(bare).result_parts() == load_config(source).result_parts()


@pytest.mark.parametrize(
    ("actual", "status"),
    [(0.5, OK), (0.5001, OK), (0.4999, OK), (0.50015, OKISH), (0.49985, OKISH), (0.5002, FAIL), (None, FAIL)],
)
def test_status_rule(actual: float | None, status: str) -> None:
    assert status_of(0.5, actual, 1e-4) == status
    assert status_of(float("nan"), 0.5, 1.0) == status_of(0.5, float("nan"), 1.0) == FAIL


def test_compare_rows_and_index_facts_are_exact() -> None:
    expected = Expected.model_validate(
        {
            "tolerance": 0.01,
            "why": "w",
            "measures": {"nDCG@10": 0.5, "RR(rel=2)@10": {"value": 0.7, "tolerance": 0.1}},
            "index": {"documents": 10, "unique_terms": 5},
        }
    )
    got = compare("c", expected, {"nDCG@10": 0.52, "RR(rel=2)@10": 0.79}, {"documents": 10, "unique_terms": 6})
    assert [(r.measure, r.status) for r in got] == [
        ("nDCG@10", FAIL),
        ("RR(rel=2)@10", OK),
        ("index documents", OK),
        ("index unique_terms", FAIL),
    ]
    assert compare("c", expected, {}, None)[0].status == FAIL  # a figure the run lacks fails


SUITE_CHECK = """kind: suite
name: sample-negation-bm25
suite: configs/suites/sample-negation.yaml
task: negation_pairs
pipeline: configs/sample/bm25.yaml
expected:
  tolerance: 1.0e-4
  why: BM25 is exact arithmetic
  measures: {paired_accuracy: 0.4, pairwise_accuracy: 0.7, same_first: PLACEHOLDER}
"""


def test_a_suite_figure_is_checked_through_its_protocol(cascade, cache_dir: Path, tmp_path: Path) -> None:
    """A `kind: suite` regression config (configs/regressions/) runs one task of a suite for one pipeline."""
    path = tmp_path / "check.yaml"
    path.write_text(SUITE_CHECK.replace("PLACEHOLDER", "0.9"), encoding="utf-8")
    out = tmp_path / "out"
    done = cascade("verify", path, "--cache", cache_dir, "--out", out, "-q")
    assert done.returncode == 1, done.stderr + done.stdout
    status = {r[1]: r[-1] for r in rows(done.stdout)}
    assert status == {"paired_accuracy": OK, "pairwise_accuracy": OK, "same_first": FAIL}  # it is 0.6
    assert len(list((out / "sample-negation").glob("*/bm25/metrics.json"))) == 1  # the suite's own run folder


def test_regression_configs_load_and_name_a_real_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cascade.core.errors import CascadeError
    from cascade.pipelines.verify import load_target

    monkeypatch.chdir(ROOT)  # a regression config's paths are from the current folder, as make runs it
    shipped = sorted((ROOT / "configs" / "regressions").glob("*.yaml"))
    assert shipped
    for path in shipped:
        assert load_target(path.relative_to(ROOT)).expected.measures
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(SUITE_CHECK.replace("PLACEHOLDER", "x"), encoding="utf-8")
    with pytest.raises(CascadeError, match=r"wrong\.yaml:9: expected\.measures\.same_first\.value: must be a number"):
        load_target(wrong)
    wrong.write_text(
        SUITE_CHECK.replace("task: negation_pairs", "task: pools").replace("PLACEHOLDER", "0.6"), encoding="utf-8"
    )
    with pytest.raises(CascadeError, match=r"wrong\.yaml:4: task: the suite has no task of kind 'pools'"):
        load_target(wrong)


def test_make_runs_the_matrix_before_the_readme_is_written() -> None:
    """`make regressions` runs the real-data matrix; `make leaderboard` runs it first and stops on a FAIL."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^\.PHONY:.*\bregressions\b", makefile, flags=re.M)
    assert re.search(r"^regressions: install\n\t.*\n\t\$\(VERIFY\) \$\(REGRESSION_CONFIGS\)$", makefile, flags=re.M)
    recipe = makefile[makefile.index("\nleaderboard: install") :]
    assert recipe.index("$(VERIFY) $(REGRESSION_CONFIGS) || {") < recipe.index("--readme README.md")
    assert "exit 1; }" in recipe[: recipe.index("--readme README.md")]
