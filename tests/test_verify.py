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
    assert len(table) == sum(len(load_config(p).expected.values()) for p in SAMPLES) + 4 * 5  # + index facts
    assert all(r[-1] == OK for r in table), done.stdout
    assert f"{len(table)} OK, 0 OKISH, 0 FAIL (9 configs)" in done.stdout


def test_a_wrong_expected_value_fails(cascade, cache_dir: Path, tmp_path: Path) -> None:
    block = (
        "expected:\n  tolerance: 1e-4\n  why: deliberately wrong\n"
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
        "expected:\n  tolerance: 1e-4\n  why: per-measure tolerance\n"
        "  measures: {nDCG@10: {value: 0.7320, tolerance: 5e-4}, RR(rel=2)@10: 0.7251}\n"
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
        tmp_path, ROOT / "configs/sample/dense.yaml", "expected: {tolerance: 1e-4, why: x, measures: {nDCG@20: 0.5}}\n"
    )
    done = cascade("verify", wrong, "--cache", tmp_path / "cache")
    assert done.returncode == 2 and "dense.yaml:" in done.stderr and "not one of the config's measures" in done.stderr
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
