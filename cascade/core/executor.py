"""Where batch work runs: in this process (`local`, the default) or on a Ray cluster (`ray`).

All of it goes through one call, `Executor.map(worker, items)`. A `WorkerSpec` says how a worker builds its
function once (load a model), and each item is one unit of work: a corpus shard's texts, or a group of
length-sorted batches of rerank work. Results come back in item order, with the name of the worker that made
each. The items are cut by the data (shard boundaries, the batches a local run would make), never by which worker
is free, so results do not depend on the executor, and the executor never enters a cache key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from cascade.core.errors import CascadeError

EXECUTORS = ("local", "ray")

# Why a worker's function gets the run's thread count (`--threads`, default all cores) rather than the CPUs Ray
# gave it: torch's CPU kernels can round differently with the number of threads. Measured here: a MiniLM
# cross-encoder in fp32 scored 1 of 990 sample pairs differently on 1 and 2 threads (3e-9), which changes a run
# file. Workers compute with the same count as the local run, so results match byte for byte; for speed on a
# cluster, pass `--threads` equal to --cpus-per-worker (a local run with that `--threads` gives the same files).


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker makes its function: `setup(*args)` returns `fn(item) -> result`.

    `setup` must be a module-level function (a remote worker imports it by name) and `args` plain values, so
    the spec pickles small and the same spec finds the same loaded model again."""

    name: str
    setup: Callable[..., Callable[[Any], Any]]
    args: tuple = ()


@dataclass(frozen=True)
class ExecutorSettings:
    """The `--executor` options (or a config's `executor:` block). Never part of a cache key: where work runs
    does not change what it computes."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None  # a running Ray cluster (host:port or `auto`); None starts one for the run
    workers: int | None = None  # default: as many as the cluster's CPUs (or GPUs) allow
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    batch_size: int = 512  # texts or pairs per remote call of rerank work (whole model batches); a shard is one
    connect_timeout: float = 20.0

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise CascadeError(f"--executor: unknown executor {self.kind!r}; choose one of {', '.join(EXECUTORS)}")
        if self.workers is not None and self.workers < 1:
            raise CascadeError(f"--workers: must be at least 1, not {self.workers}")
        if self.cpus_per_worker <= 0:
            raise CascadeError(f"--cpus-per-worker: must be more than 0, not {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise CascadeError(f"--gpus-per-worker: must be 0 or more, not {self.gpus_per_worker}")
        if self.batch_size < 1:
            raise CascadeError(f"--executor-batch-size: must be at least 1, not {self.batch_size}")
        if self.connect_timeout <= 0:
            raise CascadeError(f"--ray-timeout: must be more than 0 seconds, not {self.connect_timeout}")
        if self.kind == "local" and self.address is not None:
            raise CascadeError("--ray-address: given with --executor local; add --executor ray")


class Executor(Protocol):
    settings: ExecutorSettings

    @property
    def distributed(self) -> bool: ...

    def map(self, worker: WorkerSpec, items: Iterable[Any]) -> Iterator[tuple[Any, str]]:
        """(result, worker name) for each item, in item order; items are consumed lazily."""
        ...

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` where the workers run (e.g. which device and precision they resolve `auto` to)."""
        ...

    def facts(self) -> dict: ...

    def close(self) -> None: ...


@functools.cache
def _local_function(worker: WorkerSpec) -> Callable[[Any], Any]:
    return worker.setup(*worker.args)


class LocalExecutor:
    """Everything in this process, one item after another (each worker's function is built once)."""

    distributed = False

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or ExecutorSettings()

    def map(self, worker: WorkerSpec, items: Iterable[Any]) -> Iterator[tuple[Any, str]]:
        fn = _local_function(worker)
        for item in items:
            yield fn(item), "local"

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def facts(self) -> dict:
        return {"kind": "local"}

    def close(self) -> None:
        pass


def open_executor(settings: ExecutorSettings | None = None) -> Executor:
    """The executor the settings name; Ray is imported only when it is chosen."""
    settings = settings or ExecutorSettings()
    if settings.kind == "local":
        return LocalExecutor(settings)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise CascadeError(
            "--executor ray: Ray is not installed; install it with: pip install 'cascade-ir[ray]'"
        ) from None
    from cascade.core.ray_executor import RayExecutor

    return RayExecutor(settings)
