"""`restrain`: ReSTTest on cascade's own trainable stages (Zhan et al., CIKM 2022, protocol (c)).

The published ReSTTest splits judge a model someone else trained; here cascade retrains its own stages so the
held-out side is known. The training pool (e.g. the MS MARCO dev-small queries with a relevant passage in the 30k
corpus) is clustered into K buckets by MiniLM query similarity; each cluster keeps a test part. For bucket b a
model is trained on the train parts of the other clusters only, then the pipeline is scored on two sides:

- interpolation: the test parts of those other clusters (queries like the training ones);
- extrapolation: the test part of cluster b (a topic the model never saw).

How each bucket's model is derived and cached is in `retraining.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cascade.core.digest import content_key
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.eval.datasets import Dataset, load_dataset
from cascade.eval.extrapolation import bucket_sets, holdout_plan, plan_splits, split_scores
from cascade.eval.measures import canonical, evaluate, parse_measures
from cascade.eval.runs import RUN_COLUMNS, format_run
from cascade.pipelines.config import DatasetRef
from cascade.pipelines.resample import cluster_queries
from cascade.pipelines.runner import Artifacts, build_stages
from cascade.pipelines.suites.base import PipelineRef, Protocol
from cascade.pipelines.suites.common import perquery_tsv, tsv
from cascade.pipelines.suites.retraining import (
    RestrainSpec,
    TrainedRef,
    bucket_training,
    capped,
    replace_refs,
    trained_refs,
    training_pool,
)
from cascade.pipelines.train import ensure_trained
from cascade.pipelines.train.data import refuse_overlap
from cascade.rankers.engine import Executed, execute


class Restrain(Protocol):
    """One model per bucket, trained without the bucket's test queries (and without its cluster), each scored on
    the bucket's interpolation and extrapolation test queries; one run folder over all buckets."""

    kind = "restrain"
    Spec = RestrainSpec
    spec: RestrainSpec

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        started = time.perf_counter()
        spec = self.spec
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
        queries = dataset.queries.assign(qid=dataset.queries["qid"].astype(str))
        qrels = dataset.qrels.assign(qid=dataset.qrels["qid"].astype(str))
        ctx = session.for_run(dataset.corpus, ref.config.seed)
        buckets = [
            run_bucket(b, ref, trained, queries, qrels, plan, splits, measures, session, ctx)
            for b in range(1, spec.k + 1)
        ]

        values = pd.concat([b.perquery for b in buckets], ignore_index=True)
        scores = split_scores(values, splits, measure)
        avg = scores.average
        units = values[values["measure"] == measure]
        units = units.assign(qid=lambda f: "b" + f["bucket"].astype(str) + ":" + f["qid"])
        summary = {
            f"interpolation {measure}": avg["interpolation"],
            f"extrapolation {measure}": avg["extrapolation"],
            "gap (interp - extrap)": avg["gap"],
            "buckets": int(avg["buckets"]),
        }
        name = f"restrain:{pool_name}"
        metrics = {
            "name": ref.label,
            "dataset": name,
            "qrels": dataset.qrels_name,
            "queries": int(units["qid"].nunique()),
            "measures": {measure: float(units["value"].mean())},
            "summary": summary,
        }
        unit_queries = pd.DataFrame({"qid": units["qid"].tolist()})
        test_qrels = qrels[qrels["qid"].isin(set(splits["qid"]))]
        view = Dataset(name, dataset.description, lambda: unit_queries, lambda: test_qrels, dataset.corpus)
        # the manifest's stages and ms/query are bucket 1's run (each bucket runs the same chain); all are in `buckets`
        first = buckets[0].done
        combined = Executed(first.frame, content_key([b.card["run_key"] for b in buckets]), first.timings, first.stages)
        config = ref.config.model_copy(
            update={"dataset": DatasetRef(name=pool_name), "name": ref.label, "measures": [measure]}
        )
        extra = {
            "protocol": (
                f"ReSTTest on retrained stages: {spec.k} MiniLM query clusters of {pool_name}; bucket b trains on "
                "the other clusters' train parts, interpolation = their test parts, extrapolation = cluster b's "
                "test part; mean over buckets"
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
            "buckets": [b.card for b in buckets],
        }
        run = pd.concat([b.run for b in buckets], ignore_index=True)
        files: dict = {
            "run.trec": format_run(run, tag=ref.label),
            "perquery.tsv": perquery_tsv(units),
            "splits.tsv": tsv(scores.buckets, "%.6f"),
            "plan.tsv": tsv(plan, "%.6f"),
        }
        return Artifacts(config, ref.path, view, combined, ctx, started, metrics, files, extra)

    def outcome(self, ref: PipelineRef, artifacts: Artifacts) -> tuple[str, dict[str, float]]:
        """Labelled by its training pool, showing both sides and the gap next to the overall figure."""
        metrics = artifacts.metrics
        ((measure, value),) = metrics["measures"].items()
        summary = {k: float(v) for k, v in metrics["summary"].items() if k != "buckets"}
        return metrics["dataset"], {measure: value, **summary}

    def folder(self, ref: PipelineRef, label: str) -> Path:
        return Path("restrain-" + label.removeprefix("restrain:").replace("/", "__")) / ref.label


@dataclass
class Bucket:
    done: Executed
    perquery: pd.DataFrame  # the bucket's per-query values, with its number
    run: pd.DataFrame  # its run, each qid as `b<bucket>:<qid>`
    card: dict  # the manifest's record of the bucket


def run_bucket(
    b: int,
    ref: PipelineRef,
    trained: list[TrainedRef],
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    plan: pd.DataFrame,
    splits: pd.DataFrame,
    measures: list,
    session: Context,
    ctx: Context,
) -> Bucket:
    """Bucket b's model trained on the other clusters' train parts, the pipeline with it run on the bucket's tests
    (`ctx`: the run's environment, with the pool's corpus)."""
    train, _, _ = bucket_sets(plan, b)
    test = splits.loc[splits["bucket"] == b, "qid"].drop_duplicates().tolist()
    test_queries = queries[queries["qid"].isin(set(test))].reset_index(drop=True)
    refuse_overlap(  # by construction; by text too, as the trainers check their test datasets
        {"train": queries[queries["qid"].isin(set(train))]},
        {f"restrain bucket {b}": test_queries},
        lambda key: trained[0].dataset,
    )
    paths = bucket_training(trained, set(queries["qid"]) - set(train), session.store)
    models = {r: {"config": p, "model": str(ensure_trained(p, session))} for r, p in paths.items()}
    config = ref.config.model_copy(update={"pipeline": replace_refs(ref.config.pipeline, paths)})
    done = execute(build_stages(config, session), test_queries, ctx)
    _, values = evaluate(done.frame, qrels[qrels["qid"].isin(set(test))], measures)
    sides = splits[splits["bucket"] == b]["side"].value_counts().to_dict()
    card = {
        "bucket": b,
        "train_queries": len(train),
        "interpolation": int(sides.get("interpolation", 0)),
        "extrapolation": int(sides.get("extrapolation", 0)),
        "run_key": done.run_key,
        "models": models,
        "ms_per_query": round(sum(t.ms_per_query for t in done.timings), 4),
        "stages": [{**t.__dict__, "ms_per_query": round(t.ms_per_query, 4)} for t in done.timings],
    }
    run = done.frame[RUN_COLUMNS].assign(qid=f"b{b}:" + done.frame["qid"].astype(str))
    return Bucket(done, values.assign(bucket=b), run, card)
