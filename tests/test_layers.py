"""The import-linter contracts (pyproject.toml) hold, and they do catch an upward import.

They run on a copy in the wheel's layout (tests/layers.py): grimp walks the root package's folder, and in the
checkout `cascade.eval` is `eval/`, not `cascade/eval/`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOORS = "Floors: cascade.pipelines > rankers > indexes > eval > core"


def layers_tool():
    spec = importlib.util.spec_from_file_location("layers_tool", ROOT / "tests" / "layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_package(module: Path, dest: Path) -> bool:
    """Whether every folder from `dest` down to the module is a regular package (grimp skips the others)."""
    return all((folder / "__init__.py").is_file() for folder in module.parents if dest in folder.parents)


def test_contracts_hold_on_the_assembled_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # lint-imports wraps long lines at the terminal's width
    tool = layers_tool()
    dest = tool.assemble(tmp_path / "layers")
    modules = {p.relative_to(dest).with_suffix("").as_posix() for p in dest.rglob("*.py") if in_package(p, dest)}
    assert {"cascade/core/paths", "cascade/eval/stats", "cascade/indexes/batching", "cascade/rankers/base"} <= modules
    assert "cascade/pipelines/train/ltr" in modules
    result = tool.check(dest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert FLOORS in result.stdout and "KEPT" in result.stdout
    assert f"Analyzed {len(modules)} files" in result.stdout  # grimp saw every module, not just cascade.core


def test_an_upward_import_breaks_the_floors_contract(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    tool = layers_tool()
    dest = tool.assemble(tmp_path / "layers")
    module = dest / "cascade" / "eval" / "stats.py"
    module.write_text(module.read_text(encoding="utf-8") + "\nimport cascade.pipelines  # deliberately upward\n")
    result = tool.check(dest)
    assert result.returncode != 0
    assert FLOORS in result.stdout and "BROKEN" in result.stdout
    assert "cascade.eval is not allowed to import cascade.pipelines" in result.stdout
    assert "cascade.eval.stats -> cascade.pipelines" in result.stdout
