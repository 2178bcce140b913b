"""What several protocols share: their data paths, retargeted configs, pooled runs and instruction readers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from cascade.core.digest import content_key
from cascade.core.env import Context
from cascade.core.paths import confined, resolve_path
from cascade.eval.datasets import SAMPLE_DIR, Corpus
from cascade.eval.measures import canonical, parse_measures
from cascade.indexes.docstore import docstore
from cascade.pipelines.config import Config, DatasetRef
from cascade.pipelines.runner import build_stages
from cascade.pipelines.suites.base import PipelineRef
from cascade.rankers.base import Stage
from cascade.rankers.engine import Executed, execute
from cascade.rankers.pool import NotApplicable, pooled_chain

SAMPLE_PREFIX = "sample:"  # a path in the built-in sample (eval/datasets/sample)


def resolve_source(value: str, session: Context, key: str, *, kind: str = "file", sample: str | None = None) -> Path:
    """A protocol's data: a path, data:<path under the data dir>, sample:<path in the built-in sample>, or just
    `sample` for the protocol's own sample file (`sample`), when it has one."""
    if value == "sample" and sample:
        return SAMPLE_DIR / sample
    if value.startswith(SAMPLE_PREFIX):  # confined to the built-in sample as `data:` is to the data dir
        value = str(confined(SAMPLE_DIR, value.removeprefix(SAMPLE_PREFIX), key, value, "the built-in sample"))
    return resolve_path(value, session.data_dir, key, kind=kind)


def source_name(kind: str, path: str) -> str:
    """`followir (sample)` for the built-in collections, `followir/<folder>` for a user's folder."""
    if path.startswith(SAMPLE_PREFIX):
        return f"{kind} (sample)"
    return f"{kind}/{Path(path.split(':', 1)[-1]).name}"


def retargeted(ref: PipelineRef, dataset: DatasetRef, measures: list[str] | None) -> Config:
    """The pipeline's config on another dataset, named by its short label (its `expected:` scores are of its own
    dataset, so they do not travel)."""
    update: dict[str, Any] = {"dataset": dataset, "name": ref.label, "expected": None}
    if measures:
        update["measures"] = list(measures)
    return ref.config.model_copy(update=update)


def check_first_stage(config: Config, session: Context) -> None:
    """A chain that starts by replaying a fixed run file cannot retrieve from another collection."""
    if build_stages(config, session)[0].replays_run:
        raise NotApplicable("its first stage reads a fixed run file made for another dataset")


def pooled(ref: PipelineRef, queries: pd.DataFrame, corpus: Corpus, pools: pd.DataFrame, session: Context) -> Executed:
    """The pipeline ranking exactly each query's pool (see rankers/pool.py)."""
    ctx = session.for_run(corpus, ref.config.seed)
    stages = pooled_chain(build_stages(ref.config, session), pools, docstore(ctx).size)
    return execute(stages, queries, ctx)


def records_corpus(name: str, records: list[dict]) -> Corpus:
    key = content_key([[r["docno"], r.get("title", ""), r["text"]] for r in records])
    return Corpus(name, lambda: f"records:{key}", lambda: iter(records))


def instruction_readers(stages: list[Stage]) -> tuple[list[str], list[str]]:
    """(stages that read a query's instruction, stages that ignore it), fusion inputs included."""
    read, ignored = [], []
    for stage in stages:
        for leaf in stage.walk():
            (read if leaf.reads_instruction else ignored).append(leaf.name)
    return list(dict.fromkeys(read)), list(dict.fromkeys(ignored))


def instruction_note(read: list[str], ignored: list[str]) -> str:
    if not read:
        return f"not read by {', '.join(ignored)}"
    return f"read by {', '.join(read)}" + (f"; ignored by {', '.join(ignored)}" if ignored else "")


def measure_name(name: str) -> str:
    """The canonical name of one measure (`nDCG@10`)."""
    return canonical(parse_measures([name])[0])


def tsv(frame: pd.DataFrame, float_format: str) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, sep="\t", index=False, float_format=float_format)
    return buffer.getvalue().encode("utf-8")


def perquery_tsv(frame: pd.DataFrame) -> bytes:
    """perquery.tsv as every run folder has it: `qid, measure, value` sorted by (qid, measure), 6 decimals, so a
    rerun writes the same bytes (as `cascade.eval.measures.evaluate` sorts its frame)."""
    return tsv(frame[["qid", "measure", "value"]].sort_values(["qid", "measure"], kind="mergesort"), "%.6f")
