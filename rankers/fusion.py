"""Fusion of two or more runs: reciprocal rank fusion, CombSUM and CombMNZ.

A fusion stage owns child pipelines (`inputs`), each applied to the fusion stage's own input (the queries when it
is first, else the upstream run); the engine runs and caches each child like any other chain of stages and hands
their runs to `apply`. An input is a YAML list of stage specs or, in Python, a stage or pipeline:

    - rrf:
        k: 60
        inputs:
          - [{bm25: {k: 1000}}]
          - [{dense: {k: 1000}}]

    RRF(inputs=[BM25(k=1000), Dense(k=1000)], k=60)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationInfo, field_validator

from cascade.core.errors import CascadeError
from cascade.eval.runs import RUN_COLUMNS, normalise_run
from cascade.rankers.base import Context, Output, Params, Stage
from cascade.rankers.engine import execute


class FusionParams(Params):
    inputs: list[list[dict[str, Any]]] = Field(..., min_length=2, description="sub-pipelines whose runs are fused")
    depth: int = Field(1000, gt=0, description="how many documents of each input run take part")
    weights: list[float] | None = Field(None, description="one weight per input (default: all 1)")

    @field_validator("inputs", mode="before")
    @classmethod
    def _stages_to_specs(cls, value: Any) -> Any:
        """A stage or pipeline given in Python becomes its spec, so `>>` and YAML give one object."""
        if isinstance(value, list | tuple):
            return [item.spec() if isinstance(item, Stage) else item for item in value]
        return value

    @field_validator("weights")
    @classmethod
    def _positive(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if value is not None and any(w < 0 for w in value):
            raise ValueError("weights must be >= 0")
        inputs = info.data.get("inputs")
        if value is not None and inputs is not None and len(value) != len(inputs):
            raise ValueError(f"{len(value)} weights for {len(inputs)} inputs: give one weight per input")
        return value


class RRFParams(FusionParams):
    k: int = Field(60, ge=0, description="RRF constant: score = sum w / (k + rank)")


class CombParams(FusionParams):
    norm: Literal["minmax", "zscore", "none"] = "minmax"


class Fusion(Stage):
    """Base of the fusion stages: the engine runs `children()` and `apply` fuses their runs."""

    name = "fusion"
    Params = FusionParams
    children_param = "inputs"
    depth_param = "depth"

    def cache_parts(self, ctx: Context) -> dict:
        # The inputs are addressed by their own cache keys, which the engine adds; only the fusion knobs go here.
        parts = super().cache_parts(ctx)
        parts["params"] = {k: v for k, v in parts["params"].items() if k != "inputs"}
        return parts

    def weights(self) -> list[float]:
        weights = self.params.weights or [1.0] * len(self.params.inputs)
        if len(weights) != len(self.params.inputs):
            raise CascadeError(f"{self.name}.weights: {len(weights)} weights for {len(self.params.inputs)} inputs")
        return weights

    def apply(self, inp: pd.DataFrame, ctx: Context, inputs: list[pd.DataFrame]) -> Output:
        return Output(self.fuse(inputs))

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        """The fused run of `inp`: the children run through the engine, cached, like in any pipeline."""
        return execute(self, inp, ctx).frame[RUN_COLUMNS]

    def fuse(self, runs: list[pd.DataFrame]) -> pd.DataFrame:
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
        chains = " | ".join(repr(child) for child in self.children())
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
