"""Instruction protocols: instruction `pools` (BIRCO), `followir` (p-MRR) and `instructir` (Robustness@10).

A stage that cannot read an instruction is named in the results; no instructed run is claimed for it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from pydantic import Field

from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.eval.datasets import Dataset, load_dataset
from cascade.eval.instructions import p_mrr, read_followir, read_instructir, robustness_at_k
from cascade.eval.measures import evaluate, parse_measures
from cascade.eval.runs import format_run
from cascade.pipelines.config import DatasetRef
from cascade.pipelines.runner import Artifacts, build_stages, run_artifacts
from cascade.pipelines.suites.base import PipelineRef, Protocol, Strict
from cascade.pipelines.suites.common import (
    check_first_stage,
    instruction_note,
    instruction_readers,
    measure_name,
    perquery_tsv,
    pooled,
    records_corpus,
    resolve_source,
    retargeted,
    source_name,
    tsv,
)
from cascade.rankers.pool import NotApplicable


class PoolsSpec(Strict):
    dataset: str
    measures: list[str] = Field(default_factory=lambda: ["nDCG@10"], min_length=1)
    instructed_only: bool = Field(False, description="keep only queries that carry an instruction (the sample)")


class Pools(Protocol):
    """Rank each query's pool (its qrels rows) with its instruction and without."""

    kind = "pools"
    Spec = PoolsSpec
    spec: PoolsSpec

    def label(self, ref: PipelineRef) -> str:
        return self.spec.dataset

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        started = time.perf_counter()
        spec = self.spec
        dataset = load_dataset(spec.dataset, session.data_dir)
        if dataset.corpus is None:
            raise CascadeError(f"pools: dataset '{spec.dataset}' has no corpus")
        queries = dataset.queries
        if "instruction" not in queries:
            raise CascadeError(f"pools: dataset '{spec.dataset}' has no query with an instruction")
        if spec.instructed_only:
            queries = queries[queries["instruction"] != ""].reset_index(drop=True)
        qrels = dataset.qrels[dataset.qrels["qid"].isin(set(queries["qid"]))]
        pools = qrels[["qid", "docno"]]
        measures = parse_measures(spec.measures, where="pools.measures")
        read, ignored = instruction_readers(build_stages(ref.config, session))

        bare = pooled(ref, queries.drop(columns="instruction"), dataset.corpus, pools, session)
        bare_aggregate, bare_perquery = evaluate(bare.frame, qrels, measures)
        tables = [bare_perquery.assign(measure=bare_perquery["measure"] + " (no instruction)")]
        aggregate = {f"{k} (no instruction)": v for k, v in bare_aggregate.items()}
        done = bare
        if read:
            done = pooled(ref, queries, dataset.corpus, pools, session)
            with_aggregate, with_perquery = evaluate(done.frame, qrels, measures)
            merged = with_perquery.merge(bare_perquery, on=["qid", "measure"], suffixes=("", "_bare"))
            delta = merged.assign(measure="Δ " + merged["measure"], value=merged["value"] - merged["value_bare"])
            tables = [with_perquery, *tables, delta[["qid", "measure", "value"]]]
            aggregate = {
                **with_aggregate,
                **aggregate,
                **{f"Δ {k}": with_aggregate[k] - bare_aggregate[k] for k in with_aggregate},
            }
        note = instruction_note(read, ignored) + ("" if read else ": no instructed run")
        metrics = {
            "name": ref.label,
            "dataset": dataset.name,
            "qrels": dataset.qrels_name,
            "queries": int(queries["qid"].nunique()),
            "measures": {k: float(v) for k, v in aggregate.items()},
            "summary": {"instruction": note},
        }
        files: dict = {
            "run.trec": format_run(done.frame, tag=ref.label),
            "perquery.tsv": perquery_tsv(pd.concat(tables, ignore_index=True)),
        }
        if read:
            files["run.no-instruction.trec"] = format_run(bare.frame, tag=ref.label)
        return Artifacts(
            retargeted(ref, DatasetRef(name=spec.dataset), spec.measures),
            ref.path,
            dataset,
            done,
            session.for_run(dataset.corpus, ref.config.seed),
            started,
            metrics,
            files,
            extra={"protocol": "rank each query's pool, with and without its instruction"},
            units=int(queries["qid"].nunique()),
        )


