"""The wheel installs one top-level name, `cascade`, with every module of the checkout and its data files."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def checkout_modules() -> set[str]:
    """Every .py file of the packages, as the path the wheel must hold (pyproject's package-dir mapping)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    out = set()
    for name, folder in config["tool"]["setuptools"]["package-dir"].items():
        base = ROOT / folder
        for source in base.rglob("*.py"):
            if "__pycache__" not in source.parts:
                out.add("/".join([*name.split("."), *source.relative_to(base).parts]))
    return out


def source_copy(dest: Path) -> Path:
    """pyproject.toml, README.md and the package folders: building from a copy leaves no build/ in the checkout
    (whose stale build/lib a later in-tree build would pack) and sees exactly the files the checkout has now."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in set(config["tool"]["setuptools"]["package-dir"].values()):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_wheel_holds_only_cascade_with_its_data(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    source_copy(source)
    out = tmp_path / "wheel"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    wheels = list(out.glob("cascade_ir-*.whl"))
    assert len(wheels) == 1, [p.name for p in out.iterdir()]
    names = zipfile.ZipFile(wheels[0]).namelist()

    tops = {name.split("/")[0] for name in names}
    assert all(top == "cascade" or fnmatch.fnmatch(top, "cascade_ir-*.dist-info") for top in tops), sorted(tops)
    assert "cascade" in tops

    missing = checkout_modules() - set(names)
    assert not missing, f"modules missing from the wheel (add their package to pyproject.toml): {sorted(missing)}"
    assert fnmatch.filter(names, "cascade/eval/datasets/sample/*.jsonl")
    assert {f"cascade/eval/datasets/sample/{n}.jsonl" for n in ("corpus", "queries", "negation")} <= set(names)
    assert {"cascade/eval/report/assets/report.css", "cascade/eval/report/assets/report.js"} <= set(names)
    assert fnmatch.filter(names, "cascade/eval/report/assets/*")
