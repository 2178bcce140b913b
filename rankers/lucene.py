"""BM25 and BM25+RM3 first stages over a Lucene index of the dataset's corpus."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import Field

from cascade.core.store import content_key
from cascade.indexes import jvm, lucene
from cascade.rankers.base import Context, Params, Stage


class BM25Params(Params):
    k1: float = Field(0.9, ge=0)
    b: float = Field(0.4, ge=0, le=1)
    k: int = Field(1000, gt=0)


class RM3Params(BM25Params):
    fb_terms: int = Field(10, gt=0)
    fb_docs: int = Field(10, gt=0)
    original_query_weight: float = Field(0.5, ge=0, le=1)


LUCENE_INDEX_VERSION = 1


def lucene_address(ctx: Context) -> tuple[dict, str]:
    """What the corpus's Lucene index is made from, and its content key (known before anything is built)."""
    corpus = ctx.require_corpus("bm25")
    made_from = {
        "corpus": corpus.fingerprint,
        "jar": jvm.anserini_jar().name,
        "version": LUCENE_INDEX_VERSION,
        "corpus_name": corpus.name,
    }
    return made_from, content_key({k: v for k, v in made_from.items() if k != "corpus_name"})


def lucene_index(ctx: Context) -> Path:
    """The Lucene index of the context's corpus, built once per corpus content and reused."""
    corpus = ctx.require_corpus("bm25")
    made_from, key = lucene_address(ctx)
    log = ctx.log_dir / f"lucene-{key}.log"
    path, _ = ctx.store.get_or_build(
        "lucene",
        key,
        lambda tmp: lucene.build_index(corpus.docs(), tmp, ctx.threads, log, ctx.corpus_progress),
        made_from,
    )
    return path


class BM25(Stage):
    """BM25 with Anserini's Lucene defaults for MS MARCO (k1=0.9, b=0.4)."""

    name = "bm25"
    Params = BM25Params
    uses_corpus = True
    depth_param = "k"

    def _rm3(self) -> dict | None:
        return None

    def prepare(self, ctx: Context) -> None:
        lucene_index(ctx)

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        from tqdm.auto import tqdm

        index = lucene_index(ctx)
        p = self.params
        with tqdm(total=len(inp), desc=self.name, unit="q", disable=not ctx.progress, leave=False) as bar:
            return lucene.search(
                index,
                inp,
                k=p.k,
                k1=p.k1,
                b=p.b,
                rm3=self._rm3(),
                threads=ctx.threads,
                log=ctx.log_dir / "lucene-search.log",
                on_chunk=bar.update,
            )


class RM3(BM25):
    """BM25 with RM3 pseudo-relevance feedback, as Anserini's `-rm3` (English term filter on)."""

    name = "rm3"
    Params = RM3Params

    def _rm3(self) -> dict | None:
        p = self.params
        return {"fb_terms": p.fb_terms, "fb_docs": p.fb_docs, "original_query_weight": p.original_query_weight}
