"""Learning to rank: a LightGBM LambdaMART model over upstream stage scores and lexical features.

The model folder (made by `cascade train ltr`) holds `model.txt` (LightGBM's text format: no pickle) and
`features.json`: `features`, the names in order: stage names, whose scores the runner carries along as
`score:<stage>` columns, and `lexical`, the group in `cascade.indexes.lexical.FEATURES`; and `columns`, the
matrix columns the model was trained on. Columns are selected by name, so a model trained on an older, smaller
lexical set still runs as long as each of its columns is still computed; one that is not is a one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from cascade.core.configfile import read_yaml
from cascade.core.digest import content_key, file_digest, frame_digest
from cascade.core.errors import CascadeError
from cascade.core.paths import TRAIN_PREFIX
from cascade.indexes import lucene
from cascade.indexes.lexical import FEATURES, term_stats
from cascade.rankers.base import SCORE_PREFIX, Context, Output, Params, Stage
from cascade.rankers.dense import rerank_merge, split_top_k
from cascade.rankers.lucene import lucene_index

LEXICAL = "lexical"
ZSCORE = "z:"  # `z:<stage>`: the stage's score standardised within each query (mean 0, std 1; 0 when all equal)
FEATURES_VERSION = 2  # 2: the extended lexical set (positions, five BM25s, language models)


class LTRParams(Params):
    model: str = Field(..., min_length=1, description="model folder, or train:CONFIG for the model it trains")
    k: int = Field(100, gt=0, description="rerank the top k of the upstream run")


def feature_names(features: list[str]) -> list[str]:
    """Column names of the feature matrix, lexical expanded."""
    names = []
    for feature in features:
        if feature == LEXICAL:
            names += [f"lexical:{f}" for f in FEATURES]
        elif feature.startswith(ZSCORE):
            names.append(f"zscore:{stage_of(feature)}")
        else:
            names.append(f"{SCORE_PREFIX}{feature}")
    return names


def stage_of(feature: str) -> str:
    """The stage whose score a feature reads: `dense_rerank` and `z:dense_rerank` both read dense_rerank's.
    A raw score's scale drifts from query to query (BM25 grows with query length); trees split on absolute
    values, so the standardised score is what generalises across queries when the training queries are few."""
    return feature.removeprefix(ZSCORE)


def stage_score(frame: pd.DataFrame, feature: str) -> np.ndarray:
    """One stage-score column: the carried score, or standardised within each query for `z:<stage>`."""
    score = frame[f"{SCORE_PREFIX}{stage_of(feature)}"].astype("float64")
    if not feature.startswith(ZSCORE):
        return score.to_numpy()
    grouped = score.groupby(frame["qid"].to_numpy())
    std = grouped.transform("std", ddof=0).replace(0.0, np.nan)
    return ((score - grouped.transform("mean")) / std).fillna(0.0).to_numpy()


def feature_matrix(
    frame: pd.DataFrame, features: list[str], ctx: Context, columns: list[str] | None = None
) -> np.ndarray:
    """Features for every row of `frame` (a run carrying `score:*` columns), cached by content address; only
    `columns` (names from `feature_names`, in that order) when given: what a stored model was trained on."""
    available = sorted(c.removeprefix(SCORE_PREFIX) for c in frame.columns if c.startswith(SCORE_PREFIX))
    for feature in features:
        if feature != LEXICAL and f"{SCORE_PREFIX}{stage_of(feature)}" not in frame.columns:
            upstream = ", ".join(available) or "none"
            raise CascadeError(
                f"feature '{feature}' is not provided by any upstream stage (upstream: {upstream})",
                where="ltr.features",
            )
    blocks = [lexical_features(frame, ctx) if f == LEXICAL else stage_score(frame, f)[:, None] for f in features]
    matrix = np.hstack(blocks) if blocks else np.zeros((len(frame), 0))
    if columns is None:
        return matrix
    position = {name: i for i, name in enumerate(feature_names(features))}
    missing = [c for c in columns if c not in position]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise CascadeError(
            f"the model was trained on features this version does not compute ({shown}); retrain it",
            where="ltr.model",
        )
    return matrix[:, [position[c] for c in columns]]


def lexical_features(frame: pd.DataFrame, ctx: Context) -> np.ndarray:
    index = lucene_index(ctx)
    made_from = {
        "index": index.name,
        "pairs": frame_digest(frame, ["qid", "query", "docno"]),
        "v": FEATURES_VERSION,
        "features": content_key(list(FEATURES)),
    }

    def build(tmp: Path) -> dict:
        stats = term_stats(ctx.store, index, ctx.log_dir / "lexical.log")
        queries = frame.drop_duplicates("qid")
        terms = dict(zip(queries["qid"], lucene.analyze(queries["query"].astype(str).tolist()), strict=True))
        out = np.zeros((len(frame), len(FEATURES)), dtype=np.float64)
        positions = frame.groupby("qid", sort=False).indices
        for qid, rows in positions.items():
            out[rows] = stats.features(terms[qid], frame["docno"].iloc[rows].tolist())
        np.save(tmp / "features.npy", out)
        return {"rows": len(frame), "features": len(FEATURES)}

    folder, _ = ctx.store.get_or_build("features", content_key(made_from), build, made_from)
    return np.load(folder / "features.npy")


class LTR(Stage):
    """Reranks the upstream top-k with a LambdaMART model; the rest keeps its order below."""

    name = "ltr"
    Params = LTRParams
    uses_corpus = True
    depth_param = "k"
    reranks = True

    def folder(self) -> Path:
        folder = Path(self.params.model)
        if not (folder / "model.txt").is_file() or not (folder / "features.json").is_file():
            raise CascadeError(f"'{folder}' is not an LTR model folder (model.txt, features.json)", where="ltr.model")
        return folder

    def features(self) -> tuple[list[str], list[str]]:
        """(feature names, matrix columns) the model was trained on; a folder without `columns` predates them
        and was trained on every column its features had then, which only the booster's width can tell."""
        data = json.loads((self.folder() / "features.json").read_text())
        return data["features"], data.get("columns") or feature_names(data["features"])

    def upstream_scores(self) -> list[str]:
        """The stage scores among its features, known before any work: from the model folder's features.json, or
        for `train:CONFIG` from the training config's `features` (before the model is trained)."""
        model = self.params.model
        try:
            if model.startswith(TRAIN_PREFIX):
                data = read_yaml(model.removeprefix(TRAIN_PREFIX), "training config")[0]
            else:
                file = Path(model) / "features.json"
                data = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
        except (CascadeError, OSError, ValueError):
            return []  # an unreadable model is reported where it is read
        features = data.get("features") if isinstance(data, dict) else None
        if not isinstance(features, list):
            return []
        return list(dict.fromkeys(stage_of(f) for f in features if isinstance(f, str) and f != LEXICAL))

    def cache_parts(self, ctx: Context) -> dict:
        parts = super().cache_parts(ctx)
        parts["params"] = {**parts["params"], "model": file_digest(self.folder() / "model.txt")}
        return parts

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        return self.apply(inp, ctx, []).run

    def apply(self, inp: pd.DataFrame, ctx: Context, inputs: list[pd.DataFrame]) -> Output:
        """The reranked run, with the model's feature importance (gain) as its statistics."""
        head, tail = split_top_k(inp, self.params.k)
        head = head.reset_index(drop=True)
        booster, (features, names) = self.booster(), self.features()
        scores = booster.predict(feature_matrix(head, features, ctx, names), num_threads=ctx.threads)
        stats = {"feature_importance_gain": importance_gain(booster, names)}
        return Output(rerank_merge(head.assign(score=scores.astype("float64")), tail), stats)

    def booster(self) -> Any:
        """The model's LightGBM booster, checked against the columns features.json names."""
        import lightgbm

        booster = lightgbm.Booster(model_file=str(self.folder() / "model.txt"))
        names = self.features()[1]
        if booster.num_feature() != len(names):
            raise CascadeError(
                f"'{self.folder()}': model.txt has {booster.num_feature()} features but features.json names "
                f"{len(names)}; retrain it",
                where="ltr.model",
            )
        return booster


