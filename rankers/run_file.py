"""A first stage that reads an existing TREC run, so official runs can be re-scored and reranked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import Field

from cascade.core.digest import file_digest
from cascade.core.paths import resolve_path
from cascade.eval.runs import read_run
from cascade.rankers.base import Context, Params, Stage


class RunFileParams(Params):
    path: str = Field(..., min_length=1, description="TREC run; 'data:' prefix = relative to the data dir")
    k: int | None = Field(None, gt=0, description="keep the top k per query")


class RunFile(Stage):
    """Reads `path`, keeps the queries it is given, and the top `k` of each."""

    name = "run_file"
    Params = RunFileParams
    replays_run = True
    depth_param = "k"

    def resolve(self, ctx: Context) -> Path:
        return resolve_path(self.params.path, ctx.data_dir, "run_file.path")

    def cache_parts(self, ctx: Context) -> dict:
        # The file's content, not its name, decides the output.
        return {**super().cache_parts(ctx), "file": file_digest(self.resolve(ctx))}

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        run = read_run(self.resolve(ctx))
        run = run[run["qid"].isin(set(inp["qid"]))]
        if self.params.k is not None:
            run = run[run["rank"] <= self.params.k]
        order = {qid: i for i, qid in enumerate(inp["qid"])}
        run = run.assign(_q=run["qid"].map(order)).sort_values(["_q", "rank"], kind="mergesort")
        return run.drop(columns="_q").reset_index(drop=True)
