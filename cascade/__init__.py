"""cascade: staged retrieval pipelines declared in YAML, run with a cache, evaluated with statistics you can trust.

The public Python API, PyTerrier style:

    from cascade import BM25, DenseRerank, evaluate, load_dataset, parse_measures

    data = load_dataset("sample")
    pipeline = BM25(k=100) >> DenseRerank(k=20)
    run = pipeline.transform(data.queries, corpus=data.corpus)
    scores, per_query = evaluate(run, data.qrels, parse_measures(["nDCG@10"]))
    print(scores["nDCG@10"])

Names resolve on first use (PEP 562), so `import cascade` and the CLI's start stay light: a stage's module
(and torch, pyserini, faiss behind it) loads only when that stage is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    "BM25": "cascade.rankers",
    "RM3": "cascade.rankers",
    "RunFile": "cascade.rankers",
    "Dense": "cascade.rankers",
    "DenseRerank": "cascade.rankers",
    "Sparse": "cascade.rankers",
    "CrossEncoder": "cascade.rankers",
    "LTR": "cascade.rankers",
    "RRF": "cascade.rankers",
    "CombSUM": "cascade.rankers",
    "CombMNZ": "cascade.rankers",
    "Stage": "cascade.rankers",
    "Pipeline": "cascade.rankers",
    "Context": "cascade.rankers",
    "STAGES": "cascade.rankers",
    "load_dataset": "cascade.eval.datasets",
    "load_folder": "cascade.eval.datasets",
    "evaluate": "cascade.eval.measures",
    "parse_measures": "cascade.eval.measures",
    "read_run": "cascade.eval.runs",
    "load_config": "cascade.pipelines.config",
    "run_config": "cascade.pipelines.runner",
    "ArtifactStore": "cascade.core.store",
    "CascadeError": "cascade.core.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'cascade' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