class FolderSpec(Strict):
    path: str = Field(..., description="a folder in the format's public layout (see eval/instructions.py)")
    measures: list[str] = Field(default_factory=lambda: ["nDCG@10"], min_length=1)


class _FolderProtocol(Protocol):
    """A collection in a public format, read from a folder: `<kind>`, or `<kind>-<folder>` for another folder."""

    Spec = FolderSpec
    spec: FolderSpec

    def label(self, ref: PipelineRef) -> str:
        name = Path(self.spec.path.split(":", 1)[-1]).name
        return self.kind if name == self.kind else f"{self.kind}-{name}"


class FollowIR(_FolderProtocol):
    """Each query's candidates ranked under its original and its changed instruction; p-MRR from the two runs,
    nDCG@10 of the original run with the original qrels."""

    kind = "followir"

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        started = time.perf_counter()
        spec = self.spec
        data = read_followir(resolve_source(spec.path, session, "followir.path", kind="folder"))
        corpus = records_corpus(source_name("followir", spec.path), data.corpus)
        read, ignored = instruction_readers(build_stages(ref.config, session))
        if not read:
            raise NotApplicable(
                f"no stage reads instructions ({', '.join(ignored)}), so p-MRR would be 0 by construction"
            )
        og = pooled(ref, data.queries_for("og"), corpus, data.candidates, session)
        changed = pooled(ref, data.queries_for("changed"), corpus, data.candidates, session)
        value, per_query = p_mrr(og.frame, changed.frame, data.qrels_og, data.qrels_changed)
        measures = parse_measures(spec.measures, where="followir.measures")
        aggregate, perquery = evaluate(og.frame, data.qrels_og, measures)
        perquery = pd.concat(
            [perquery, pd.DataFrame({"qid": per_query["qid"], "measure": "p-MRR", "value": per_query["p_mrr"]})],
            ignore_index=True,
        )
        dataset = Dataset(corpus.name, spec.path, lambda: data.queries, lambda: data.qrels_og, corpus, "og")
        metrics = {
            "name": ref.label,
            "dataset": corpus.name,
            "qrels": "og",
            "queries": len(data.queries),
            "measures": {**{k: float(v) for k, v in aggregate.items()}, "p-MRR": value},
            "summary": {"instruction": instruction_note(read, ignored)},
        }
        files: dict = {
            "run.trec": format_run(og.frame, tag=ref.label),
            "run.changed.trec": format_run(changed.frame, tag=ref.label),
            "perquery.tsv": perquery_tsv(perquery),
        }
        config = retargeted(ref, DatasetRef(path=spec.path), spec.measures)
        ctx = session.for_run(corpus, ref.config.seed)
        return Artifacts(config, ref.path, dataset, og, ctx, started, metrics, files)


class InstructIR(_FolderProtocol):
    """Every instance (a user's instruction over a shared base query) retrieves from the corpus; nDCG@10 per
    instance and Robustness@10, the worst instance per base query, averaged."""

    kind = "instructir"

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        spec = self.spec
        data = read_instructir(resolve_source(spec.path, session, "instructir.path", kind="folder"))
        corpus = records_corpus(source_name("instructir", spec.path), data.corpus)
        config = retargeted(ref, DatasetRef(path=spec.path), spec.measures)
        check_first_stage(config, session)
        queries = data.queries[["qid", "query", "instruction"]]
        dataset = Dataset(corpus.name, spec.path, lambda: queries, lambda: data.qrels, corpus)
        note = instruction_note(*instruction_readers(build_stages(ref.config, session)))

        def extend(perquery: pd.DataFrame) -> tuple[dict, dict[str, bytes]]:
            first = measure_name(spec.measures[0])
            robust = robustness_at_k(perquery, data.base_of, first)
            summary = {f"robustness {first}": robust.robustness, "instruction": note}
            return summary, {"robustness.tsv": tsv(robust.per_base.sort_values("base_qid", kind="mergesort"), "%.6f")}

        return run_artifacts(config, ref.path, dataset, session, extend=extend)
