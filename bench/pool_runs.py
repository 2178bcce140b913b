"""Pool run folders of one pipeline on disjoint query sets (DL19 and DL20) into one run folder, for the statistics.

`cascade leaderboard --pool A+B` now builds these pooled runs itself (`cascade.eval.report.pool`); this wrapper
keeps writing one as a folder, for `cascade compare` on pooled runs or a pooled run kept beside the others. The
folder holds only what the report reads: `perquery.tsv` (the members' rows, one query set; a qid in two members is
refused), `metrics.json` (the means over the pooled queries), `manifest.json` (ms/query and each stage's ms/query
weighted by the members' query counts, the training protocol, the members) and `config.json` (the members'
configs). No run file: nothing is re-scored.

    .venv/bin/python bench/pool_runs.py --out runs/issue15-pooled/official-bm25-run \
        runs/issue15/dl19-official-bm25-run runs/issue15/dl20-official-bm25-run
    .venv/bin/cascade compare runs/issue15-pooled/* --all-pairs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cascade.core.errors import CascadeError  # noqa: E402
from cascade.eval.report.pool import pool_runs, write_pooled  # noqa: E402
from cascade.eval.report.runs import read_run_folder  # noqa: E402


def pool(members: list[Path], out: Path, name: str | None = None) -> dict:
    """Pool the run folders `members` into the folder `out`; returns its metrics.json."""
    run = pool_runs([read_run_folder(m) for m in members], name)
    write_pooled(run, out)
    return run.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of one pipeline on disjoint query sets")
    parser.add_argument("--out", type=Path, required=True, help="the pooled run folder to write")
    parser.add_argument("--name", default=None, help="its name (default: the members' name without dlNN-)")
    args = parser.parse_args()
    try:
        metrics = pool(args.runs, args.out, args.name)
    except CascadeError as exc:
        sys.exit(f"pool_runs: {exc}")
    shown = "  ".join(f"{m}={v:.4f}" for m, v in metrics["measures"].items())
    print(f"{metrics['name']}: {metrics['queries']} queries  {shown} -> {args.out}")


if __name__ == "__main__":
    main()
