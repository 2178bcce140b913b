"""Candidate pools: the protocol of reranking benchmarks (NevIR pairs, BIRCO pools), for any pipeline.

A pooled pipeline ranks exactly each query's pool. Its first stage searches the whole corpus deep enough to
return every document (so corpus statistics such as BM25's idf come from the whole collection, as NevIR's
protocol asks), `Pool` keeps the pool's documents, and the later stages rerank all of them.

A pool document the first stage did not return (for Lucene: no query term occurs in it) scores one below the
query's lowest returned score; such documents tie with each other, and a tie counts as a tie, never as a win.
"""

from __future__ import annotations

import pandas as pd

from cascade.core.digest import frame_digest
from cascade.rankers.base import Context, NotApplicable, Stage

__all__ = ["NotApplicable", "Pool", "pooled_chain"]


class Pool(Stage):
    """Keep each query's pool documents from the upstream run; unreturned pool documents get the floor score."""

    name = "pool"
    reranks = True

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
    """`first >> rest` becomes `first(depth=corpus) >> pool >> rest(depth >= largest pool)`."""
    first, rest = stages[0], stages[1:]
    if first.replays_run:
        raise NotApplicable("its first stage reads a fixed run file, which has no candidates for this suite")
    largest = int(pools.groupby("qid").size().max()) if len(pools) else 1
    return [first.deepened(corpus_size, first=True), Pool(pools), *(s.deepened(largest) for s in rest)]
