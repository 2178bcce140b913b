"""Pooled runs: one pipeline's runs on disjoint query sets (TREC DL 2019 and 2020) as one run, for the statistics.

A figure "over DL19+DL20 together" (97 queries) needs each pipeline's two years as one run: twice the queries gives
tighter intervals and more power than either year alone, and nothing is re-scored (the per-query values are those
each year's run folder holds). `cascade leaderboard --pool A+B` builds such runs in memory, one pooled section per
qrels, across suites; `bench/pool_runs.py` writes one to a folder that `cascade compare` reads.

The pooled run's per-query values are the union of its members' rows, so its means, intervals, tests and W/T/L come
from the same code as any run's. Its ms/query is the members' weighted by their query counts (the mean over all the
pooled queries), and a cross-validated member makes it cross-validated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cascade.core.atomic import write_text
from cascade.core.errors import CascadeError
from cascade.eval.report.runs import CROSS_VALIDATED, RunInfo, unique_labels

YEAR = re.compile(r"^dl\d\d-")  # dl19-X and dl20-X pool as X when the dataset's own name is not the prefix
POOL_EXAMPLE = "msmarco-passage/dl19+msmarco-passage/dl20"


def parse_pools(texts: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`--pool A+B` values as (A, B) pairs, checked before any run is read so a typo is a one-line error."""
    pools: list[tuple[str, str]] = []
    for text in texts:
        parts = [p.strip() for p in text.split("+")]
        if len(parts) != 2 or not all(parts):
            raise CascadeError(f"--pool {text!r} is not of the form A+B (two dataset names, e.g. '{POOL_EXAMPLE}')")
        first, second = parts
        if first == second:
            raise CascadeError(f"--pool {text!r} names the dataset {first!r} twice")
        if (first, second) in pools or (second, first) in pools:
            raise CascadeError(f"--pool {text!r} is given twice")
        pools.append((first, second))
    return tuple(pools)


def pipeline_key(name: str, dataset: str) -> tuple[str, str]:
    """(prefix, pipeline): `dl19-bm25` on msmarco-passage/dl19 is ("dl19", "bm25"). The prefix removed is the
    dataset's last name part, else pool_runs' `dlNN-`; a name with neither is the pipeline as it is."""
    tail = dataset.rpartition("/")[2]
    if tail and name.startswith(f"{tail}-") and len(name) > len(tail) + 1:
        return tail, name[len(tail) + 1 :]
    year = YEAR.match(name)
    if year and len(name) > year.end():
        return year.group()[:-1], name[year.end() :]
    return "", name


def joined_dataset(datasets: Sequence[str]) -> str:
    """msmarco-passage/dl19 and msmarco-passage/dl20 -> msmarco-passage/dl19+dl20: the pooled section's title."""
    datasets = list(dict.fromkeys(datasets))
    heads = {d.rpartition("/")[0] for d in datasets}
    if len(heads) == 1 and heads != {""}:
        return f"{heads.pop()}/" + "+".join(d.rpartition("/")[2] for d in datasets)
    return "+".join(datasets)


def _weighted(values: list[tuple[float | None, int]]) -> float | None:
    """A mean per query over all the pooled queries, from each member's mean and query count."""
    if any(v is None for v, _ in values) or not sum(n for _, n in values):
        return None
    return round(sum(v * n for v, n in values if v is not None) / sum(n for _, n in values), 4)


