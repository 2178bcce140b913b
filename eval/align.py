"""Query sets must match: put the per-query values of several runs on one query set before any statistic.

A run that has no value for a query (it retrieved nothing for it, or was cut short) either scores 0 there
(`missing="zero"`, what a user of the system would get) or is refused (`missing="refuse"`). Never silently
dropped: trec_eval-style means over each run's own queries would compare runs on different query sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cascade.core.errors import CascadeError

MISSING_CHOICES = ("zero", "refuse")
UNSEEN_PREFIX = "\x00unseen-"  # stands for a judged query that no run covers; cannot clash with a real qid


@dataclass
class Aligned:
    """Per-query values of every run on one query set, in one query order."""

    qids: list[str]
    scores: dict[str, dict[str, np.ndarray]]  # run -> measure -> values (len(qids))
    coverage: dict[str, int]  # run -> queries it has values for
    missing: str
    unseen: int = 0  # judged queries (from the manifests' counts) that no run has: scored 0 for all

    @property
    def queries(self) -> int:
        return len(self.qids)

    def note(self) -> str:
        """One sentence for reports: how missing queries were treated, never left implicit."""
        short = {run: n for run, n in self.coverage.items() if n < self.queries}
        if not short and not self.unseen:
            return f"Every run covers all {self.queries} queries."
        parts = [f"{run} covers {n}/{self.queries}" for run, n in short.items()]
        if self.unseen:
            parts.append(f"{self.unseen} judged queries are in no run")
        return "Missing queries scored 0 (--missing zero): " + "; ".join(parts) + "."


def align(
    perquery: dict[str, pd.DataFrame],
    *,
    missing: str = "zero",
    expected: int | None = None,
    measures: list[str] | None = None,
    what: str = "these runs",
) -> Aligned:
    """Align `qid, measure, value` frames (one per run) on the union of their queries.

    `expected` is the number of judged queries the runs were made for (from their manifests); when the union is
    smaller, the queries no run covers count too, as zeros, so a query every run failed on is not dropped.
    """
    if missing not in MISSING_CHOICES:
        raise CascadeError(f"missing must be one of {', '.join(MISSING_CHOICES)}, not {missing!r}")
    if measures is None:
        measures = []
        for frame in perquery.values():
            measures += [m for m in pd.unique(frame["measure"]) if m not in measures]
    all_qids = pd.unique(pd.concat([f["qid"] for f in perquery.values()], ignore_index=True)) if perquery else []
    qids = sorted(map(str, all_qids))
    unseen = max(0, (expected or 0) - len(qids))
    coverage = {run: int(frame["qid"].nunique()) for run, frame in perquery.items()}
    total = len(qids) + unseen
    if missing == "refuse":
        short = [f"{run} covers {n} of {total}" for run, n in coverage.items() if n < total]
        if short:
            raise CascadeError(
                f"query sets differ for {what}: {'; '.join(short)} queries (--missing zero scores the missing ones 0)"
            )
    index = pd.Index(qids)
    scores: dict[str, dict[str, np.ndarray]] = {}
    for run, frame in perquery.items():
        scores[run] = {}
        for measure, group in frame.groupby("measure", sort=False):
            if measure not in measures:
                continue
            if group["qid"].duplicated().any():
                raise CascadeError(f"run {run}: query {group['qid'][group['qid'].duplicated()].iloc[0]!r} repeats")
            positions = index.get_indexer(group["qid"])
            values = np.zeros(total)
            values[positions] = group["value"].to_numpy(dtype=np.float64)
            scores[run][str(measure)] = values
    qids = qids + [f"{UNSEEN_PREFIX}{i}" for i in range(unseen)]
    return Aligned(qids, scores, coverage, missing, unseen)
