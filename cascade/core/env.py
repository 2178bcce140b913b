"""The one environment record: what a command, a run, a stage and a trainer see.

A command opens it once (`Context.open`: data dir, cache, threads, progress, executor); each run of a pipeline
refines it with its corpus and seed (`for_run`). Stages and trainers receive it and never go looking for datasets
or configs themselves.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cascade.core.errors import CascadeError
from cascade.core.executor import Executor, LocalExecutor
from cascade.core.paths import resolve_data_dir
from cascade.core.store import ArtifactStore


@dataclass(frozen=True)
class Context:
    store: ArtifactStore
    corpus: Any = None  # cascade.eval.datasets.Corpus, or None for collections without documents
    data_dir: Path | None = None
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    progress: bool = True  # bars on a terminal
    seed: int = 42
    log_progress: bool = False  # stderr is no terminal: long corpus work logs a line now and then instead
    executor: Executor = field(default_factory=LocalExecutor)  # where batch work runs; never in a cache key

    @classmethod
    def open(
        cls,
        data_dir: str | Path | None = None,
        cache_dir: str | Path = ".cascade",
        threads: int | None = None,
        progress: bool = True,
        executor: Executor | None = None,
    ) -> Context:
        if threads is not None and threads < 1:  # 0 is not "all cores", and a negative count is no count
            raise CascadeError(f"threads: must be at least 1, not {threads}")
        terminal = sys.stderr.isatty()
        return cls(
            store=ArtifactStore(cache_dir),
            data_dir=resolve_data_dir(data_dir),
            threads=threads or os.cpu_count() or 1,
            progress=progress and terminal,
            log_progress=progress and not terminal,
            executor=executor or LocalExecutor(),
        )

    @property
    def corpus_progress(self) -> bool:
        """Whether long corpus work reports its progress: a bar on a terminal, a log line elsewhere."""
        return self.progress or self.log_progress

    def for_run(self, corpus: Any, seed: int) -> Context:
        """The same environment for one run: its corpus and its seed. A corpus file's fingerprint is remembered in
        the store, so the next process does not hash the file again."""
        remember = getattr(corpus, "remember_in", None)
        if remember is not None:
            remember(self.store.root / "fingerprints")
        return replace(self, corpus=corpus, seed=seed)

    @property
    def log_dir(self) -> Path:
        return self.store.root / "logs"

    def require_corpus(self, stage: str) -> Any:
        if self.corpus is None:
            raise CascadeError(f"stage '{stage}' needs a corpus, and this dataset has none")
        return self.corpus