def pool_runs(members: Sequence[RunInfo], name: str | None = None, *, suite: str | None = None) -> RunInfo:
    """One run from runs of one pipeline on disjoint query sets with the same qrels (a shared qid is refused).

    Only the measures every member has are kept: a measure of one member alone would score 0 on the other's
    queries. `name` defaults to the members' name without `dlNN-`; `suite` is recorded in the manifest (the
    leaderboard's pooled sections belong to their members' suite).
    """
    import pandas as pd

    runs = list(members)
    if len(runs) < 2:
        raise CascadeError("give at least two run folders to pool")
    seen: dict[str, str] = {}
    for run in runs:
        for qid in run.perquery["qid"].unique():
            if qid in seen:
                raise CascadeError(f"query {qid} is in {seen[qid]} and {run.folder}: the query sets must be disjoint")
            seen[qid] = str(run.folder)
    qrels = {r.qrels for r in runs}
    if len(qrels) > 1:
        raise CascadeError(f"the runs use different qrels ({', '.join(sorted(qrels))})")
    names = {YEAR.sub("", r.name) for r in runs}
    name = name or (names.pop() if len(names) == 1 else "+".join(r.name for r in runs))
    measures = [m for m in runs[0].measures if all(m in r.measures for r in runs)]
    perquery = pd.concat([r.perquery[r.perquery["measure"].isin(measures)] for r in runs], ignore_index=True)
    perquery = perquery.sort_values(["qid", "measure"], kind="stable").reset_index(drop=True)
    counts = [int(r.perquery["qid"].nunique()) for r in runs]
    total = sum(counts)
    judged = sum(max(r.expected_queries or 0, n) for r, n in zip(runs, counts, strict=True))
    means = perquery.groupby("measure")["value"].mean()
    dataset = joined_dataset([str(r.metrics.get("dataset", "?")) for r in runs])

    stages: dict[str, list[tuple[float | None, int]]] = {}
    for run, n in zip(runs, counts, strict=True):
        for stage, ms in run.stage_ms:
            stages.setdefault(stage, []).append((ms, n))
    manifest: dict = {
        "name": name,
        "config_hash": hashlib.sha256("".join(str(r.config_hash) for r in runs).encode()).hexdigest(),
        "dataset": {"name": dataset, "qrels": runs[0].qrels, "queries": judged},
        "ms_per_query": _weighted([(r.ms_per_query, n) for r, n in zip(runs, counts, strict=True)]),
        "stages": [
            {"stage": stage, "ms_per_query": _weighted(values)}
            for stage, values in stages.items()
            if len(values) == len(runs)
        ],
        "pooled_from": [
            {"folder": str(r.folder), "name": r.name, "dataset": r.dataset, "queries": n}
            for r, n in zip(runs, counts, strict=True)
        ],
    }
    for key in ("seed", "git"):  # shown beside the run when its members agree
        values = [json.dumps(r.manifest.get(key), sort_keys=True) for r in runs]
        if runs[0].manifest.get(key) is not None and len(set(values)) == 1:
            manifest[key] = runs[0].manifest[key]
    if suite is not None:
        manifest["suite"] = suite
    if any(r.protocol == CROSS_VALIDATED for r in runs):
        manifest["protocol"] = CROSS_VALIDATED
    metrics = {
        "name": name,
        "dataset": dataset,
        "qrels": runs[0].qrels,
        "queries": total,
        "measures": {m: float(means[m]) for m in measures},
    }
    config = {"name": name, "pooled_from": [r.config for r in runs]}
    config["pipeline"] = [stage for r in runs for stage in (r.config.get("pipeline") or [])]  # keeps `train:` refs
    return RunInfo(name, runs[0].folder, metrics, manifest, config, perquery, members=runs)


