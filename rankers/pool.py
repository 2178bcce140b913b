"""Candidate pools: the protocol of reranking benchmarks (NevIR pairs, BIRCO pools), for any pipeline.

A pooled pipeline ranks exactly each query's pool. Its first stage searches the whole corpus deep enough to
return every document (so corpus statistics such as BM25's idf come from the whole collection, as NevIR's
protocol asks), `Pool` keeps the pool's documents, and the later stages rerank all of them.

A pool document the first stage did not return (for Lucene: no query term occurs in it) scores one below the
query's lowest returned score; such documents tie with each other, and a tie counts as a tie, never as a win.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cascade.core.digest import frame_digest
from cascade.core.errors import CascadeError
from cascade.rankers.base import Context, Stage


class NotApplicable(CascadeError):
    """A pipeline that cannot run under a protocol (e.g. it reads a fixed run file); suites skip it and say why."""


class Pool(Stage):
    """Keep each query's pool documents from the upstream run; unreturned pool documents get the floor score."""

    name = "pool"

    def __init__(self, pools: pd.DataFrame) -> None:
        self.pools = pools[["qid", "docno"]].drop_duplicates().reset_index(drop=True)
        super().__init__()

    def cache_parts(self, ctx: Context) -> dict:
        return {"stage": self.name, "version": self.version, "pools": frame_digest(self.pools, ["qid", "docno"])}

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        wanted = self.pools[self.pools["qid"].isin(set(inp["qid"]))]
        run = wanted.merge(inp[["qid", "docno", "score"]], on=["qid", "docno"], how="left", sort=False)
        floor = inp.groupby("qid")["score"].min() - 1.0
        fill = run["qid"].map(floor).fillna(0.0)
        run["score"] = run["score"].fillna(fill).astype("float64")
        run = run.sort_values(["qid", "score", "docno"], ascending=[True, False, True], kind="stable")
        run["rank"] = run.groupby("qid").cumcount() + 1
        return run.reset_index(drop=True)

    def __repr__(self) -> str:
        return f"pool({len(self.pools)} candidates)"


def pooled_chain(stages: list[Stage], pools: pd.DataFrame, corpus_size: int) -> list[Stage]:
    """`first >> rest` becomes `first(k=corpus) >> pool >> rest(k >= largest pool)`."""
    from cascade.rankers.run_file import RunFile

    first, rest = stages[0], stages[1:]
    if isinstance(first, RunFile):
        raise NotApplicable("its first stage reads a fixed run file, which has no candidates for this suite")
    largest = int(pools.groupby("qid").size().max()) if len(pools) else 1
    return [_deepened(first, corpus_size, first=True), Pool(pools), *(_deepened(s, largest) for s in rest)]


def _deepened(stage: Stage, depth: int, first: bool = False) -> Stage:
    """The stage with `k` (and a fusion's input chains' first stages) raised to at least `depth`."""
    fields = type(stage.params).model_fields
    update: dict[str, Any] = {}
    if "k" in fields and getattr(stage.params, "k", None) is not None and stage.params.k < depth:
        update["k"] = depth
    if "inputs" in fields:  # fusion: every input chain's first stage searches the whole corpus
        update["inputs"] = [_deepened_specs(chain, depth) for chain in stage.params.inputs]
        if "depth" in fields:
            update["depth"] = max(stage.params.depth, depth)
    if first and "k" not in fields and "inputs" not in fields:
        raise NotApplicable(f"its first stage '{stage.name}' has no depth (k) to search the whole corpus with")
    return type(stage)(stage.params.model_copy(update=update)) if update else stage


def _deepened_specs(chain: list[dict[str, Any]], depth: int) -> list[dict[str, Any]]:
    out = []
    for index, item in enumerate(chain):
        ((name, params),) = item.items()
        params = dict(params or {})
        if index == 0:
            params["k"] = max(int(params.get("k", 0) or 0), depth)
        out.append({name: params})
    return out
