"""The one protocol every stage follows, after PyTerrier's Transformer.

A stage maps a frame to a run: first stages take queries (`qid, query[, instruction]`), later stages take a
run (`qid, query, docno, score, rank`). Stages compose with `>>` into a `Pipeline`, the same object a YAML
`pipeline:` list builds (`build_pipeline`), and `Pipeline.transform` runs it through the one engine
(`cascade.rankers.engine`), cached. Parameters are a pydantic model, visible and validated as in scikit-learn;
they and `version` are all that may change a stage's output, which is what lets the engine cache it under a
content address.

A stage declares what the engine and the suites need instead of being recognised by its class: its child
pipelines (`children_param`, fusion), whether it replays a fixed run (`replays_run`), which parameter is its depth
(`depth_param`), whether it needs an upstream run (`reranks`) and whether it reads instructions
(`reads_instruction`). It returns its statistics with its run (`Output`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator

from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.rankers.engine import SCORE_PREFIX, carry_scores, execute, with_queries

__all__ = [
    "SCORE_PREFIX",
    "STAGES",
    "Context",
    "NotApplicable",
    "Output",
    "Params",
    "Pipeline",
    "Stage",
    "build_pipeline",
    "carry_scores",
    "cut_tokens",
    "fit_instruction",
    "register",
    "with_queries",
]


# Lucene's and FAISS's integers (depths, counts) are 32-bit: a larger value would fail only after an index is built.
INT32_MAX = 2**31 - 1


class Params(BaseModel):
    """Base for stage parameters: unknown keys are errors, values are checked and never coerced silently:
    `k: "10"`, `k: 10.0` and `k: true` are errors (strict), floats are finite (no NaN or infinity), and integers
    fit the 32-bit integers of the libraries underneath."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _int32(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT32_MAX:
            raise ValueError(f"must be at most {INT32_MAX} (a 32-bit integer)")
        return value


class NotApplicable(CascadeError):
    """A pipeline that cannot run under a protocol (e.g. it reads a fixed run file); suites skip it and say why."""


@dataclass(frozen=True)
class Output:
    """What a stage returns to the engine: its run, and optionally facts about how it was made (accuracy against
    exact search, latency, index size: kept in the cached run's card and the manifest). A `measure_seconds`
    entry is time spent measuring, left out of the stage's ms/query."""

    run: pd.DataFrame
    stats: dict | None = None


class Stage(ABC):
    """A pipeline stage. Subclasses set `name`, `Params`, and implement `transform` (or `apply`)."""

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    version: ClassVar[int] = 1
    uses_corpus: ClassVar[bool] = False
    # How the stage uses a query's `instruction`, or None when it cannot read one (suites report which stages
    # ignored it rather than silently giving them the bare query).
    reads_instruction: ClassVar[str | None] = None
    # It replays a fixed run (a run file) rather than retrieving: it has no candidates of its own for a suite.
    replays_run: ClassVar[bool] = False
    # It needs an upstream run (a reranker); it cannot be a pipeline's first stage.
    reranks: ClassVar[bool] = False
    # The parameter that is its depth (how many documents per query it returns or reranks), if any.
    depth_param: ClassVar[str | None] = None
    # The parameter that holds its child pipelines' specs (fusion: `inputs`), if any.
    children_param: ClassVar[str | None] = None

    def __init__(self, params: Params | None = None, **kwargs: Any) -> None:
        self.params = params if params is not None else self.Params(**kwargs)
        self._children: list[Pipeline] | None = None

    def prepare(self, ctx: Context) -> None:  # noqa: B027  (optional hook)
        """Build or open what `transform` needs (an index, a model); timed apart from per-query work."""

    @abstractmethod
    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        """Return a run: one row per (qid, docno) with `score`, sorted by qid then rank."""

    def apply(self, inp: pd.DataFrame, ctx: Context, inputs: list[pd.DataFrame]) -> Output:
        """What the engine calls: the run (and statistics) for `inp`, given the runs of `children()`."""
        return Output(self.transform(inp, ctx))

    def upstream_scores(self) -> list[str]:
        """The upstream stages whose scores (`score:<name>` columns) it reads, e.g. ltr's features: checked against
        the stages before it when a config is read (`cascade.pipelines.config.preflight`), before any work."""
        return []

    def children(self) -> list[Pipeline]:
        """The child pipelines whose runs the engine hands to `apply` (built once from `children_param`)."""
        if self.children_param is None:
            return []
        if getattr(self, "_children", None) is None:
            self._children = [build_pipeline(spec) for spec in getattr(self.params, self.children_param)]
        return list(self._children)

    def walk(self) -> Iterator[Stage]:
        """Every leaf stage: this one, or those of its child pipelines."""
        children = self.children()
        if not children:
            yield self
        for child in children:
            yield from child.walk()

    def deepened(self, depth: int, first: bool = False) -> Stage:
        """This stage reaching at least `depth` documents per query (its depth parameter raised, never lowered).

        `first`: it must search the whole collection, so a stage without a depth cannot. Child pipelines get
        their first stage deepened the same way; their later stages rerank what it returns.
        """
        update: dict[str, Any] = {}
        if self.depth_param is not None:
            value = getattr(self.params, self.depth_param)
            if value is not None and value < depth:
                update[self.depth_param] = depth
        elif first:
            raise NotApplicable(f"its first stage '{self.name}' has no depth (k) to search the whole corpus with")
        if self.children_param is not None:
            update[self.children_param] = [
                [child.stages[0].deepened(depth, first).spec_item(), *(s.spec_item() for s in child.stages[1:])]
                for child in self.children()
            ]
        return type(self)(self.params.model_copy(update=update)) if update else self

    def cache_parts(self, ctx: Context) -> dict:
        """Everything besides the input that decides this stage's output."""
        parts: dict[str, Any] = {"stage": self.name, "version": self.version, "params": self.get_params()}
        if self.uses_corpus:
            parts["corpus"] = ctx.require_corpus(self.name).fingerprint
        return parts

    def get_params(self) -> dict:
        return self.params.model_dump(mode="json")

    def spec_item(self) -> dict[str, Any]:
        """`{name: params}` with every default filled in, child pipelines too: spelling a default out changes
        nothing, and YAML and `>>` give the same spec."""
        params = self.get_params()
        if self.children_param is not None:
            params[self.children_param] = [child.spec() for child in self.children()]
        return {self.name: params}

    def spec(self) -> list[dict[str, Any]]:
        """The normalised pipeline spec: one `spec_item` per stage."""
        return [stage.spec_item() for stage in self.stages]

    @property
    def stages(self) -> list[Stage]:
        return [self]

    def __rshift__(self, other: Stage) -> Pipeline:
        return Pipeline([*self.stages, *other.stages])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{self.name}({args})"


