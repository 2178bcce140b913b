"""`cascade train ltr`: LightGBM LambdaMART over the candidates of a first-stage pipeline on training queries.

    kind: ltr
    seed: 42
    train: {dataset: msmarco-passage/dev-small, dev_fraction: 0.2, max_queries: 2000}
    test_datasets: [msmarco-passage/dl19, msmarco-passage/dl20]   # refused if any query overlaps
    candidates: [bm25: {k: 100}]                                  # the chain the model reranks
    features: [bm25, lexical]                                     # candidate stages' scores + lexical
    lightgbm: {num_leaves: 31, learning_rate: 0.05, n_estimators: 400, min_data_in_leaf: 20,
               early_stopping_rounds: 50}

Query groups whose candidates hold no relevant document teach LambdaMART nothing: they are skipped and counted.
`train.exclude_queries: [ids]` keeps queries out of training and dev altogether (restrain's held-out buckets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from cascade.core.configfile import error_at, validate
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.eval.datasets import load_dataset
from cascade.pipelines.manifest import training_record
from cascade.pipelines.train.data import (
    ExcludedQueries,
    refuse_overlap,
    run_candidates,
    split_dev,
    training_context,
    without_excluded,
)
from cascade.pipelines.train.registry import Trainer, config_tree, key_locator, register
from cascade.rankers import STAGES
from cascade.rankers.ltr import LEXICAL, feature_matrix, feature_names, stage_of


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # never coerced, finite


class TrainData(ExcludedQueries):
    dataset: str = "msmarco-passage/dev-small"
    dev_fraction: float = Field(0.2, gt=0, lt=1)
    max_queries: int | None = Field(None, gt=10)


class LightGBMParams(_Strict):
    num_leaves: int = Field(31, gt=1)
    learning_rate: float = Field(0.05, gt=0)
    n_estimators: int = Field(400, gt=0)
    min_data_in_leaf: int = Field(20, gt=0)
    early_stopping_rounds: int = Field(50, gt=0)
    feature_fraction: float = Field(1.0, gt=0, le=1)


class LTRTrainConfig(_Strict):
    kind: str = "ltr"
    seed: int = Field(42, ge=0, le=2**32 - 1)
    train: TrainData = Field(default_factory=TrainData)
    test_datasets: list[str] = Field(default_factory=lambda: ["msmarco-passage/dl19", "msmarco-passage/dl20"])
    candidates: list[dict] = Field(..., min_length=1)
    features: list[str] = Field(..., min_length=1)
    lightgbm: LightGBMParams = Field(default_factory=LightGBMParams)


def parse(data: dict, path: Path) -> LTRTrainConfig:
    """The config, its `candidates` checked like a pipeline's stages; errors are `file:line: key: message`."""
    root = config_tree(path)
    config = validate(LTRTrainConfig, data, path, root)
    for index, item in enumerate(config.candidates):
        name = next(iter(item)) if len(item) == 1 else None
        if name not in STAGES:
            raise error_at(path, root, ("candidates", index), f"one stage per item, one of {', '.join(STAGES)}")
        validate(STAGES[name].Params, item[name] or {}, path, root, ("candidates", index, name))
    provided = carried_names([next(iter(item)) for item in config.candidates])
    for index, feature in enumerate(config.features):
        if feature != LEXICAL and stage_of(feature) not in provided:
            message = f"feature '{feature}' is not provided by any candidate stage (candidates: {', '.join(provided)})"
            raise error_at(path, root, ("features", index), message)
    return config


def carried_names(stages: list[str]) -> list[str]:
    """The `score:<name>` columns a chain carries (`rankers.engine.carry_scores`): a stage's name, `#2`, `#3`, ...
    for its repeats. Known before anything runs, so a typo costs no candidate run."""
    names: list[str] = []
    for stage in stages:
        name, count = stage, 1
        while name in names:
            count += 1
            name = f"{stage}#{count}"
        names.append(name)
    return names


def split_queries(queries: pd.DataFrame, dev_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, dev) query frames with the cross-encoder trainer's seeded split, sized by a fraction."""
    n_dev = max(1, int(round(dev_fraction * len(queries))))
    train, dev = split_dev(queries["qid"].tolist(), n_dev, seed, key="train.dev_fraction")
    return queries[queries["qid"].isin(set(train))], queries[queries["qid"].isin(set(dev))]


def labelled(frame: pd.DataFrame, qrels: pd.DataFrame) -> pd.DataFrame:
    labels = qrels.rename(columns={"label": "_label"})[["qid", "docno", "_label"]]
    out = frame.merge(labels, on=["qid", "docno"], how="left", sort=False)
    return out.assign(_label=out["_label"].fillna(0).clip(lower=0).astype(int))


Part = tuple[np.ndarray, np.ndarray, list[int]]  # (features, labels, rows per query group)


