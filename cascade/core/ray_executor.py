"""The Ray executor: `Executor.map` over a pool of Ray actors, each model loaded once per actor.

Why actors and not Ray Data's `map_batches`: the work is already cut into items by the data (shards, groups of
model batches), results must come back in item order to be written as the local run writes them, and a lost
item is retried by us, so the manifest can say which worker made what. Ray Data adds read tasks that need CPUs
of their own: an actor pool of whole-CPU actors on a 2-CPU machine deadlocked (the read tasks never ran), and a
probe on a two-node loopback cluster hung once. Plain actors with a bounded number of items in flight have
neither problem and need nothing Ray Data adds.

One pool serves the whole command: every stage's items go to the same workers, which load each stage's model
the first time they see it (a worker process starts and imports torch once, not once per stage, and no second
pool ever waits for CPUs the first one holds). A worker that dies (killed, out of memory, its node lost) is
replaced and its item run again, up to MAX_ATTEMPTS times; the item's result does not depend on the worker, so
the output stays the same.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError, WorkerCrashedError

from cascade.core.errors import CascadeError, warn
from cascade.core.executor import ExecutorSettings, WorkerSpec

MAX_ATTEMPTS = 3  # runs of one item before the map gives up
LOST = (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError)


@ray.remote
class _Worker:
    """One worker: builds each WorkerSpec's function the first time it sees the spec (loads its model) and keeps
    it. A setup error is raised by `run`, so it reaches the driver as the error it is, not as a dead worker."""

    def __init__(self, index: int) -> None:
        self.name = f"w{index}@{ray.get_runtime_context().get_node_id()[:8]}"
        self.functions: dict[WorkerSpec, Callable[[Any], Any]] = {}

    def run(self, spec: WorkerSpec, item: Any) -> tuple[Any, str]:
        if spec not in self.functions:
            self.functions[spec] = spec.setup(*spec.args)
        return self.functions[spec](item), self.name

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def pid(self) -> int:
        return os.getpid()


def check_reachable(address: str, timeout: float) -> None:
    """A `host:port` address must answer a TCP connection within `timeout`: ray.init would wait far longer."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise CascadeError(f"--ray-address: {address!r} is not host:port (or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise CascadeError(
            f"--ray-address: the Ray head at {address} did not answer within {timeout:g} s ({reason})"
        ) from None


class RayExecutor:
    distributed = True

    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.started = False
        self.retried = 0
        self._answers: dict[tuple, Any] = {}  # what `call` found where the workers run
        self.pool: list = []  # the workers (Ray actors), started on first use
        self.pids: list[int] = []  # the process of each worker (a test kills one)
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
            if settings.address is None:
                # "local": a new instance even where `ray start` left a cluster behind (ray.init() would join it)
                ray.init(address="local", num_cpus=os.cpu_count() or 1, **options)
                self.started = True
            else:
                check_reachable(settings.address, settings.connect_timeout)
                try:
                    ray.init(address=settings.address, **options)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise CascadeError(
                        f"--ray-address: cannot join the Ray cluster at {settings.address} ({reason})"
                    ) from None
        resources = ray.cluster_resources()
        self.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        self.cpus = float(resources.get("CPU", 0))
        self.gpus = float(resources.get("GPU", 0))
        self.workers = settings.workers or self._default_workers()
        self._check_resources()

    def _default_workers(self) -> int:
        s = self.settings
        count = int(self.cpus // s.cpus_per_worker)
        if s.gpus_per_worker:
            count = min(count, int(self.gpus // s.gpus_per_worker))
        return max(count, 1)

    def _check_resources(self) -> None:
        """Actors asking for more than the cluster has would wait forever: say so instead."""
        s = self.settings
        cpus, gpus = self.workers * s.cpus_per_worker, self.workers * s.gpus_per_worker
        if gpus > self.gpus:
            raise CascadeError(
                f"--gpus-per-worker: asked for {gpus:g} GPUs ({self.workers} workers x {s.gpus_per_worker:g}), "
                f"and the Ray cluster has {self.gpus:g}"
            )
        if cpus > self.cpus:
            raise CascadeError(
                f"--workers: asked for {cpus:g} CPUs ({self.workers} workers x {s.cpus_per_worker:g}), "
                f"and the Ray cluster has {self.cpus:g}"
            )

    def _actor(self, index: int):
        s = self.settings
        return _Worker.options(num_cpus=s.cpus_per_worker, num_gpus=s.gpus_per_worker, max_restarts=0).remote(index)

    def _workers(self) -> list:
        """The pool, started on first use; `pids` waits until every worker process is up."""
        if not self.pool:
            self.pool = [self._actor(i) for i in range(self.workers)]
            self.pids = ray.get([actor.pid.remote() for actor in self.pool])
        return self.pool

    def _stop_workers(self) -> None:
        """Kill the workers, and with them any remote work still running (after an error or Ctrl-C, Ray itself may
        be going down: what cannot be killed any more is gone already)."""
        for actor in self.pool:
            with contextlib.suppress(Exception):  # best effort on the way out
                ray.kill(actor)
        self.pool, self.pids = [], []

    def map(self, worker: WorkerSpec, items: Iterable[Any]) -> Iterator[tuple[Any, str]]:
        """Items go out one per idle worker, at most 2 x workers ahead of the next result due (so results waiting
        for an earlier one stay bounded); results come back in item order. Stopped early (an error, Ctrl-C), the
        map stops the workers, so no remote work goes on."""
        pool = self._workers()
        idle = deque(range(len(pool)))
        source = enumerate(items)
        again: deque[tuple[int, Any, int]] = deque()  # (index, item, attempts) of items whose worker was lost
        running: dict[Any, tuple[int, Any, int, int]] = {}  # ref -> (index, item, attempts, worker slot)
        done: dict[int, tuple[Any, str]] = {}
        due, exhausted, finished = 0, False, False
        try:
            while True:
                while idle:
                    if again:
                        index, item, attempts = again.popleft()
                    elif not exhausted and (not running or max(i for i, *_ in running.values()) < due + 2 * len(pool)):
                        try:
                            index, item = next(source)
                        except StopIteration:
                            exhausted = True
                            continue
                        attempts = 0
                    else:
                        break
                    slot = idle.popleft()
                    running[pool[slot].run.remote(worker, item)] = (index, item, attempts + 1, slot)
                if not running:
                    break
                (ref,), _ = ray.wait(list(running), num_returns=1)
                index, item, attempts, slot = running.pop(ref)
                try:
                    done[index] = ray.get(ref)
                except LOST as exc:
                    if attempts >= MAX_ATTEMPTS:
                        raise CascadeError(
                            f"{worker.name}: item {index} lost its Ray worker {attempts} times; giving up"
                        ) from None
                    warn(f"{worker.name}: a Ray worker was lost; item {index} runs again ({type(exc).__name__})")
                    self.retried += 1
                    ray.kill(pool[slot])
                    pool[slot] = self._actor(slot)
                    again.append((index, item, attempts))
                except RayTaskError as exc:
                    cause = exc.cause
                    raise cause if isinstance(cause, CascadeError) else exc from None
                idle.append(slot)
                while due in done:
                    yield done.pop(due)
                    due += 1
            finished = True
        finally:
            if not finished:
                self._stop_workers()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        key = (fn, args)
        if key not in self._answers:
            self._answers[key] = ray.get(self._workers()[0].call.remote(fn, *args))
        return self._answers[key]

    def facts(self) -> dict:
        s = self.settings
        return {
            "kind": "ray",
            "address": s.address or "local instance",
            "nodes": self.nodes,
            "cluster_cpus": self.cpus,
            "cluster_gpus": self.gpus,
            "workers": self.workers,
            "cpus_per_worker": s.cpus_per_worker,
            "gpus_per_worker": s.gpus_per_worker,
            "batch_size": s.batch_size,
            "items_retried": self.retried,
        }

    def close(self) -> None:
        if ray.is_initialized():
            self._stop_workers()
        if self.started and ray.is_initialized():
            ray.shutdown()