class Pipeline(Stage):
    """Stages applied in order; `a >> b >> c` and a YAML `pipeline:` list build one."""

    name = "pipeline"

    def __init__(self, stages: list[Stage]) -> None:
        if not stages:
            raise CascadeError("a pipeline needs at least one stage")
        self._stages = [leaf for stage in stages for leaf in stage.stages]
        self.params = Params()
        self._children = None

    @property
    def stages(self) -> list[Stage]:
        return list(self._stages)

    def walk(self) -> Iterator[Stage]:
        for stage in self._stages:
            yield from stage.walk()

    def deepened(self, depth: int, first: bool = False) -> Stage:
        raise CascadeError("deepen a pipeline's stages one by one (see rankers.pool.pooled_chain)")

    def apply(self, inp: pd.DataFrame, ctx: Context, inputs: list[pd.DataFrame]) -> Output:
        raise CascadeError("the engine runs a pipeline's stages, never the pipeline as one stage")

    def transform(
        self,
        inp: pd.DataFrame,
        ctx: Context | None = None,
        *,
        corpus: Any = None,
        cache: str | Path = ".cascade",
    ) -> pd.DataFrame:
        """The pipeline's run over `inp`, through the engine and its cache (a context is made when none is given)."""
        if ctx is None:
            ctx = Context(store=ArtifactStore(cache), corpus=corpus)
        elif corpus is not None:
            ctx = ctx.for_run(corpus, ctx.seed)
        return execute(self, inp, ctx).frame

    def __repr__(self) -> str:
        return " >> ".join(repr(s) for s in self._stages)


# The registry of stages a config can name; `cascade.rankers` fills it with every shipped stage.
STAGES: dict[str, type[Stage]] = {}


def register(*classes: type[Stage]) -> None:
    for cls in classes:
        STAGES[cls.name] = cls


def build_pipeline(items: list[dict[str, Any]] | Stage) -> Pipeline:
    """The one function that builds stages from a spec: `[{bm25: {k: 100}}, ...]` as in YAML (or a stage)."""
    if isinstance(items, Stage):
        return items if isinstance(items, Pipeline) else Pipeline([items])
    stages = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            raise CascadeError(f"each pipeline item maps one stage name to its parameters, not {item!r}")
        ((name, params),) = item.items()
        if name not in STAGES:
            raise CascadeError(f"unknown stage '{name}'; known stages: {', '.join(sorted(STAGES))}")
        stages.append(STAGES[name](**(params or {})))
    return Pipeline(stages)


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
