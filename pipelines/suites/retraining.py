"""The pieces of the `restrain` protocol that retrain a pipeline's models, one per held-out query cluster.

Each bucket's model is an ordinary content-addressed `train:` model: its training config is the pipeline's own,
deep-merged with the task's `overrides` for that trainer (a smaller, cheaper config) and with
`train.exclude_queries` listing every query outside the bucket's training part. That derived config is written
into the artifact store, so a second run finds every model and every stage output cached and trains nothing.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import Field, field_validator

from cascade.core.digest import content_key
from cascade.core.errors import CascadeError
from cascade.core.paths import TRAIN_PREFIX
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import Dataset
from cascade.pipelines.suites.base import PipelineRef, Strict
from cascade.pipelines.train import TRAINERS, read_training_config
from cascade.rankers.pool import NotApplicable

RESTRAIN_CONFIGS = "restrain-configs"  # artifact kind of the derived training configs
DEFAULT_TRAIN_DATASET = "msmarco-passage/dev-small"  # both trainers' default `train.dataset`


class RestrainSpec(Strict):
    """Retrain each `train:` model K times, each time holding out one query cluster, and score both sides."""

    k: int = Field(5, ge=2, description="query clusters, i.e. buckets (one trained model each)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="of each cluster, held out as test queries")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="clustering, hold-out draw and the test-query cap")
    measure: str = "nDCG@10"
    max_test_queries: int | None = Field(None, gt=0, description="cap per side per bucket (seeded), to bound cost")
    trainers: list[str] = Field(
        default_factory=lambda: ["ltr"],
        min_length=1,
        description="trainer kinds to retrain; a pipeline with another trained stage is skipped, saying why",
    )
    overrides: dict[str, dict] = Field(
        default_factory=dict, description="per trainer kind, deep-merged into its training config (the small one)"
    )
    dataset: str | None = Field(None, description="the training pool; default: the trained stages' train.dataset")

    @field_validator("trainers", "overrides")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        unknown = [kind for kind in value if kind not in TRAINERS]
        if unknown:
            raise ValueError(f"unknown trainer kind {unknown[0]!r}; known: {', '.join(sorted(TRAINERS))}")
        return value


@dataclasses.dataclass(frozen=True)
class TrainedRef:
    """One `train:` reference of the pipeline: its path as written, trainer kind and the small training config."""

    ref: str
    kind: str
    base: dict  # the original YAML data deep-merged with the task's overrides for its kind

    @property
    def dataset(self) -> str:
        return str((self.base.get("train") or {}).get("dataset") or DEFAULT_TRAIN_DATASET)


def deep_merge(base: dict, override: dict) -> dict:
    """`override` into a copy of `base`: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def train_refs(value: Any) -> list[str]:
    """Every `train:PATH` in stage parameters (fusion inputs too), in order, without repeats."""
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str) and item.startswith(TRAIN_PREFIX):
            found.append(item.removeprefix(TRAIN_PREFIX))
        elif isinstance(item, dict):
            for sub in item.values():
                walk(sub)
        elif isinstance(item, list):
            for sub in item:
                walk(sub)

    walk(value)
    return list(dict.fromkeys(found))


def replace_refs(value: Any, paths: dict[str, str]) -> Any:
    """The pipeline with each `train:REF` pointing at `paths[REF]` instead."""
    if isinstance(value, str) and value.startswith(TRAIN_PREFIX):
        ref = value.removeprefix(TRAIN_PREFIX)
        return TRAIN_PREFIX + paths.get(ref, ref)
    if isinstance(value, dict):
        return {k: replace_refs(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_refs(v, paths) for v in value]
    return value


def _stage_names(value: Any) -> set[str]:
    """Stage names anywhere in a pipeline, fusion inputs included (without building a stage or training a model)."""
    names: set[str] = set()
    if isinstance(value, dict):
        for key, params in value.items():
            names.add(str(key))
            names |= _stage_names(params)
    elif isinstance(value, list):
        for item in value:
            names |= _stage_names(item)
    return names


def trained_refs(ref: PipelineRef, spec: RestrainSpec) -> list[TrainedRef]:
    """The pipeline's trained stages with their small training configs; NotApplicable says why none can run."""
    paths = train_refs(ref.config.pipeline)
    if not paths:
        raise NotApplicable("no stage is trained (`train:` model), so there is nothing to retrain per bucket")
    if "run_file" in _stage_names(ref.config.pipeline):
        raise NotApplicable("a stage reads a fixed run file made for its own dataset, not for the training pool")
    out = []
    for path in paths:
        data, trainer = read_training_config(path)
        if trainer.kind not in spec.trainers:
            raise NotApplicable(
                f"its {trainer.kind} model ({path}) is not retrained: restrain.trainers is {', '.join(spec.trainers)}"
            )
        base = deep_merge(data, spec.overrides.get(trainer.kind, {}))
        if spec.dataset:
            base["train"] = {**(base.get("train") or {}), "dataset": spec.dataset}
        out.append(TrainedRef(path, trainer.kind, base))
    pools = sorted({t.dataset for t in out})
    if len(pools) > 1:
        raise CascadeError(
            f"restrain: the trained stages learn from different datasets ({', '.join(pools)}); set restrain.dataset"
        )
    return out


def training_pool(dataset: Dataset) -> pd.DataFrame:
    """Queries with a relevant judgement, one per normalised text: a duplicate on both sides of a split would let a
    test query train its own model."""
    relevant = set(dataset.qrels.loc[dataset.qrels["label"] > 0, "qid"].astype(str))
    queries = dataset.queries[dataset.queries["qid"].astype(str).isin(relevant)]
    text = queries["query"].astype(str).str.lower().str.split().str.join(" ")
    return queries[~text.duplicated()].reset_index(drop=True)


def capped(splits: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most `cap` queries per bucket and side, taken in one seeded order of all test queries, so buckets share
    as many queries (and cached first-stage runs) as the cap allows."""
    if cap is None:
        return splits
    qids = sorted(set(splits["qid"]))
    order = dict(zip(qids, np.random.default_rng(seed).permutation(len(qids)).tolist(), strict=True))
    ranked = splits.assign(_r=splits["qid"].map(order))
    kept = ranked.sort_values(["bucket", "_r"], kind="stable").groupby(["bucket", "side"], sort=False).head(cap)
    return splits.loc[sorted(kept.index)].reset_index(drop=True)


def derived_config(store: ArtifactStore, data: dict) -> Path:
    """The training config file of one bucket's model, content-addressed in the store (written once)."""
    key = content_key(data)

    def build(tmp: Path) -> dict:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
        header = "# A restrain bucket's training config, derived by `cascade suite`: content-addressed, do not edit.\n"
        (tmp / "train.yaml").write_text(header + text, encoding="utf-8")
        return {"excluded_queries": len((data.get("train") or {}).get("exclude_queries") or [])}

    folder, _ = store.get_or_build(RESTRAIN_CONFIGS, key, build, {"kind": data.get("kind")})
    return folder / "train.yaml"


def bucket_training(trained: list[TrainedRef], exclude: set[str], store: ArtifactStore) -> dict[str, str]:
    """`ref -> derived config path` for one bucket: each small config with `exclude` added to what it excluded."""
    paths = {}
    for item in trained:
        data = copy.deepcopy(item.base)
        train = data.get("train") or {}
        train["exclude_queries"] = sorted(set(map(str, train.get("exclude_queries") or [])) | exclude)
        data["train"] = train
        paths[item.ref] = str(derived_config(store, data))
    return paths
