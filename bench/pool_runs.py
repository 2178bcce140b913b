"""Pool run folders of one pipeline on disjoint query sets (DL19 and DL20) into one run folder, for the statistics.

`cascade compare` and `cascade leaderboard` compare runs on one dataset; a figure "over DL19+DL20 together" (97
queries) needs each pipeline's two years as one run. This writes a folder that holds only what the report reads:
`perquery.tsv` (the members' rows, one query set; a qid in two members is refused), `metrics.json` (the means over
the pooled queries), `manifest.json` (ms/query and each stage's ms/query weighted by the members' query counts,
the training protocol, the members) and `config.json` (the members' configs). No run file: nothing is re-scored.

    .venv/bin/python bench/pool_runs.py --out runs/issue15-pooled/official-bm25-run \
        runs/issue15/dl19-official-bm25-run runs/issue15/dl20-official-bm25-run
    .venv/bin/cascade compare runs/issue15-pooled/* --all-pairs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cascade.core.atomic import write_text  # noqa: E402
from cascade.core.errors import CascadeError  # noqa: E402
from cascade.eval.report.runs import CROSS_VALIDATED, read_run_folder  # noqa: E402

YEAR = re.compile(r"^dl\d\d-")  # dl19-X and dl20-X pool as X


def _joined(datasets: list[str]) -> str:
    """msmarco-passage/dl19 and msmarco-passage/dl20 -> msmarco-passage/dl19+dl20."""
    datasets = list(dict.fromkeys(datasets))
    heads = {d.rpartition("/")[0] for d in datasets}
    if len(heads) == 1 and heads != {""}:
        return f"{heads.pop()}/" + "+".join(d.rpartition("/")[2] for d in datasets)
    return "+".join(datasets)


def pool(members: list[Path], out: Path, name: str | None = None) -> dict:
    runs = [read_run_folder(m) for m in members]
    if len(runs) < 2:
        raise CascadeError("give at least two run folders to pool")
    seen: dict[str, str] = {}
    for run in runs:
        for qid in run.perquery["qid"].unique():
            if qid in seen:
                raise CascadeError(f"query {qid} is in {seen[qid]} and {run.folder}: the query sets must be disjoint")
            seen[qid] = str(run.folder)
    qrels = {str(r.metrics.get("qrels") or "default") for r in runs}
    if len(qrels) > 1:
        raise CascadeError(f"the runs use different qrels ({', '.join(sorted(qrels))})")
    names = {YEAR.sub("", r.name) for r in runs}
    name = name or (names.pop() if len(names) == 1 else "+".join(r.name for r in runs))
    import pandas as pd

    perquery = pd.concat([r.perquery for r in runs]).sort_values(["qid", "measure"], kind="stable")
    queries = {r.name: int(r.perquery["qid"].nunique()) for r in runs}
    total = sum(queries.values())
    measures = [m for m in runs[0].measures if all(m in r.measures for r in runs)]
    means = perquery.groupby("measure")["value"].mean()

    def weighted(values: list[tuple[float | None, int]]) -> float | None:
        if any(v is None for v, _ in values):
            return None
        return round(sum(v * n for v, n in values) / sum(n for _, n in values), 4)

    stages: dict[str, list[tuple[float | None, int]]] = {}
    for run in runs:
        for stage, ms in run.stage_ms:
            stages.setdefault(stage, []).append((ms, queries[run.name]))
    manifest = {
        "name": name,
        "config_hash": hashlib.sha256("".join(str(r.config_hash) for r in runs).encode()).hexdigest(),
        "dataset": {"queries": total},
        "ms_per_query": weighted([(r.ms_per_query, queries[r.name]) for r in runs]),
        "stages": [
            {"stage": stage, "ms_per_query": weighted(values)}
            for stage, values in stages.items()
            if len(values) == len(runs)
        ],
        "pooled_from": [
            {"folder": str(r.folder), "name": r.name, "dataset": r.dataset, "queries": queries[r.name]} for r in runs
        ],
    }
    if any(r.protocol == CROSS_VALIDATED for r in runs):
        manifest["protocol"] = CROSS_VALIDATED
    metrics = {
        "name": name,
        "dataset": _joined([str(r.metrics.get("dataset", "?")) for r in runs]),
        "qrels": qrels.pop(),
        "queries": total,
        "measures": {m: float(means[m]) for m in measures},
    }
    config = {"name": name, "pooled_from": [r.config for r in runs]}
    config["pipeline"] = [stage for r in runs for stage in (r.config.get("pipeline") or [])]
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "perquery.tsv", perquery.to_csv(sep="\t", index=False))
    for file, value in (("metrics.json", metrics), ("manifest.json", manifest), ("config.json", config)):
        write_text(out / file, json.dumps(value, indent=2) + "\n")
    return metrics


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
