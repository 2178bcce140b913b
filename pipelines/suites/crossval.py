"""`cv`: LambdaMART over every signal of a pipeline, trained and scored by k-fold cross-validation.

The cross-validated protocol of LETOR (and PyTerrier's `KFoldGridSearch`), next to the strict one (models that
learn from MS MARCO dev-small only): the test queries themselves train the models, but never the model that scores
them. The pipeline's chain (a trailing `ltr` stage dropped: the fold models take its place) gives each query its
top-k candidates with every stage's score carried (`score:<stage>`); the features are those scores and the lexical
group (`cascade.indexes.lexical`), or the task's `features`.

Pipelines that share a short name across datasets (`dl19-X` and `dl20-X`) are one pool: their judged queries
(DL19+DL20) are dealt into `folds` folds in one seeded order. Fold f's model learns from the other folds' queries
(a seeded `dev_fraction` of them held out for early stopping) and scores fold f only, through the `ltr_cv` stage
(`rankers.ltr.FoldLTR`), which refuses a query without a fold. Each pipeline still gets one ordinary run folder of
its own dataset; its manifest records the assignment, each fold's training and dev queries and the gains.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from cascade.core.digest import content_key, frame_digest
from cascade.core.env import Context
from cascade.core.errors import CascadeError, warn
from cascade.eval.datasets import Dataset
from cascade.eval.measures import coverage_note, evaluate, parse_measures
from cascade.eval.runs import format_run
from cascade.pipelines.config import Config
from cascade.pipelines.runner import Artifacts, build_stages, open_dataset
from cascade.pipelines.suites.base import PipelineRef, Protocol, Strict, TaskError, pipeline_label
from cascade.pipelines.suites.common import perquery_tsv
from cascade.pipelines.train.data import split_dev
from cascade.pipelines.train.ltr import LightGBMParams, carried_names, fit_lambdamart, labelled
from cascade.rankers.base import SCORE_PREFIX, Stage
from cascade.rankers.dense import split_top_k
from cascade.rankers.engine import Executed, execute
from cascade.rankers.ltr import LEXICAL, FoldLTR, feature_matrix, stage_of

CV_MODELS = "cv-models"  # artifact kind of the per-fold models
CV_VERSION = 1
PROTOCOL = "cross-validated"


class CVSpec(Strict):
    """k-fold cross-validated LambdaMART over the pipeline's candidates."""

    folds: int = Field(5, ge=2, description="folds; each query is scored by the model trained on the others")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="fold assignment, dev split and LightGBM")
    features: list[str] | None = Field(
        None,
        min_length=1,
        description="stage names (`z:<stage>`: standardised per query) and `lexical`; default: every stage's score "
        "and `lexical`",
    )
    k: int = Field(100, gt=0, description="the top k of the chain's run are reranked (and trained on)")
    dev_fraction: float = Field(
        0.2, ge=0, lt=1, description="of each fold's training queries, for early stopping; 0: all `n_estimators`"
    )
    lightgbm: LightGBMParams = Field(default_factory=LightGBMParams)


def upstream(config: Config) -> Config:
    """The pipeline without a trailing `ltr` stage: the per-fold models replace it."""
    items = config.pipeline
    if len(items) > 1 and next(iter(items[-1])) == "ltr":
        items = items[:-1]
    return config.model_copy(update={"pipeline": items})


def dataset_key(config: Config) -> str:
    ref = config.dataset
    return ref.name or str(ref.path)


def assign_folds(units: list[tuple[str, str]], folds: int, seed: int) -> dict[tuple[str, str], int]:
    """(dataset, qid) -> fold 1..folds: the units sorted, permuted by the seed and dealt round-robin, so fold sizes
    differ by at most one and the assignment depends on the seed and the query set only."""
    ordered = sorted(units)
    order = np.random.default_rng(seed).permutation(len(ordered))
    return {ordered[i]: position % folds + 1 for position, i in enumerate(order.tolist())}


@dataclass
class Member:
    """One pipeline of a pool: its chain's candidates on its own dataset, their labels and feature matrix."""

    ref: PipelineRef
    config: Config  # the upstream chain
    dataset: Dataset
    ctx: Context
    stages: list[Stage]
    head: pd.DataFrame  # the top-k candidates, with carried scores and `_label`
    matrix: np.ndarray

    @property
    def key(self) -> str:
        return dataset_key(self.config)


@dataclass
class Pool:
    members: list[Member]
    features: list[str]
    assignment: dict[tuple[str, str], int]
    models: list[Path]  # fold f's model is models[f - 1]
    cards: list[dict]  # what each fold's model learnt from


