"""The one environment record: what a command, a run, a stage and a trainer see.

A command opens it once (`Context.open`: data dir, cache, threads, progress); each run of a pipeline refines it
with its corpus and seed (`for_run`). Stages and trainers receive it and never go looking for datasets or configs
themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cascade.core.errors import CascadeError
from cascade.core.paths import resolve_data_dir
from cascade.core.store import ArtifactStore


@dataclass(frozen=True)
class Context:
    store: ArtifactStore
    corpus: Any = None  # cascade.eval.datasets.Corpus, or None for collections without documents
    data_dir: Path | None = None
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    progress: bool = True
    seed: int = 42

    @classmethod
    def open(
        cls,
        data_dir: str | Path | None = None,
        cache_dir: str | Path = ".cascade",
        threads: int | None = None,
        progress: bool = True,
    ) -> Context:
        if threads is not None and threads < 1:  # 0 is not "all cores", and a negative count is no count
            raise CascadeError(f"threads: must be at least 1, not {threads}")
        return cls(
            store=ArtifactStore(cache_dir),
            data_dir=resolve_data_dir(data_dir),
            threads=threads or os.cpu_count() or 1,
            progress=progress,
        )

    def for_run(self, corpus: Any, seed: int) -> Context:
        """The same environment for one run: its corpus and its seed."""
        return replace(self, corpus=corpus, seed=seed)

    @property
    def log_dir(self) -> Path:
        return self.store.root / "logs"

    def require_corpus(self, stage: str) -> Any:
        if self.corpus is None:
            raise CascadeError(f"stage '{stage}' needs a corpus, and this dataset has none")
        return self.corpus
