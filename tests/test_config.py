"""Config validation: every error names the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.core.errors import CascadeError
from cascade.pipelines.config import load_config

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_CONFIGS = sorted(p for folder in ("msmarco", "sample") for p in (ROOT / "configs" / folder).glob("*.yaml"))

GOOD = """name: t
dataset: sample
measures: [nDCG@10]
pipeline:
  - bm25: {k1: 0.9, b: 0.4, k: 100}
"""


def config(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_good_config_loads_with_defaults(tmp_path):
    loaded = load_config(config(tmp_path, GOOD))
    assert loaded.dataset.name == "sample"
    assert loaded.stage_specs() == [("bm25", {"k1": 0.9, "b": 0.4, "k": 100})]


def test_config_hash_ignores_spelled_out_defaults_and_name(tmp_path):
    a = load_config(config(tmp_path, GOOD))
    b_path = tmp_path / "other.yaml"
    b_path.write_text(GOOD.replace("name: t", "name: u\nseed: 42").replace("{k1: 0.9, b: 0.4, k: 100}", "{k: 100}"))
    assert a.config_hash == load_config(b_path).config_hash
    c_path = tmp_path / "third.yaml"
    c_path.write_text(GOOD.replace("k: 100", "k: 99"))
    assert load_config(c_path).config_hash != a.config_hash


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (GOOD.replace("measures:", "measurez:"), r"c\.yaml:3: measurez: unknown key"),
        (GOOD.replace("k1: 0.9", "k1: high"), r"c\.yaml:5: pipeline\[0\]\.bm25\.k1: Input should be a valid number"),
        (GOOD.replace("k: 100}", "k: 100, k3: 1}"), r"c\.yaml:5: pipeline\[0\]\.bm25\.k3: unknown key"),
        (GOOD.replace("bm25:", "bm26:"), r"c\.yaml:5: pipeline\[0\]\.bm26: unknown stage"),
        (GOOD.replace("[nDCG@10]", "[nDCG@ten]"), r"c\.yaml:3: unknown measure 'nDCG@ten'"),
        (GOOD.replace("b: 0.4", "b: 1.5"), r"c\.yaml:5: pipeline\[0\]\.bm25\.b: Input should be less than or equal"),
        (GOOD.replace("dataset: sample\n", ""), r"c\.yaml:\d+: dataset: required key is missing"),
        ("name: t\ndataset: [unclosed\n", r"c\.yaml:\d+: not valid YAML"),
        (GOOD.replace("bm25: {k1: 0.9, b: 0.4, k: 100}", "ltr: {model: m}"), r"c\.yaml:5: pipeline\[0\]\.ltr: reranks"),
    ],
)
def test_bad_config_errors_name_file_line_and_key(tmp_path, text, pattern):
    with pytest.raises(CascadeError, match=pattern):
        load_config(config(tmp_path, text))


@pytest.mark.parametrize("path", PIPELINE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_pipeline_config_loads(path):
    assert load_config(path).pipeline


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_config_expands_to_valid_points(path):
    from cascade.pipelines.sweep import load_sweep, sweep_points

    sweep = load_sweep(path)
    points = sweep_points(sweep, path)
    grid_size = 1
    for values in sweep.grid.values():
        grid_size *= len(values)
    assert len(points) == grid_size and len({config.config_hash for config, _, _ in points}) == grid_size
