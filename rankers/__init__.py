"""Stages that score: each one a `Stage` (see `cascade.rankers.base`); the registry maps config names to classes."""

from __future__ import annotations

from cascade.rankers.base import Context, Pipeline, Stage
from cascade.rankers.cross_encoder import CrossEncoder
from cascade.rankers.dense import Dense, DenseRerank
from cascade.rankers.fusion import RRF, CombMNZ, CombSUM
from cascade.rankers.ltr import LTR
from cascade.rankers.lucene import BM25, RM3
from cascade.rankers.run_file import RunFile
from cascade.rankers.sparse import Sparse

STAGES: dict[str, type[Stage]] = {
    cls.name: cls for cls in (BM25, RM3, RunFile, Dense, DenseRerank, RRF, CombSUM, CombMNZ, Sparse, LTR, CrossEncoder)
}

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
    "LTR",
    "CrossEncoder",
    "STAGES",
    "Context",
    "Pipeline",
    "Stage",
]
