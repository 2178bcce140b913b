"""NevIR's paired protocol (`negation_pairs`): each query ranks its pair's two documents."""

from __future__ import annotations

import time

from pydantic import Field

from cascade.core.env import Context
from cascade.eval.datasets import Corpus, Dataset, file_fingerprint
from cascade.eval.negation import pair_measures, pair_scores, read_pairs
from cascade.eval.runs import format_run
from cascade.pipelines.config import DatasetRef
from cascade.pipelines.runner import Artifacts
from cascade.pipelines.suites.base import PipelineRef, Protocol, Strict
from cascade.pipelines.suites.common import perquery_tsv, pooled, resolve_source, retargeted, tsv


class NegationSpec(Strict):
    pairs: str = Field(..., description="NevIR test.jsonl: a path, data:<path under the data dir>, or 'sample'")


class NegationPairs(Protocol):
    kind = "negation_pairs"
    Spec = NegationSpec
    spec: NegationSpec

    def label(self, ref: PipelineRef) -> str:
        return "nevir-pairs"

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        """Corpus statistics come from all NevIR documents; a tie within a pair counts as wrong."""
        started = time.perf_counter()
        spec = self.spec
        pairs = read_pairs(resolve_source(spec.pairs, session, "negation_pairs.pairs", sample="negation.jsonl"))
        corpus = Corpus(f"nevir-pairs:{pairs.source.name}", lambda: file_fingerprint(pairs.source), pairs.docs)
        queries = pairs.queries
        done = pooled(ref, queries, corpus, pairs.pools, session)
        scores = pair_scores(done.frame, pairs)
        perquery = pair_measures(scores)
        aggregate = perquery.groupby("measure", sort=False)["value"].mean().to_dict()
        dataset = Dataset("nevir-pairs", str(pairs.source), lambda: queries, lambda: pairs.qrels, corpus, "pairs")
        label = "nevir pairs" if spec.pairs != "sample" else "sample negation pairs"
        metrics = {"name": ref.label, "dataset": label, "qrels": "-", "queries": len(pairs.table)}
        metrics["measures"] = {k: float(v) for k, v in aggregate.items()}
        files: dict = {
            "run.trec": format_run(done.frame, tag=ref.label),
            "perquery.tsv": perquery_tsv(perquery),
            "pairs.tsv": tsv(scores, "%.9g"),
        }
        return Artifacts(
            retargeted(ref, DatasetRef(path=str(pairs.source)), list(aggregate)),
            ref.path,
            dataset,
            done,
            session.for_run(corpus, ref.config.seed),
            started,
            metrics,
            files,
            extra={"protocol": "NevIR paired accuracy; ties are wrong"},
            units=len(pairs.table),  # the units of perquery.tsv are pairs
        )
