"""The one protocol every stage follows, after PyTerrier's Transformer.

A stage maps a frame to a run: first stages take queries (`qid, query[, instruction]`), later stages take a
run (`qid, query, docno, score, rank`). Stages compose with `>>`. Parameters are a pydantic model, visible and
validated as in scikit-learn; they and `version` are all that may change a stage's output, which is what lets
the runner cache it under a content address.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict

from cascade.core.env import Context
from cascade.core.errors import CascadeError


class Params(BaseModel):
    """Base for stage parameters: unknown keys are errors, values are checked and never coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage(ABC):
    """A pipeline stage. Subclasses set `name`, `Params`, and implement `transform`."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    version: ClassVar[int] = 1
    uses_corpus: ClassVar[bool] = False
    # How the stage uses a query's `instruction`, or None when it cannot read one (suites report which stages
    # ignored it rather than silently giving them the bare query).
    reads_instruction: ClassVar[str | None] = None

    def __init__(self, params: Params | None = None, **kwargs: Any) -> None:
        self.params = params if params is not None else self.Params(**kwargs)

    def prepare(self, ctx: Context) -> None:  # noqa: B027  (optional hook)
        """Build or open what `transform` needs (an index, a model); timed apart from per-query work."""

    @abstractmethod
    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        """Return a run: one row per (qid, docno) with `score`, sorted by qid then rank."""

    def cache_parts(self, ctx: Context) -> dict:
        """Everything besides the input that decides this stage's output."""
        parts: dict[str, Any] = {"stage": self.name, "version": self.version, "params": self.get_params()}
        if self.uses_corpus:
            parts["corpus"] = ctx.require_corpus(self.name).fingerprint
        return parts

    def get_params(self) -> dict:
        return self.params.model_dump(mode="json")

    @property
    def stages(self) -> list[Stage]:
        return [self]

    def __rshift__(self, other: Stage) -> Pipeline:
        return Pipeline([*self.stages, *other.stages])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{self.name}({args})"


class Pipeline(Stage):
    """Stages applied in order; `a >> b >> c` builds one."""

    name = "pipeline"

    def __init__(self, stages: list[Stage]) -> None:
        if not stages:
            raise CascadeError("a pipeline needs at least one stage")
        self._stages = list(stages)
        self.params = Params()

    @property
    def stages(self) -> list[Stage]:
        return list(self._stages)

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        frame = inp
        for stage in self._stages:
            frame = with_queries(stage.transform(frame, ctx), inp)
        return frame

    def __repr__(self) -> str:
        return " >> ".join(repr(s) for s in self._stages)


def with_queries(run: pd.DataFrame, queries: pd.DataFrame) -> pd.DataFrame:
    """Attach `query` (and `instruction`) to a run, PyTerrier style, so a later stage can read them."""
    columns = [c for c in queries.columns if c != "qid" and c not in {"docno", "score", "rank"}]
    base = run.drop(columns=[c for c in columns if c in run.columns])
    merged = base.merge(queries[["qid", *columns]].drop_duplicates("qid"), on="qid", how="left", sort=False)
    carried = [c for c in merged.columns if c.startswith(SCORE_PREFIX)]
    return merged[["qid", *columns, "docno", "score", "rank", *carried]]


SCORE_PREFIX = "score:"


def carry_scores(run: pd.DataFrame, upstream: pd.DataFrame, name: str) -> pd.DataFrame:
    """Add `score:<stage>` columns: this stage's score plus every earlier stage's, for learning-to-rank features.

    A document an earlier stage did not score gets NaN for that stage (LightGBM treats it as missing).
    """
    earlier = [c for c in upstream.columns if c.startswith(SCORE_PREFIX)] if "docno" in upstream else []
    run = run.drop(columns=[c for c in run.columns if c.startswith(SCORE_PREFIX)])
    if earlier:
        run = run.merge(upstream[["qid", "docno", *earlier]], on=["qid", "docno"], how="left", sort=False)
    column = SCORE_PREFIX + name
    while column in earlier:  # the same stage twice in a chain: bm25, bm25#2, ...
        column = f"{column.split('#')[0]}#{int(column.split('#')[1]) + 1 if '#' in column else 2}"
    return run.assign(**{column: run["score"].to_numpy()})


def cut_tokens(text: str, tokenizer: Any, budget: int) -> str:
    """`text` cut to `budget` tokens of `tokenizer`; verbatim when it fits."""
    tokens = tokenizer.tokenize(text)
    return text if len(tokens) <= budget else tokenizer.convert_tokens_to_string(tokens[:budget])


def fit_instruction(query: str, instruction: str, tokenizer: Any, query_tokens: int, instruction_tokens: int) -> str:
    """`query instruction`, each cut to its own token budget first.

    A stage that reads an instruction appends it to the query, and a model's window then cuts from the end: with
    a paragraph-long query (BIRCO's are) the instruction would be cut away entirely and the stage would silently
    see the bare query. Budgets keep both in the window.
    """
    query = cut_tokens(str(query), tokenizer, query_tokens)
    if not isinstance(instruction, str) or not instruction.strip():
        return query
    return f"{query} {cut_tokens(instruction, tokenizer, instruction_tokens)}"
