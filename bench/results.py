"""bench/RESULTS.md holds one section per benchmark; each benchmark replaces only its own, atomically."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cascade.core.atomic import write_text  # noqa: E402

HEADER = "# Benchmark results\n\nEach section says the command that produced it. `make bench` runs them all.\n"


def load_average() -> float:
    """The 1-minute load average, recorded around timed work: the timed work adds its own threads; more means other
    jobs ran and the figures are inflated."""
    return round(os.getloadavg()[0], 2)


def replace_section(path: Path, name: str, text: str) -> None:
    """Put `text` between this benchmark's markers, or append it; nothing else in the file changes."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    old = path.read_text(encoding="utf-8") if path.exists() else HEADER
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    write_text(path, new)
