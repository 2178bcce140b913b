"""`restrain` suite task: ReSTTest on cascade's own trainable stages (Zhan et al., CIKM 2022, protocol (c)).

The published ReSTTest splits judge a model someone else trained; here cascade retrains its own stages so the
held-out side is known. The training pool (e.g. the MS MARCO dev-small queries with a relevant passage in the 30k
corpus) is clustered into K buckets by MiniLM query similarity; each cluster keeps a test part. For bucket b a
model is trained on the train parts of the other clusters only, then the pipeline is scored on two sides:

- interpolation: the test parts of those other clusters (queries like the training ones);
- extrapolation: the test part of cluster b (a topic the model never saw).

Each bucket's model is an ordinary content-addressed `train:` model: its training config is the pipeline's own,
deep-merged with the task's `overrides` for that trainer (a smaller, cheaper config) and with
`train.exclude_queries` listing every query outside the bucket's training part. That derived config is written
into the artifact store, so a second run finds every model and every stage output cached and trains nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cascade.core.digest import content_key
from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import Dataset, load_dataset
from cascade.eval.frames import RUN_COLUMNS, format_run
from cascade.rankers.pool import NotApplicable

if TYPE_CHECKING:
    from cascade.core.env import Context
    from cascade.pipelines.suite import Outcome, PipelineRef, Task

RESTRAIN_CONFIGS = "restrain-configs"  # artifact kind of the derived training configs
DEFAULT_TRAIN_DATASET = "msmarco-passage/dev-small"  # both trainers' default `train.dataset`


class RestrainTask(BaseModel):
    """Retrain each `train:` model K times, each time holding out one query cluster, and score both sides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(5, ge=2, description="query clusters, i.e. buckets (one trained model each)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="of each cluster, held out as test queries")
    seed: int = Field(42, description="clustering, hold-out draw and the test-query cap")
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
        from cascade.pipelines.train import TRAINERS, _load_trainers

        _load_trainers()
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
    from cascade.pipelines.train import TRAIN_PREFIX

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
    from cascade.pipelines.train import TRAIN_PREFIX

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


def trained_refs(ref: PipelineRef, spec: RestrainTask) -> list[TrainedRef]:
    """The pipeline's trained stages with their small training configs; NotApplicable says why none can run."""
    from cascade.pipelines.train import read_training_config

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


def run_restrain(task: Task, ref: PipelineRef, suite: str, out: Path, session: Context) -> Outcome:
    """One model per bucket, trained without the bucket's test queries (and without its cluster), each scored on
    the bucket's interpolation and extrapolation test queries; one run folder over all buckets."""
    from cascade.eval.extrapolation import bucket_sets, holdout_plan, plan_splits, split_scores
    from cascade.eval.measures import canonical, evaluate, parse_measures
    from cascade.pipelines.config import DatasetRef
    from cascade.pipelines.resample import cluster_queries
    from cascade.pipelines.runner import Executed, build_stages, execute, manifest_for, write_run_folder
    from cascade.pipelines.suite import Outcome, _suite_extra, _tsv
    from cascade.pipelines.train import ensure_trained
    from cascade.pipelines.train.data import refuse_overlap

    started = time.perf_counter()
    spec: RestrainTask = task.spec  # type: ignore[assignment]
    trained = trained_refs(ref, spec)
    measures = parse_measures([spec.measure], where="restrain.measure")
    measure = canonical(measures[0])
    pool_name = trained[0].dataset
    dataset = load_dataset(pool_name, session.data_dir)
    pool = training_pool(dataset)
    if len(pool) < 2 * spec.k:
        raise CascadeError(f"restrain: {len(pool)} pool queries in '{pool_name}' are too few for k={spec.k}")
    clusters = cluster_queries(pool, spec.k, spec.seed, session.store, progress=session.progress)
    plan = holdout_plan(clusters, spec.test_fraction, spec.seed)
    splits = capped(plan_splits(plan), spec.max_test_queries, spec.seed)
    every_qid = set(dataset.queries["qid"].astype(str))
    queries = dataset.queries.assign(qid=dataset.queries["qid"].astype(str))
    qrels = dataset.qrels.assign(qid=dataset.qrels["qid"].astype(str))
    env = session
    ctx = session.for_run(dataset.corpus, ref.config.seed)

    perquery, runs, buckets, first = [], [], [], None
    for b in range(1, spec.k + 1):
        train, _, _ = bucket_sets(plan, b)
        test = splits.loc[splits["bucket"] == b, "qid"].drop_duplicates().tolist()
        test_queries = queries[queries["qid"].isin(set(test))].reset_index(drop=True)
        refuse_overlap(  # by construction; by text too, as the trainers check their test datasets
            {"train": queries[queries["qid"].isin(set(train))]},
            {f"restrain bucket {b}": test_queries},
            lambda key: pool_name,
        )
        paths = bucket_training(trained, every_qid - set(train), session.store)
        models = {r: {"config": p, "model": str(ensure_trained(p, env))} for r, p in paths.items()}
        config = ref.config.model_copy(update={"pipeline": replace_refs(ref.config.pipeline, paths)})
        done = execute(build_stages(config, env), test_queries, ctx)
        if first is None:
            first = done
        _, values = evaluate(done.frame, qrels[qrels["qid"].isin(set(test))], measures)
        perquery.append(values.assign(bucket=b))
        runs.append(done.frame[RUN_COLUMNS].assign(qid=f"b{b}:" + done.frame["qid"].astype(str)))
        sides = splits[splits["bucket"] == b]["side"].value_counts().to_dict()
        buckets.append(
            {
                "bucket": b,
                "train_queries": len(train),
                "interpolation": int(sides.get("interpolation", 0)),
                "extrapolation": int(sides.get("extrapolation", 0)),
                "run_key": done.run_key,
                "models": models,
                "ms_per_query": round(sum(t.ms_per_query for t in done.timings), 4),
                "stages": [{**t.__dict__, "ms_per_query": round(t.ms_per_query, 4)} for t in done.timings],
            }
        )

    values = pd.concat(perquery, ignore_index=True)
    scores = split_scores(values, splits, measure)
    avg = scores.average
    units = values[values["measure"] == measure].assign(qid=lambda f: "b" + f["bucket"].astype(str) + ":" + f["qid"])
    summary = {
        f"interpolation {measure}": avg["interpolation"],
        f"extrapolation {measure}": avg["extrapolation"],
        "gap (interp - extrap)": avg["gap"],
        "buckets": int(avg["buckets"]),
    }
    metrics = {
        "name": ref.label,
        "dataset": f"restrain:{pool_name}",
        "qrels": dataset.qrels_name,
        "queries": int(units["qid"].nunique()),
        "measures": {measure: float(units["value"].mean())},
        "summary": summary,
    }
    unit_queries = pd.DataFrame({"qid": units["qid"].tolist()})
    test_qrels = qrels[qrels["qid"].isin(set(splits["qid"]))]
    name = f"restrain:{pool_name}"
    view = Dataset(name, dataset.description, lambda: unit_queries, lambda: test_qrels, dataset.corpus)
    assert first is not None  # k >= 2
    # the manifest's stages and ms/query are bucket 1's run (each bucket runs the same chain); all are in `buckets`
    combined = Executed(first.frame, content_key([b["run_key"] for b in buckets]), first.timings, first.stages)
    config = ref.config.model_copy(
        update={"dataset": DatasetRef(name=pool_name), "name": ref.label, "measures": [measure]}
    )
    extra = _suite_extra(suite, task, ref) | {
        "protocol": (
            f"ReSTTest on retrained stages: {spec.k} MiniLM query clusters of {pool_name}; bucket b trains on the "
            "other clusters' train parts, interpolation = their test parts, extrapolation = cluster b's test part; "
            "mean over buckets"
        ),
        "restrain": {
            "pool": pool_name,
            "pool_queries": len(pool),
            "k": spec.k,
            "test_fraction": spec.test_fraction,
            "seed": spec.seed,
            "max_test_queries": spec.max_test_queries,
            "cluster_sizes": clusters["cluster"].value_counts().sort_index().tolist(),
            "trainers": {t.ref: t.kind for t in trained},
            "overrides": spec.overrides,
        },
        "buckets": buckets,
    }
    manifest = manifest_for(config, ref.path, view, combined, ctx, started, **extra)
    files = {
        "run.trec": format_run(pd.concat(runs, ignore_index=True), tag=ref.label),
        "perquery.tsv": _tsv(units[["qid", "measure", "value"]], "%.6f"),
        "splits.tsv": _tsv(scores.buckets, "%.6f"),
        "plan.tsv": _tsv(plan, "%.6f"),
    }
    folder = out / f"restrain-{pool_name.replace('/', '__')}" / ref.label
    write_run_folder(folder, config, manifest, metrics, files)
    shown = {measure: metrics["measures"][measure], **{k: float(v) for k, v in summary.items() if k != "buckets"}}
    return Outcome(f"restrain:{pool_name}", ref.label, folder, shown)
