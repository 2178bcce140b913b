"""Stages that score: each one a `Stage` (see `cascade.rankers.base`); the registry maps config names to classes."""

from __future__ import annotations

from cascade.rankers.base import STAGES, Context, Output, Pipeline, Stage, build_pipeline, register
from cascade.rankers.cross_encoder import CrossEncoder
from cascade.rankers.dense import Dense, DenseRerank
from cascade.rankers.engine import Executed, StageTiming, execute
from cascade.rankers.fusion import RRF, CombMNZ, CombSUM
from cascade.rankers.ltr import LTR
from cascade.rankers.lucene import BM25, RM3
from cascade.rankers.run_file import RunFile
from cascade.rankers.sparse import Sparse
from cascade.rankers.sparse_rerank import SparseRerank

register(BM25, RM3, RunFile, Dense, DenseRerank, RRF, CombSUM, CombMNZ, Sparse, SparseRerank, LTR, CrossEncoder)

__all__ = [
    "BM25",
    "RM3",
    "RunFile",
    "Dense",
    "DenseRerank",
    "RRF",
    "CombSUM",
    "CombMNZ",
    "Sparse",
    "SparseRerank",
    "LTR",
    "CrossEncoder",
    "STAGES",
    "Context",
    "Executed",
    "Output",
    "Pipeline",
    "Stage",
    "StageTiming",
    "build_pipeline",
    "execute",
]