@dataclass
class Fitted:
    """A trained LambdaMART booster, the iteration kept and the dev nDCG@10 curve that chose it."""

    booster: Any
    best_iteration: int
    kept: int | None  # the iteration saved: early stopping's best, None for all (LightGBM's own convention)
    curve: list[float]
    columns: list[str]

    def save(self, out: Path, features: list[str]) -> None:
        """The model folder the `ltr` stage reads: model.txt (LightGBM's text format) and features.json."""
        self.booster.save_model(str(out / "model.txt"), num_iteration=self.kept)
        (out / "features.json").write_text(json.dumps({"features": features, "columns": self.columns}, indent=2))

    def importance_gain(self) -> dict[str, float]:
        gain = self.booster.feature_importance(importance_type="gain", iteration=self.kept)
        return {n: round(float(v), 4) for n, v in zip(self.columns, gain, strict=True)}


def fit_lambdamart(
    train: Part, dev: Part | None, p: LightGBMParams, seed: int, threads: int, features: list[str]
) -> Fitted:
    """LightGBM LambdaMART on `train`, early-stopped on `dev`'s nDCG@10 (all `n_estimators` rounds without a dev
    part); deterministic for one seed (the strict trainer and the `cv` suite's per-fold models fit through here)."""
    import lightgbm

    ranker = lightgbm.LGBMRanker(
        objective="lambdarank",
        num_leaves=p.num_leaves,
        learning_rate=p.learning_rate,
        n_estimators=p.n_estimators,
        min_child_samples=p.min_data_in_leaf,
        colsample_bytree=p.feature_fraction,
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=threads,
        verbose=-1,
    )
    log: dict = {}
    columns = feature_names(features)
    evaluation: dict = {}
    if dev is not None:
        callbacks = [lightgbm.early_stopping(p.early_stopping_rounds, verbose=False), lightgbm.record_evaluation(log)]
        evaluation = {"eval_X": (dev[0],), "eval_y": (dev[1],), "eval_group": [dev[2]], "eval_at": [10]}
        evaluation["callbacks"] = callbacks
    ranker.fit(
        train[0],
        train[1],
        group=train[2],
        feature_name=[n.replace(":", "_") for n in columns],
        **evaluation,
    )
    kept = ranker.best_iteration_ or None
    curve = log.get("valid_0", {}).get("ndcg@10", [])
    return Fitted(ranker.booster_, int(kept or p.n_estimators), kept, curve, columns)


def train_ltr(data: dict, path: Path, env: Context, out: Path) -> dict:
    config = parse(data, path)
    where = key_locator(path)
    dataset = load_dataset(config.train.dataset, env.data_dir)
    queries = without_excluded(dataset.queries, config.train.exclude_queries, where("train.exclude_queries"))
    if config.train.max_queries:
        queries = queries.sample(n=min(config.train.max_queries, len(queries)), random_state=config.seed)
        queries = queries.sort_index()
    tests = {name: load_dataset(name, env.data_dir).queries for name in config.test_datasets}
    refuse_overlap({"train.dataset": queries}, tests, where)
    ctx = training_context(dataset, env, config.seed)
    stages = [STAGES[name](**(params or {})) for item in config.candidates for name, params in item.items()]
    frame = run_candidates(stages, queries, ctx)
    frame = labelled(frame.reset_index(drop=True), dataset.qrels)
    features = feature_matrix(frame, config.features, ctx)

    useful = frame.groupby("qid")["_label"].transform("max") > 0
    skipped = int(frame.loc[~useful, "qid"].nunique())
    train_q, dev_q = split_queries(
        queries[queries["qid"].isin(set(frame.loc[useful, "qid"]))], config.train.dev_fraction, config.seed
    )
    if len(train_q) < 2:
        message = "train.dataset: fewer than 2 query groups with a relevant candidate"
        raise CascadeError(message, where=where("train.dataset"))

    def part(qids: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[int]]:
        mask = frame["qid"].isin(set(qids["qid"])).to_numpy()
        sub = frame[mask]
        groups = sub.groupby("qid", sort=False).size().tolist()
        return features[mask], sub["_label"].to_numpy(), groups

    x_train, y_train, g_train = part(train_q)
    x_dev, y_dev, g_dev = part(dev_q)
    fitted = fit_lambdamart(
        (x_train, y_train, g_train), (x_dev, y_dev, g_dev), config.lightgbm, config.seed, env.threads, config.features
    )
    fitted.save(out, config.features)
    curve = fitted.curve
    return {
        "train_queries": len(train_q),
        "dev_queries": len(dev_q),
        **({"excluded_queries": len(config.train.exclude_queries)} if config.train.exclude_queries else {}),
        "skipped_groups_without_relevant": skipped,
        "rows": len(frame),
        "best_iteration": fitted.best_iteration,
        "dev_ndcg@10": round(float(max(curve)), 6) if curve else None,
        "feature_importance_gain": fitted.importance_gain(),
        # what a retrained model's bytes depend on (LightGBM's CPU build: fp32 gradients, fp64 histogram sums)
        "trained_with": training_record("cpu", "fp32 gradients, fp64 histograms", env.threads, ("lightgbm", "numpy")),
    }


register(Trainer("ltr", 2, train_ltr, check=parse))  # 2: the extended lexical set
