"""bench/pool_runs.py (a wrapper of `cascade.eval.report.pool`): one pipeline's DL19 and DL20 run folders as one run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pool_runs import pool  # noqa: E402
from cascade.core.errors import CascadeError  # noqa: E402
from cascade.eval.report import read_run_folder  # noqa: E402
from cascade.eval.report.board import ReportOptions, compare_section  # noqa: E402


def run_folder(root: Path, name: str, dataset: str, values: dict[str, float], stage_ms: dict[str, float]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rows = "".join(f"{qid}\tnDCG@10\t{value}\n" for qid, value in values.items())
    (folder / "perquery.tsv").write_text("qid\tmeasure\tvalue\n" + rows, encoding="utf-8")
    metrics = {"name": name, "dataset": dataset, "qrels": "official", "queries": len(values)}
    metrics["measures"] = {"nDCG@10": sum(values.values()) / len(values)}
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    stages = [{"stage": s, "ms_per_query": ms} for s, ms in stage_ms.items()]
    manifest = {"name": name, "config_hash": name, "ms_per_query": sum(stage_ms.values()), "stages": stages}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_pooled_folder_holds_both_query_sets_and_weighted_costs(tmp_path: Path) -> None:
    a19 = run_folder(tmp_path, "dl19-x", "msmarco-passage/dl19", {"1": 0.5, "2": 1.0}, {"run_file": 1.0, "s": 10.0})
    a20 = run_folder(tmp_path, "dl20-x", "msmarco-passage/dl20", {"3": 0.0}, {"run_file": 4.0, "s": 40.0})
    b19 = run_folder(tmp_path, "dl19-y", "msmarco-passage/dl19", {"1": 0.5, "2": 0.5}, {"run_file": 1.0})
    b20 = run_folder(tmp_path, "dl20-y", "msmarco-passage/dl20", {"3": 0.0}, {"run_file": 1.0})
    metrics = pool([a19, a20], tmp_path / "pooled" / "x")
    assert metrics["name"] == "x" and metrics["queries"] == 3
    assert metrics["dataset"] == "msmarco-passage/dl19+dl20"
    assert metrics["measures"]["nDCG@10"] == pytest.approx(0.5)  # over the 3 queries, not the mean of two means
    manifest = json.loads((tmp_path / "pooled" / "x" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["ms_per_query"] == pytest.approx((11 * 2 + 44) / 3, abs=1e-4)  # weighted by queries
    assert {s["stage"]: s["ms_per_query"] for s in manifest["stages"]} == {"run_file": 2.0, "s": 20.0}
    pool([b19, b20], tmp_path / "pooled" / "y")
    runs = [read_run_folder(tmp_path / "pooled" / n) for n in ("x", "y")]
    section = compare_section(runs, runs[1], ReportOptions())
    (pair,) = section.analysis.pairs
    assert pair.queries == 3 and pair.diff.mean == pytest.approx(0.5 / 3)


def test_a_query_in_two_members_is_refused(tmp_path: Path) -> None:
    a = run_folder(tmp_path, "dl19-x", "msmarco-passage/dl19", {"1": 0.5}, {})
    b = run_folder(tmp_path, "dl20-x", "msmarco-passage/dl20", {"1": 0.5}, {})
    with pytest.raises(CascadeError, match="disjoint"):
        pool([a, b], tmp_path / "pooled")


def test_a_folder_with_other_files_is_never_written_into(tmp_path):
    """A user's files are sacred: --out naming a folder cascade did not pool into is refused, untouched."""
    import pandas as pd

    from cascade.eval.report.pool import pool_runs, write_pooled
    from cascade.eval.report.runs import RunInfo

    frame = pd.DataFrame({"qid": ["1"], "measure": ["nDCG@10"], "value": [0.5]})
    runs = [
        RunInfo(f"dl{y}-x", tmp_path / f"dl{y}-x", {"dataset": f"d/dl{y}", "measures": {"nDCG@10": 0.5}}, {}, {},
                frame.assign(qid=f"{y}"))
        for y in (19, 20)
    ]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text("{}")
    with pytest.raises(CascadeError, match="did not pool there"):
        write_pooled(pool_runs(runs), mine)
    assert (mine / "manifest.json").read_text() == "{}" and sorted(p.name for p in mine.iterdir()) == ["manifest.json"]
    again = write_pooled(pool_runs(runs), tmp_path / "pooled")
    assert write_pooled(pool_runs(runs), again) == again  # its own folder may be written again
