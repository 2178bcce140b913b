"""The README's Python example runs as written, with the public API of `cascade`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = "In Python the same stages compose with `>>`"


def python_example() -> str:
    """The first ```python block after the heading sentence."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(HEADING)
    match = re.search(r"^```python\n(.*?)^```$", text[start:], flags=re.S | re.M)
    assert match, f"no ```python block after {HEADING!r}"
    return match.group(1)


def test_python_example_runs_and_prints_a_score(tmp_path):
    code = python_example()
    assert code.startswith("from cascade import ")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert 0.0 < float(last) <= 1.0, result.stdout
