"""Stages that score: each one a `Stage` (see `rankers.base`); the registry maps config names to classes."""

from __future__ import annotations

from rankers.base import Context, Pipeline, Stage
from rankers.cross_encoder import CrossEncoder
from rankers.dense import Dense, DenseRerank
from rankers.fusion import RRF, CombMNZ, CombSUM
from rankers.ltr import LTR
from rankers.lucene import BM25, RM3
from rankers.run_file import RunFile
from rankers.sparse import Sparse

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
