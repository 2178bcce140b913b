"""A run folder is the same bytes on a rerun: two processes with separate caches write identical folders, except
manifest.json (timings, date, host), which holds every wall-clock figure."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ROOT

CONFIGS = ("configs/sample/splade-seismic.yaml", "configs/sample/bm25-dense-rerank.yaml")  # a sparse stage; two stages


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_two_processes_write_identical_run_folders(cascade, tmp_path):
    outs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt / "runs"
        result = cascade(
            "run", *(ROOT / c for c in CONFIGS), "--out", out, "--cache", tmp_path / attempt / "cache", "-q"
        )
        assert result.returncode == 0, result.stderr
        outs.append(out)
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == ["sample-bm25-dense-rerank", "sample-splade-seismic"]
    for name in names:
        first, second = files(outs[0] / name), files(outs[1] / name)
        assert sorted(first) == sorted(second)
        assert {"run.trec", "perquery.tsv", "metrics.json", "config.json", "manifest.json"} <= set(first)
        for file in sorted(set(first) - {"manifest.json"}):
            assert first[file] == second[file], f"{name}/{file} differs between two runs"
        lines = first["perquery.tsv"].decode().splitlines()
        rows = [tuple(line.split("\t")[:2]) for line in lines[1:]]
        assert lines[0] == "qid\tmeasure\tvalue" and rows == sorted(rows)
    # the sparse stage's wall-clock figures are in the manifest's summary only; metrics.json has the exact ones
    metrics = json.loads((outs[0] / "sample-splade-seismic" / "metrics.json").read_text())
    manifest = json.loads((outs[0] / "sample-splade-seismic" / "manifest.json").read_text())
    assert list(metrics["summary"]) == ["accuracy@10 vs exact", "index MB"]
    assert list(manifest["summary"]) == [
        "accuracy@10 vs exact",
        "p50 ms, 1 thread",
        "p99 ms, 1 thread",
        "index MB",
        "build s",
    ]