class CrossValidated(Protocol):
    """One LambdaMART per fold over a pool of pipelines (DL19+DL20), each query scored by the model that never saw
    it; one run folder per pipeline, its rows labelled cross-validated in the report."""

    kind = "cv"
    Spec = CVSpec
    spec: CVSpec
    own_dataset = True

    def __init__(self, spec: CVSpec) -> None:
        super().__init__(spec)
        self.refs: list[PipelineRef] = []
        self.pools: dict[str, Pool] = {}

    def label(self, ref: PipelineRef) -> str:
        return dataset_key(ref.config)

    def pipeline_name(self, ref: PipelineRef) -> str:
        """The chain's name with what the folds add: `dl19-official-bm25-signals-ltr-cv`, never mistaken for the
        chain run alone."""
        return f"{ref.config.name}-ltr-cv"

    def members(self, ref: PipelineRef) -> list[PipelineRef]:
        """The pipelines pooled with `ref`: those with its short name (itself alone outside a suite)."""
        group = pipeline_label(ref.config)
        pooled = [r for r in self.refs if pipeline_label(r.config) == group] or [ref]
        return sorted(pooled, key=lambda r: dataset_key(r.config))

    def check(self, refs: list[PipelineRef], session: Context) -> None:
        """Before any work: each named feature is a stage of every pipeline, no pool has two pipelines on one
        dataset, and no pool has fewer queries than folds."""
        self.refs = list(refs)
        for ref in refs:
            provided = carried_names([next(iter(item)) for item in upstream(ref.config).pipeline])
            for index, feature in enumerate(self.spec.features or []):
                if feature != LEXICAL and stage_of(feature) not in provided:
                    raise TaskError(
                        ("features", index),
                        f"feature '{feature}' is not provided by any stage of {ref.config.name} "
                        f"(stages: {', '.join(provided)}; or '{LEXICAL}')",
                    )
        for group in {pipeline_label(r.config) for r in refs}:
            pooled = self.members(next(r for r in refs if pipeline_label(r.config) == group))
            keys = [dataset_key(r.config) for r in pooled]
            if len(set(keys)) < len(keys):
                names = ", ".join(r.config.name for r in pooled)
                raise CascadeError(f"cv: the pipelines {names} pool one dataset twice; give each a dataset of its own")
            queries = sum(len(open_dataset(r.config, session.data_dir).queries) for r in pooled)
            if self.spec.folds > queries:
                raise TaskError(
                    ("folds",),
                    f"{self.spec.folds} folds for {queries} queries ({' + '.join(keys)}): at most one fold per query",
                )

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        started = time.perf_counter()
        group = pipeline_label(ref.config)
        if group not in self.pools:
            self.pools[group] = self.train_pool(self.members(ref), session)
        pool = self.pools[group]
        member = next(m for m in pool.members if m.ref.config.name == ref.config.name)
        return self.artifacts(member, pool, started)

    def train_pool(self, refs: list[PipelineRef], session: Context) -> Pool:
        """Every member's candidates and features, the seeded folds, and one model per fold."""
        spec = self.spec
        members = [self.member(r, session) for r in refs]
        features = spec.features or default_features(members)
        for m in members:
            m.matrix = feature_matrix(m.head, features, m.ctx)
        units = [(m.key, str(q)) for m in members for q in m.dataset.queries["qid"]]
        if spec.folds > len(units):
            raise CascadeError(f"{spec.folds} folds for {len(units)} queries", where="cv.folds")
        assignment = assign_folds(units, spec.folds, spec.seed)
        models, cards = [], []
        for fold in range(1, spec.folds + 1):
            folder, card = self.train_fold(fold, members, features, assignment, session)
            models.append(folder)
            cards.append(card)
        return Pool(members, features, assignment, models, cards)

    def member(self, ref: PipelineRef, session: Context) -> Member:
        config = upstream(ref.config)
        dataset = open_dataset(config, session.data_dir)
        ctx = session.for_run(dataset.corpus, config.seed)
        stages = build_stages(config, session)
        done = execute(stages, dataset.queries, ctx)
        head = split_top_k(done.frame, self.spec.k)[0].reset_index(drop=True)
        qrels = dataset.qrels.assign(qid=dataset.qrels["qid"].astype(str))
        head = labelled(head.assign(qid=head["qid"].astype(str)), qrels)
        return Member(ref, config, dataset, ctx, stages, head, np.zeros((len(head), 0)))

    def train_fold(
        self,
        fold: int,
        members: list[Member],
        features: list[str],
        assignment: dict[tuple[str, str], int],
        session: Context,
    ) -> tuple[Path, dict]:
        """Fold f's model: trained on every query outside fold f that has a relevant candidate, early-stopped on a
        seeded part of them; content-addressed in the store, so a rerun trains nothing."""
        spec = self.spec
        frames, matrices = [], []
        for m in members:
            outside = m.head["qid"].map(lambda q, key=m.key: assignment[(key, q)] != fold).to_numpy()
            useful = m.head.groupby("qid")["_label"].transform("max").to_numpy() > 0
            rows = outside & useful
            frames.append(m.head.loc[rows, ["qid", "_label"]].assign(unit=m.key + "\t" + m.head.loc[rows, "qid"]))
            matrices.append(m.matrix[rows])
        frame = pd.concat(frames, ignore_index=True)
        matrix = np.vstack(matrices)
        units = list(dict.fromkeys(frame["unit"]))
        n_dev = int(round(spec.dev_fraction * len(units)))
        if spec.dev_fraction > 0:
            n_dev = max(1, n_dev)
        if len(units) - n_dev < 2:
            raise CascadeError(
                f"fold {fold}: {len(units)} training queries with a relevant candidate are too few; use fewer folds",
                where="cv.folds",
            )
        train, dev = split_dev(units, n_dev, spec.seed + fold, key="cv.dev_fraction") if n_dev else (units, [])

        def part(chosen: list[str]) -> tuple[np.ndarray, np.ndarray, list[int]]:
            mask = frame["unit"].isin(set(chosen)).to_numpy()
            sub = frame[mask]
            return matrix[mask], sub["_label"].to_numpy(), sub.groupby("unit", sort=False).size().tolist()

        made_from = {
            "version": CV_VERSION,
            "fold": fold,
            "features": features,
            "matrix": hashlib.sha256(np.ascontiguousarray(matrix).tobytes()).hexdigest(),
            "rows": frame_digest(frame, ["unit", "_label"]),
            "train": train,
            "dev": dev,
            "lightgbm": spec.lightgbm.model_dump(mode="json"),
            "seed": spec.seed,
        }

        def build(tmp: Path) -> dict:
            held = part(dev) if dev else None
            fitted = fit_lambdamart(part(train), held, spec.lightgbm, spec.seed, session.threads, features)
            fitted.save(tmp, features)
            curve = fitted.curve
            return {
                "best_iteration": fitted.best_iteration,
                "dev_ndcg@10": round(float(max(curve)), 6) if curve else None,
                "feature_importance_gain": fitted.importance_gain(),
            }

        key = content_key(made_from)
        folder, _ = session.store.get_or_build(CV_MODELS, key, build, made_from)
        card = session.store.card(CV_MODELS, key)
        return folder, {
            "fold": fold,
            "model": key,
            "train_queries": by_dataset(train),
            "dev_queries": by_dataset(dev),
            "best_iteration": card.get("best_iteration"),
            "dev_ndcg@10": card.get("dev_ndcg@10"),
            "feature_importance_gain": card.get("feature_importance_gain"),
        }

    def artifacts(self, member: Member, pool: Pool, started: float) -> Artifacts:
        """The member's chain with the fold models last, run on its own queries and scored like any run."""
        spec, config, dataset = self.spec, member.ref.config, member.dataset
        folds = {q: f - 1 for (key, q), f in pool.assignment.items() if key == member.key}
        stage = FoldLTR(models=[str(p) for p in pool.models], folds=folds, k=spec.k)
        done: Executed = execute([*member.stages, stage], dataset.queries, member.ctx)
        where = f"{config.name} on {dataset.name}"
        note = coverage_note(done.frame, dataset.qrels, where=where)
        if note:
            warn(note, where=where)
        aggregate, perquery = evaluate(done.frame, dataset.qrels, parse_measures(config.measures))
        pooled = " + ".join(m.key for m in pool.members)
        name = self.pipeline_name(member.ref)
        metrics = {
            "name": name,
            "dataset": dataset.name,
            "qrels": dataset.qrels_name,
            "queries": int(perquery["qid"].nunique()),
            "measures": aggregate,
            "summary": {"protocol": f"{PROTOCOL}: {spec.folds} folds over {pooled}"},
        }
        gains = (done.timings[-1].stats or {}).get("feature_importance_gain") or {}
        extra = {
            "protocol": PROTOCOL,
            "cv": {
                "folds": spec.folds,
                "seed": spec.seed,
                "pool": [m.ref.config.name for m in pool.members],
                "features": pool.features,
                "assignment": {
                    m.key: {q: f for (key, q), f in sorted(pool.assignment.items()) if key == m.key}
                    for m in pool.members
                },
                "models": pool.cards,
                "feature_importance_gain": dict(sorted(gains.items(), key=lambda kv: -kv[1])),
            },
        }
        files: dict = {"run.trec": format_run(done.frame, tag=name[:64]), "perquery.tsv": perquery_tsv(perquery)}
        named = config.model_copy(update={"name": name})
        return Artifacts(named, member.ref.path, dataset, done, member.ctx, started, metrics, files, extra)


def by_dataset(units: list[str]) -> dict[str, list[str]]:
    """`dataset\tqid` units as {dataset: sorted qids}, as the manifest records them."""
    out: dict[str, list[str]] = {}
    for unit in sorted(units):
        key, qid = unit.split("\t", 1)
        out.setdefault(key, []).append(qid)
    return out


def default_features(members: list[Member]) -> list[str]:
    """Every stage's score the chains carry (the same in each member, else an error) and the lexical group."""
    carried = [[c.removeprefix(SCORE_PREFIX) for c in m.head.columns if c.startswith(SCORE_PREFIX)] for m in members]
    if any(c != carried[0] for c in carried[1:]):
        names = ", ".join(m.ref.config.name for m in members)
        raise CascadeError(f"cv: the pooled pipelines {names} carry different stage scores; name `features`")
    return [*carried[0], LEXICAL]
