"""The CLI surface: fast start-up, datasets listing, leaderboard from run folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_import_pulls_no_heavy_library():
    heavy = "('torch', 'pyserini', 'jnius', 'pandas', 'transformers')"
    code = f"import cascade.pipelines.cli, sys; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands(cascade):
    result = cascade("--help")
    assert result.returncode == 0
    for command in ("run", "eval", "leaderboard", "compare", "datasets"):
        assert command in result.stdout


def test_datasets_lists_sample_as_available_without_data_dir(cascade):
    result = cascade("datasets", env={"CASCADE_DATA": ""})
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}
    assert rows["sample"] == "yes"
    assert rows["msmarco-passage/dl19"] == "no"


def test_irds_dataset_offline_is_a_one_line_error(cascade, tmp_path):
    config = tmp_path / "irds.yaml"
    config.write_text("name: irds\ndataset: irds:msmarco-passage/trec-dl-2019/judged\npipeline:\n  - bm25: {k: 10}\n")
    result = cascade(
        "run",
        config,
        "--out",
        tmp_path / "runs",
        "--cache",
        tmp_path / "c",
        env={"IR_DATASETS_HOME": str(tmp_path / "irds")},
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "irds:msmarco-passage/trec-dl-2019/judged" in result.stderr and "BEIR folder" in result.stderr


def test_leaderboard_tables_every_run(cascade, tmp_path):
    for config in ("bm25.yaml", "bm25-rm3.yaml"):
        result = cascade(
            "run", ROOT / "configs" / "sample" / config, "--out", tmp_path / "runs", "--cache", tmp_path / "cache", "-q"
        )
        assert result.returncode == 0, result.stderr
    result = cascade("leaderboard", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "runs" / "leaderboard.md").read_text()
    assert table == result.stdout.rstrip("\n") + "\n" or table.strip() == result.stdout.strip()
    rows = [line for line in table.splitlines() if line.startswith("| sample-")]
    assert {row.split("|")[1].strip() for row in rows} == {"sample-bm25", "sample-bm25-rm3"}
    assert "nDCG@10" in table and "ms/query" in table
