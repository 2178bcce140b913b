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

`weights: tune` chooses the weights on a named dev set instead, as ranx's `optimize_fusion` does: the inputs run on
the dev queries (through the engine, cached), and every weight vector of the grid is scored there; the best one
(the first in grid order on a tie) fuses the evaluated queries. The grid is ranx's: every vector whose weights are
multiples of `step` (0.1) and sum to 1 (11 points for two inputs, 66 for three). The dev set must not share a query
(id or text) with the queries being ranked: tuning on the evaluated queries is refused.

    - combsum:
        weights: tune
        tune: {dataset: msmarco-passage/dl20, qrels: official, measure: nDCG@10}   # queries: [ids] = one fold
        inputs: [...]
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from cascade.core.digest import frame_digest
from cascade.core.errors import CascadeError
from cascade.eval.datasets import Dataset, load_dataset
from cascade.eval.measures import canonical, evaluate, parse_measures
from cascade.eval.runs import RUN_COLUMNS, normalise_run
from cascade.rankers.base import Context, Output, Params, Stage
from cascade.rankers.engine import execute

TUNE = "tune"
MAX_GRID = 1000  # grid points; a finer step over many inputs is refused rather than run for hours


class TuneParams(BaseModel):
    """Where `weights: tune` chooses the weights: a registered dataset's queries (or the fold `queries` of it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    dataset: str = Field(..., min_length=1, description="the dev set: a registered dataset on the same corpus")
    qrels: str = "default"
    queries: list[str] | None = Field(None, min_length=1, description="a fold of it: only these query ids")
    measure: str = "nDCG@10"
    step: float = Field(0.1, gt=0, le=0.5, description="grid step: weights are multiples of it and sum to 1")

    @field_validator("queries", mode="before")
    @classmethod
    def _ids(cls, value: object) -> object:
        """YAML reads an unquoted id like 1048585 as a number; a query id is its text."""
        return [str(v) for v in value] if isinstance(value, list) else value

    @field_validator("measure")
    @classmethod
    def _measure(cls, value: str) -> str:
        parse_measures([value], where="tune.measure")
        return value


class FusionParams(Params):
    inputs: list[list[dict[str, Any]]] = Field(..., min_length=2, description="sub-pipelines whose runs are fused")
    depth: int = Field(1000, gt=0, description="how many documents of each input run take part")
    weights: list[float] | None = Field(
        None, description="one weight per input (default: all 1), or `tune`: chosen on the `tune` dev set"
    )
    tune: TuneParams | None = Field(None, description="the dev set `weights: tune` chooses the weights on")

    @field_validator("inputs", mode="before")
    @classmethod
    def _stages_to_specs(cls, value: Any) -> Any:
        """A stage or pipeline given in Python becomes its spec, so `>>` and YAML give one object."""
        if isinstance(value, list | tuple):
            return [item.spec() if isinstance(item, Stage) else item for item in value]
        return value

    @model_validator(mode="before")
    @classmethod
    def _tuned(cls, data: Any) -> Any:
        """`weights: tune` is kept as the presence of `tune` (the dev set), so `weights` stays a list of numbers
        and its errors keep their plain keys; each needs the other."""
        if not isinstance(data, dict):
            return data
        if data.get("weights") == TUNE:
            if data.get("tune") is None:
                raise ValueError("weights: tune needs a dev set to choose them on: add tune: {dataset: NAME}")
            return {**data, "weights": None}
        if data.get("tune") is not None:
            raise ValueError("tune: a dev set is read only with weights: tune")
        return data

    @field_validator("weights")
    @classmethod
    def _positive(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if value is None:
            return value
        if any(w < 0 for w in value):
            raise ValueError("weights must be >= 0")
        inputs = info.data.get("inputs")
        if inputs is not None and len(value) != len(inputs):
            raise ValueError(f"{len(value)} weights for {len(inputs)} inputs: give one weight per input")
        return value

    @model_validator(mode="after")
    def _grid_size(self) -> FusionParams:
        if self.tune is not None and len(weight_grid(len(self.inputs), self.tune.step)) > MAX_GRID:
            raise ValueError(f"tune.step: {self.tune.step} over {len(self.inputs)} inputs is over {MAX_GRID} points")
        return self


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
        # The inputs are addressed by their own cache keys, which the engine adds; only the fusion knobs go here,
        # and for tuned weights the dev set's content (its queries and judgements decide the weights).
        parts = super().cache_parts(ctx)
        parts["params"] = {k: v for k, v in parts["params"].items() if k != "inputs"}
        if self.params.tune is not None:
            dev = self.dev_set(ctx.data_dir)
            parts["dev"] = {
                "queries": frame_digest(dev.queries, ["qid", "query", "instruction"]),
                "qrels": frame_digest(dev.qrels, ["qid", "docno", "label"]),
            }
        return parts

    def get_params(self) -> dict:
        """`weights: tune` with its dev set as written; untuned stages without `tune` (their specs and hashes as
        before tuning existed)."""
        params = super().get_params()
        if params.get("tune") is None:
            params.pop("tune", None)
        else:
            params["weights"] = TUNE
        return params

    def weights(self) -> list[float]:
        if self.params.tune is not None:
            raise CascadeError(f"{self.name}.weights: tune chooses the weights when the stage runs")
        weights = self.params.weights or [1.0] * len(self.params.inputs)
        if len(weights) != len(self.params.inputs):
            raise CascadeError(f"{self.name}.weights: {len(weights)} weights for {len(self.params.inputs)} inputs")
        return weights

    def apply(self, inp: pd.DataFrame, ctx: Context, inputs: list[pd.DataFrame]) -> Output:
        if self.params.tune is None:
            return Output(self.fuse(inputs))
        weights, stats = self.tuned(inp, ctx)
        return Output(self.fuse(inputs, weights), stats)

    def dev_set(self, data_dir: Path | None) -> Dataset:
        """The dev set's queries (only the fold's, when `queries` names one) and their judgements."""
        tune = self.params.tune
        assert tune is not None
        where = f"{self.name}.tune"
        try:
            dev = load_dataset(tune.dataset, data_dir, qrels=tune.qrels)
        except CascadeError as exc:
            raise CascadeError(str(exc), where=f"{where}.dataset") from None
        queries, qrels = dev.queries, dev.qrels
        if tune.queries is not None:
            unknown = sorted(set(tune.queries) - set(queries["qid"].astype(str)))
            if unknown:
                raise CascadeError(
                    f"{len(unknown)} ids are not queries of '{tune.dataset}' (e.g. {unknown[0]!r})",
                    where=f"{where}.queries",
                )
            chosen = set(tune.queries)
            queries = queries[queries["qid"].astype(str).isin(chosen)].reset_index(drop=True)
            qrels = qrels[qrels["qid"].astype(str).isin(chosen)].reset_index(drop=True)
        return Dataset(dev.name, dev.description, lambda: queries, lambda: qrels, dev.corpus)

    def tuned(self, inp: pd.DataFrame, ctx: Context) -> tuple[list[float], dict]:
        """The grid's best weights on the dev set (ranx's optimize_fusion), and how they were chosen."""
        tune = self.params.tune
        assert tune is not None
        dev = self.dev_set(ctx.data_dir)
        refuse_evaluated(dev.queries, inp, f"{self.name}.tune")
        if dev.corpus is not None and ctx.corpus is not None and dev.corpus.fingerprint != ctx.corpus.fingerprint:
            raise CascadeError(
                f"'{tune.dataset}' is not on the corpus being ranked, so the inputs cannot run on its queries",
                where=f"{self.name}.tune.dataset",
            )
        runs = [execute(child, dev.queries, ctx).frame for child in self.children()]
        for number, run in enumerate(runs):
            if run.empty:
                raise CascadeError(
                    f"input {number} ranks nothing for the dev queries of '{tune.dataset}' (a run file made for "
                    "another dataset?), so there is nothing to tune on",
                    where=f"{self.name}.tune",
                )
        measure = parse_measures([tune.measure])
        name = canonical(measure[0])
        grid = weight_grid(len(runs), tune.step)
        values = [evaluate(self.fuse(runs, list(w)), dev.qrels, measure)[0][name] for w in grid]
        best = int(np.argmax(values))  # the first of equal values: grid order is fixed
        weights = [round(w, 10) for w in grid[best]]
        stats = {
            "tuned_weights": weights,
            "tune": {
                "dataset": tune.dataset,
                "qrels": tune.qrels,
                "dev_queries": int(dev.queries["qid"].nunique()),
                "measure": name,
                "value": round(float(values[best]), 6),
                "grid_points": len(grid),
                "step": tune.step,
            },
        }
        return weights, stats

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        """The fused run of `inp`: the children run through the engine, cached, like in any pipeline."""
        return execute(self, inp, ctx).frame[RUN_COLUMNS]

    def fuse(self, runs: list[pd.DataFrame], weights: list[float] | None = None) -> pd.DataFrame:
        weights = self.weights() if weights is None else weights
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


def weight_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of `n` multiples of `step` that sum to 1, in lexicographic order (ranx's grid)."""
    units = int(round(1.0 / step))
    if abs(units * step - 1.0) > 1e-9:
        raise ValueError(f"tune.step: {step} does not divide 1")
    return [
        tuple(c * step for c in combo) for combo in itertools.product(range(units + 1), repeat=n) if sum(combo) == units
    ]


def refuse_evaluated(dev: pd.DataFrame, evaluated: pd.DataFrame, where: str) -> None:
    """Tuning on the queries being ranked would report a tuned-on-test figure: a dev query that is one of them, by
    id or by text (case and spacing aside), is a one-line error."""

    def texts(frame: pd.DataFrame) -> set[str]:
        return set(frame["query"].astype(str).str.lower().str.split().str.join(" "))

    queries = evaluated.drop_duplicates("qid")
    same_id = sorted(set(dev["qid"].astype(str)) & set(queries["qid"].astype(str)))
    same_text = sorted(texts(dev) & texts(queries)) if "query" in queries else []
    if same_id or same_text:
        example = ", ".join(repr(x) for x in (same_id or same_text)[:3])
        raise CascadeError(
            f"{len(same_id) or len(same_text)} dev queries are queries being ranked (same "
            f"{'id' if same_id else 'text'}, e.g. {example}); tuning on the evaluated queries is refused",
            where=where,
        )


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
