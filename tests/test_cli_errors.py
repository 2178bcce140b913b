"""Bad input through the real CLI: exit code 2, one line naming the file/line/key, no traceback, no output."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIG = """name: bad
dataset: {dataset}
measures: [nDCG@10]
pipeline:
  - bm25: {{k: 10}}
"""


def assert_clean_failure(result, pattern: str, out: Path | None = None) -> None:
    import re

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.search(pattern, lines[0]), lines[0]
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (CONFIG.format(dataset="sample").replace("measures", "measurez"), r"bad\.yaml:3: measurez: unknown key"),
        (CONFIG.format(dataset="sample").replace("k: 10", "k: ten"), r"bad\.yaml:5: pipeline\[0\]\.bm25\.k: "),
    ],
)
def test_bad_config(cascade, tmp_path, text, pattern):
    out = tmp_path / "runs"
    result = cascade("run", write_config(tmp_path, text), "--out", out, "--cache", tmp_path / "c")
    assert_clean_failure(result, pattern, out)


def test_unknown_dataset(cascade, tmp_path):
    out = tmp_path / "runs"
    result = cascade(
        "run",
        write_config(tmp_path, CONFIG.format(dataset="msmarco-pasage/dl19")),
        "--out",
        out,
        "--cache",
        tmp_path / "c",
    )
    assert_clean_failure(result, r"unknown dataset 'msmarco-pasage/dl19'; did you mean 'msmarco-passage/dl19'", out)


def test_missing_data_dir(cascade, tmp_path):
    out = tmp_path / "runs"
    result = cascade(
        "run",
        write_config(tmp_path, CONFIG.format(dataset="msmarco-passage/dl19")),
        "--out",
        out,
        "--cache",
        tmp_path / "c",
        "--data-dir",
        tmp_path / "nowhere",
    )
    assert_clean_failure(result, r"data dir '.*nowhere' does not exist \(from --data-dir\)", out)


def test_data_dir_needed_but_unset(cascade, tmp_path):
    result = cascade(
        "run",
        write_config(tmp_path, CONFIG.format(dataset="msmarco-passage/dl19")),
        "--out",
        tmp_path / "runs",
        "--cache",
        tmp_path / "c",
        env={"CASCADE_DATA": ""},
    )
    assert_clean_failure(result, r"reads the data dir: pass --data-dir or set CASCADE_DATA")


def test_run_line_with_too_few_columns(cascade, tmp_path):
    (tmp_path / "q.txt").write_text("1 0 a 1\n")
    (tmp_path / "r.trec").write_text("1 Q0 a 1 2.0 t\n1 Q0 b 2\n")
    result = cascade("eval", tmp_path / "q.txt", tmp_path / "r.trec")
    assert_clean_failure(result, r"r\.trec:2: expected 6 columns")


def test_run_line_with_non_numeric_score(cascade, tmp_path):
    (tmp_path / "q.txt").write_text("1 0 a 1\n")
    (tmp_path / "r.trec").write_text("1 Q0 a 1 2.0 t\n1 Q0 b 2 NaNx t\n")
    result = cascade("eval", tmp_path / "q.txt", tmp_path / "r.trec")
    assert_clean_failure(result, r"r\.trec:2: score 'NaNx' is not a number")


def test_conflicting_qrels(cascade, tmp_path):
    (tmp_path / "q.txt").write_text("1 0 a 1\n1 0 b 0\n1 0 a 3\n")
    (tmp_path / "r.trec").write_text("1 Q0 a 1 2.0 t\n")
    result = cascade("eval", tmp_path / "q.txt", tmp_path / "r.trec")
    assert_clean_failure(result, r"q\.txt:3: conflicting judgments for query '1', document 'a'")


def test_empty_query(cascade, tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "a", "title": "", "text": "a small text"}\n')
    (folder / "queries.jsonl").write_text('{"_id": "1", "text": "small"}\n{"_id": "2", "text": ""}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\ta\t1\n2\ta\t1\n")
    out = tmp_path / "runs"
    config = write_config(tmp_path, CONFIG.format(dataset="{path: " + str(folder) + "}"))
    result = cascade("run", config, "--out", out, "--cache", tmp_path / "c")
    assert_clean_failure(result, r"queries\.jsonl:2: query '2' is empty", out)


def test_unknown_measure_on_eval(cascade, tmp_path):
    (tmp_path / "q.txt").write_text("1 0 a 1\n")
    (tmp_path / "r.trec").write_text("1 Q0 a 1 2.0 t\n")
    result = cascade("eval", tmp_path / "q.txt", tmp_path / "r.trec", "-m", "nDCG@x")
    assert_clean_failure(result, r"--measure: unknown measure 'nDCG@x'")


def test_a_usage_error_is_exit_2_without_a_traceback(cascade):
    result = cascade("suite", "configs/suites/msmarco.yaml", "-p", "a.yaml", "b.yaml")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "unexpected extra argument" in result.stderr
