"""Ordinary retrieval protocols: each pipeline on its own dataset (`own`), or on another one (`retrieval`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from cascade.core.env import Context
from cascade.eval.datasets import load_dataset
from cascade.pipelines.config import DatasetRef
from cascade.pipelines.runner import Artifacts, open_dataset, run_artifacts
from cascade.pipelines.suites.base import PipelineRef, Protocol, Strict
from cascade.pipelines.suites.common import check_first_stage, retargeted


class OwnSpec(Strict):
    """Each pipeline on the dataset its own config names (the MS MARCO suite)."""


class Own(Protocol):
    kind = "own"
    Spec = OwnSpec
    own_dataset = True

    def label(self, ref: PipelineRef) -> str:
        return ref.config.dataset.name or Path(ref.config.dataset.path or "folder").name

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        dataset = open_dataset(ref.config, session.data_dir)
        return run_artifacts(ref.config, ref.path, dataset, session)


class RetrievalSpec(Strict):
    dataset: str
    qrels: str = "default"
    measures: list[str] | None = None  # default: the pipeline config's own
    rerank_k: int | None = Field(None, gt=0, description="cap on the depth every stage after the first reranks")


class Retrieval(Protocol):
    kind = "retrieval"
    Spec = RetrievalSpec
    spec: RetrievalSpec

    def label(self, ref: PipelineRef) -> str:
        return self.spec.dataset

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        spec = self.spec
        config = retargeted(ref, DatasetRef(name=spec.dataset, qrels=spec.qrels), spec.measures)
        if spec.rerank_k is not None:
            config = config.model_copy(update={"pipeline": capped_reranking(config.pipeline, spec.rerank_k)})
        check_first_stage(config, session)
        dataset = load_dataset(spec.dataset, session.data_dir, qrels=spec.qrels)
        return run_artifacts(config, ref.path, dataset, session)


RERANKERS = ("dense_rerank", "cross_encoder", "ltr")  # capped even where their config leaves `k` out


def capped_reranking(items: list[dict[str, Any]], depth: int) -> list[dict[str, Any]]:
    """The chain with every stage after the first reranking at most `depth` documents (its `k`)."""
    out = [items[0]]
    for item in items[1:]:
        ((name, params),) = item.items()
        params = dict(params or {})
        if "k" in params or name in RERANKERS:
            params["k"] = min(int(params.get("k") or depth), depth)
        out.append({name: params})
    return out
