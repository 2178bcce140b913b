"""Fusion of two or more runs: reciprocal rank fusion, CombSUM and CombMNZ.

A fusion stage owns sub-pipelines (`inputs`), each applied to the fusion stage's own input (the queries when it
is first, else the upstream run); the runner runs and caches each sub-pipeline like any other chain of stages.

    - rrf:
        k: 60
        inputs:
          - [{bm25: {k: 1000}}]
          - [{dense: {k: 1000}}]
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from cascade.core.errors import CascadeError
from cascade.rankers.base import Context, Params, Stage


class FusionParams(Params):
    inputs: list[list[dict[str, Any]]] = Field(..., min_length=2, description="sub-pipelines whose runs are fused")
    depth: int = Field(1000, gt=0, description="how many documents of each input run take part")
    weights: list[float] | None = Field(None, description="one weight per input (default: all 1)")

    @field_validator("weights")
    @classmethod
    def _positive(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(w < 0 for w in value):
            raise ValueError("weights must be >= 0")
        return value


class RRFParams(FusionParams):
    k: int = Field(60, ge=0, description="RRF constant: score = sum w / (k + rank)")


class CombParams(FusionParams):
    norm: Literal["minmax", "zscore", "none"] = "minmax"


class Fusion(Stage):
    """Base of the fusion stages: the runner calls `fuse` with the runs of `sub_pipelines()`."""

    name = "fusion"
    Params = FusionParams

    def sub_pipelines(self) -> list[list[Stage]]:
        from cascade.rankers import STAGES

        return [
            [STAGES[name](**(params or {})) for item in chain for name, params in item.items()]
            for chain in self.params.inputs
        ]

    def cache_parts(self, ctx: Context) -> dict:
        # The inputs are addressed by their own cache keys, which the runner adds; only the fusion knobs go here.
        parts = super().cache_parts(ctx)
        parts["params"] = {k: v for k, v in parts["params"].items() if k != "inputs"}
        return parts

    def weights(self) -> list[float]:
        weights = self.params.weights or [1.0] * len(self.params.inputs)
        if len(weights) != len(self.params.inputs):
            raise CascadeError(f"{self.name}.weights: {len(weights)} weights for {len(self.params.inputs)} inputs")
        return weights

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        from cascade.rankers.base import Pipeline, with_queries

        runs = []
        for chain in self.sub_pipelines():
            runs.append(with_queries(Pipeline(chain).transform(inp, ctx), inp.drop_duplicates("qid")))
        return self.fuse(runs)

    def fuse(self, runs: list[pd.DataFrame]) -> pd.DataFrame:
        from cascade.eval.frames import normalise_run

        weights = self.weights()
        parts = []
        for weight, run in zip(weights, runs, strict=True):
            run = run[run["rank"] <= self.params.depth][["qid", "docno", "score", "rank"]]
            parts.append(run.assign(contribution=weight * self.contribution(run), hit=1))
        table = pd.concat(parts, ignore_index=True)
        fused = table.groupby(["qid", "docno"], sort=False).agg(score=("contribution", "sum"), hits=("hit", "sum"))
        fused = fused.reset_index()
        if self.multiply_by_hits:
            fused["score"] = fused["score"] * fused["hits"]
        order = {q: i for i, q in enumerate(pd.unique(pd.concat([r["qid"] for r in runs])))}
        # Ties broken by docno so the fused run does not depend on the inputs' order in memory.
        fused = fused.assign(_q=fused["qid"].map(order)).sort_values(
            ["_q", "score", "docno"], ascending=[True, False, True], kind="mergesort"
        )
        return normalise_run(fused[["qid", "docno", "score"]].assign(rank=0).reset_index(drop=True))

    multiply_by_hits = False

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if k != "inputs")
        chains = " | ".join(" >> ".join(repr(s) for s in chain) for chain in self.sub_pipelines())
        return f"{self.name}({knobs})[{chains}]"

    def contribution(self, run: pd.DataFrame) -> pd.Series:
        raise NotImplementedError


class RRF(Fusion):
    """Reciprocal rank fusion (Cormack et al., SIGIR 2009): sum of w / (k + rank)."""

    name = "rrf"
    Params = RRFParams

    def contribution(self, run: pd.DataFrame) -> pd.Series:
        return 1.0 / (self.params.k + run["rank"].astype("float64"))


class CombSUM(Fusion):
    """Sum of per-query normalised scores (Fox and Shaw, TREC-2 1994)."""

    name = "combsum"
    Params = CombParams

    def contribution(self, run: pd.DataFrame) -> pd.Series:
        return normalise_scores(run, self.params.norm)


class CombMNZ(CombSUM):
    """CombSUM times the number of inputs that retrieved the document."""

    name = "combmnz"
    multiply_by_hits = True


def normalise_scores(run: pd.DataFrame, norm: str) -> pd.Series:
    """Per-query min-max or z-score normalisation; a query whose scores are all equal gets 0 (not NaN)."""
    scores = run["score"].astype("float64")
    if norm == "none":
        return scores
    grouped = scores.groupby(run["qid"])
    if norm == "minmax":
        low, high = grouped.transform("min"), grouped.transform("max")
        span = (high - low).replace(0.0, np.nan)
        return ((scores - low) / span).fillna(0.0)
    mean, std = grouped.transform("mean"), grouped.transform("std", ddof=0)
    return ((scores - mean) / std.replace(0.0, np.nan)).fillna(0.0)
