"""Bad input through the real CLI: exit code 2, one line naming the file/line/key, no traceback, no output.

The catalogue of bad configs, options, paths and values is tests/test_bad_input.py; corrupt files are
tests/test_bad_files.py. Here: what needs a dataset folder of its own, and usage errors."""

from __future__ import annotations

from pathlib import Path

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


def test_a_usage_error_is_exit_2_without_a_traceback(cascade):
    result = cascade("suite", "configs/suites/msmarco.yaml", "-p", "a.yaml", "b.yaml")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "unexpected extra argument" in result.stderr
