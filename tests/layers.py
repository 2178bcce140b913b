"""Check the import-linter contracts (pyproject.toml, [tool.importlinter]) on the wheel's layout.

grimp, import-linter's graph builder, finds the modules of `cascade` by walking that package's folder. In this
checkout `cascade.eval` lives in `eval/`, not `cascade/eval/` (setuptools package-dir), so walking `cascade/` would
see `cascade.core` only and every contract would pass vacuously. So the packages' .py files are first copied into
the wheel's layout, `build/layers/cascade/{core,eval,indexes,rankers,pipelines}/...` (a gitignored folder, rebuilt
each time, about a second), and lint-imports runs there, with that folder first on the import path.

    python tests/layers.py       # `make lint` runs this after ruff; the exit status is lint-imports'
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ROOT / "build" / "layers"


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """`cascade.eval` -> `<root>/eval`, ...: pyproject.toml's [tool.setuptools.package-dir]."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return {name: root / folder for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def assemble(dest: Path = LAYERS, root: Path = ROOT) -> Path:
    """A fresh copy of every package's .py files in `dest`, laid out as the wheel installs them."""
    if dest.exists():
        shutil.rmtree(dest)
    for name, folder in package_dirs(root).items():
        target = dest.joinpath(*name.split("."))
        for source in sorted(folder.rglob("*.py")):
            relative = source.relative_to(folder)
            if "__pycache__" in relative.parts:
                continue
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
    return dest


def check(dest: Path = LAYERS, config: Path = ROOT / "pyproject.toml") -> subprocess.CompletedProcess:
    """lint-imports over the assembled copy: run from `dest` (lint-imports puts its working folder first on
    sys.path, ahead of the editable install's finder) with `dest` on PYTHONPATH too."""
    lint = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(dest)}
    command = [str(lint), "--config", str(config), "--no-cache"]
    return subprocess.run(command, cwd=dest, env=env, capture_output=True, text=True, check=False)


def main() -> int:
    result = check(assemble())
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