def write_pooled(run: RunInfo, out: str | Path) -> Path:
    """A pooled run as a folder `cascade compare` and `leaderboard` read: perquery.tsv, metrics.json,
    manifest.json, config.json; no run file, since nothing is re-scored."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not _pooled_before(out):
        raise CascadeError(f"--out: '{out}' holds files cascade did not pool there; give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "perquery.tsv", run.perquery.to_csv(sep="\t", index=False))
    for file, value in (("metrics.json", run.metrics), ("manifest.json", run.manifest), ("config.json", run.config)):
        write_text(out / file, json.dumps(value, indent=2) + "\n")
    return out


def _pooled_before(folder: Path) -> bool:
    """A folder `write_pooled` wrote (its manifest names the members), which it may write again."""
    try:
        return "pooled_from" in json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


@dataclass
class PooledGroup:
    """The runs of one leaderboard section pooled from two datasets, and what its header line says of them."""

    suite: str
    dataset: str  # as RunInfo.dataset spells it, e.g. "msmarco-passage/dl19+dl20 (official qrels)"
    runs: list[RunInfo]
    pooled_from: str  # e.g. "pooled from msmarco-passage/dl19 (43 queries) and msmarco-passage/dl20 (54 queries)"
    left_out: str  # a sentence naming the runs that have no partner, or "" when every run pools


def pooled_groups(
    runs: Sequence[RunInfo], pools: Sequence[tuple[str, str]], suite_rank: Callable[[str], object] = str
) -> list[PooledGroup]:
    """Per --pool A+B, per qrels where both datasets have runs: the runs of A and B that pool pairwise.

    A pooled section spans suites: the `cv` suite's cross-validated runs are tested against the `msmarco` suite's
    baseline and references on the same queries, which is the comparison a reader wants. It is placed in the first
    of its runs' suites (`suite_rank` order); a pipeline run by two suites on one dataset counts once (the first).

    Runs pair when their names match without each dataset's prefix (dl19-X and dl20-X pool as dl19+dl20-X, so a
    --baseline '*-X' glob selects it). A pipeline on one dataset only, or with two configs of one name there, is
    left out and named in the note. A dataset no run is on is a typo (an error), as is a query in both datasets.
    """
    if not pools:
        return []
    known = {r.dataset_name for r in runs}
    for first, second in pools:
        for dataset in (first, second):
            if dataset not in known:
                raise CascadeError(
                    f"--pool '{first}+{second}': no run is on dataset {dataset!r} (runs are on: "
                    f"{', '.join(sorted(known)) or 'none'})"
                )
    variants = list(dict.fromkeys(r.qrels for r in runs))
    ranked = sorted(runs, key=lambda r: suite_rank(r.suite))  # stable: the first suite's run wins a name
    groups: list[PooledGroup] = []
    for first, second in pools:
        for qrels in variants:
            sides = []
            for dataset in (first, second):
                side: dict[str, RunInfo] = {}
                for run in ranked:
                    if run.qrels == qrels and run.dataset_name == dataset:
                        side.setdefault(f"{run.name}\0{run.config_hash}", run)
                sides.append(list(side.values()))
            if not all(sides):
                continue
            _disjoint(first, second, sides)
            suite = min((r.suite for side in sides for r in side), key=suite_rank)
            group = _pool_pairs(suite, (first, second), sides)
            if group is not None:
                groups.append(group)
    return groups


def _disjoint(first: str, second: str, sides: list[list[RunInfo]]) -> None:
    qids = [set().union(*(set(r.perquery["qid"]) for r in side)) for side in sides]
    shared = sorted(qids[0] & qids[1])
    if shared:
        more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
        raise CascadeError(
            f"--pool '{first}+{second}': query {shared[0]!r}{more} is in both datasets; pooled query sets must be "
            "disjoint"
        )


def _pool_pairs(suite: str, datasets: tuple[str, str], sides: list[list[RunInfo]]) -> PooledGroup | None:
    keyed: list[dict[str, list[tuple[str, RunInfo]]]] = []
    for dataset, side in zip(datasets, sides, strict=True):
        by_key: dict[str, list[tuple[str, RunInfo]]] = {}
        for run in side:
            prefix, key = pipeline_key(run.name, dataset)
            by_key.setdefault(key, []).append((prefix, run))
        keyed.append(by_key)
    pooled, alone, twice = [], [], []
    for key in sorted(set(keyed[0]) | set(keyed[1])):
        found = [k.get(key, []) for k in keyed]
        if any(len(f) > 1 for f in found):
            twice += [run.label for f in found for _, run in f]
        elif not all(found):
            alone += [run.label for f in found for _, run in f]
        else:
            (pa, a), (pb, b) = found[0][0], found[1][0]
            name = f"{pa}+{pb}-{key}" if pa and pb else key
            pooled.append(pool_runs([a, b], name, suite=suite))
    if not pooled:
        return None
    unique_labels(pooled)
    counts = [max(max((r.expected_queries or 0) for r in side), _queries(side)) for side in sides]
    pooled_from = f"pooled from {datasets[0]} ({counts[0]} queries) and {datasets[1]} ({counts[1]} queries)"
    left_out = []
    if alone:
        left_out.append(f"Left out, on one dataset only: {', '.join(alone)}.")
    if twice:
        left_out.append(f"Left out, two configs of one name on a dataset: {', '.join(twice)}.")
    return PooledGroup(suite, pooled[0].dataset, pooled, pooled_from, " ".join(left_out))


def _queries(side: list[RunInfo]) -> int:
    return len(set().union(*(set(r.perquery["qid"]) for r in side)))
