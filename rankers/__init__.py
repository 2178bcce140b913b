"""Stages that score: each one a `Stage` (see `rankers.base`); the registry maps config names to classes."""

from __future__ import annotations

from rankers.base import Context, Pipeline, Stage
from rankers.dense import Dense, DenseRerank
from rankers.fusion import RRF, CombMNZ, CombSUM
from rankers.lucene import BM25, RM3
from rankers.run_file import RunFile

STAGES: dict[str, type[Stage]] = {
    cls.name: cls for cls in (BM25, RM3, RunFile, Dense, DenseRerank, RRF, CombSUM, CombMNZ)
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
    "STAGES",
    "Context",
    "Pipeline",
    "Stage",
]