def importance_gain(booster: Any, names: list[str]) -> dict[str, float]:
    importance = booster.feature_importance(importance_type="gain")
    return {n: round(float(v), 4) for n, v in zip(names, importance, strict=True)}


class FoldLTRParams(Params):
    models: list[str] = Field(..., min_length=2, description="one LTR model folder per fold, all on one feature set")
    folds: dict[str, int] = Field(..., description="qid -> index into `models`: the model that never saw the query")
    k: int = Field(100, gt=0, description="rerank the top k of the upstream run")


class FoldLTR(Stage):
    """Cross-validated LTR: each query reranked by its fold's model, one trained without that fold's queries.

    Built by the `cv` suite (`cascade.pipelines.suites.crossval`), not from YAML: the fold assignment is the
    protocol's. A query the assignment lacks is refused rather than scored by some model that may have seen it.
    The feature matrix is computed once over all queries (the same cached entry the folds were trained from)."""

    name = "ltr_cv"
    Params = FoldLTRParams
    uses_corpus = True
    depth_param = "k"
    reranks = True

    def fold_models(self) -> list[LTR]:
        return [LTR(model=model, k=self.params.k) for model in self.params.models]

    def cache_parts(self, ctx: Context) -> dict:
        parts = super().cache_parts(ctx)
        digests = [file_digest(m.folder() / "model.txt") for m in self.fold_models()]
        parts["params"] = {**parts["params"], "models": digests}
        return parts

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        return self.apply(inp, ctx, []).run

    def apply(self, inp: pd.DataFrame, ctx: Context, inputs: list[pd.DataFrame]) -> Output:
        """The reranked run, with each fold model's feature importance (gain) and their mean as statistics."""
        head, tail = split_top_k(inp, self.params.k)
        head = head.reset_index(drop=True)
        fold = head["qid"].astype(str).map(self.params.folds)
        if fold.isna().any():
            qid = head["qid"].astype(str)[fold.isna()].iloc[0]
            raise CascadeError(f"query {qid!r} has no fold, so no model that never saw it", where="ltr_cv.folds")
        models = self.fold_models()
        features, names = models[0].features()
        if any(m.features() != (features, names) for m in models[1:]):
            raise CascadeError("the fold models were trained on different features", where="ltr_cv.models")
        matrix = feature_matrix(head, features, ctx, names)
        scores = np.zeros(len(head), dtype=np.float64)
        gains = []
        for index, model in enumerate(models):
            rows = (fold == index).to_numpy()
            booster = model.booster()
            if rows.any():
                scores[rows] = booster.predict(matrix[rows], num_threads=ctx.threads)
            gains.append(importance_gain(booster, names))
        mean = {n: round(float(np.mean([g[n] for g in gains])), 4) for n in names}
        stats = {"feature_importance_gain": mean, "fold_feature_importance_gain": gains}
        return Output(rerank_merge(head.assign(score=scores), tail), stats)

    def __repr__(self) -> str:
        return f"{self.name}(folds={len(self.params.models)}, k={self.params.k})"
