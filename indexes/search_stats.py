"""How good and how fast an approximate search is: accuracy@k against exact search, per-query latency.

Shared by the `sparse` stage (figures into the manifest) and the benchmarks, so both report the same quantities.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def accuracy_at(approx: Sequence[np.ndarray], exact: Sequence[np.ndarray], k: int) -> tuple[float | None, int]:
    """Mean share of each query's exact top-k that the approximate top-k returns, and how many queries counted.

    Queries whose exact result is empty (no document shares a term with them) have nothing to find and are
    left out; None when no query counts.
    """
    shares = []
    for found, truth in zip(approx, exact, strict=True):
        truth = np.asarray(truth)[:k]
        if len(truth):
            shares.append(len(np.intersect1d(np.asarray(found)[:k], truth)) / len(truth))
    return (float(np.mean(shares)) if shares else None), len(shares)


def latency_summary(seconds: Sequence[float], prefix: str) -> dict[str, float]:
    """mean, p50 and p99 in milliseconds under keys `<prefix>_mean_ms`, ..."""
    if not len(seconds):
        return {}
    ms = 1000.0 * np.asarray(seconds, dtype=np.float64)
    return {
        f"{prefix}_mean_ms": round(float(ms.mean()), 4),
        f"{prefix}_p50_ms": round(float(np.percentile(ms, 50)), 4),
        f"{prefix}_p99_ms": round(float(np.percentile(ms, 99)), 4),
    }


def time_queries(
    search: Callable[[Any], Any],
    queries: Sequence[Any],
    threads: int = 1,
    on_thread_exit: Callable[[], None] | None = None,
    warmup: int = 5,
) -> tuple[list[float], float]:
    """Per-query seconds of `search(query)` with `threads` concurrent callers, and the wall time of the whole set.

    Each caller takes every `threads`-th query; with one thread this is plain single-query latency. With more,
    a per-query figure is the latency a query sees under that concurrency, and len/wall the throughput. The
    first `warmup` queries run once untimed (caches, lazy loading).
    """
    for query in queries[:warmup]:
        search(query)
    times = [0.0] * len(queries)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(offset, len(queries), threads):
                started = time.perf_counter()
                search(queries[i])
                times[i] = time.perf_counter() - started
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        finally:
            if on_thread_exit is not None and threads > 1:
                on_thread_exit()

    started = time.perf_counter()
    if threads <= 1:
        work(0)
    else:
        workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return times, wall


def repeated(
    search: Callable[[Any], Any],
    queries: Sequence[Any],
    threads: int,
    repeats: int,
    on_thread_exit: Callable[[], None] | None = None,
) -> tuple[list[float], float]:
    """Per-query median over `repeats` passes (a pass preempted by another process does not decide a query's
    figure), and the median wall time of a pass."""
    passes = [time_queries(search, queries, threads, on_thread_exit, warmup=5 if r == 0 else 0) for r in range(repeats)]
    per_query = np.median(np.array([times for times, _ in passes]), axis=0).tolist() if queries else []
    return per_query, float(np.median([wall for _, wall in passes]))


def latency_stats(
    search: Callable[[Any], Any],
    queries: Sequence[Any],
    threads: int,
    on_thread_exit: Callable[[], None] | None = None,
    repeats: int = 3,
) -> dict[str, float]:
    """Single-threaded latency, and latency and throughput with `threads` callers (when more than one).

    Each query runs `repeats` times; its latency is the median of its runs.
    """
    stats: dict[str, float] = {"latency_repeats": repeats}
    times, wall = repeated(search, queries, 1, repeats)
    stats.update(latency_summary(times, "latency_1t"))
    stats["qps_1t"] = round(len(queries) / wall, 2) if wall > 0 else 0.0
    if threads > 1:
        times, wall = repeated(search, queries, threads, repeats, on_thread_exit)
        stats.update(latency_summary(times, "latency_mt"))
        stats["qps_mt"] = round(len(queries) / wall, 2) if wall > 0 else 0.0
        stats["threads_mt"] = threads
    return stats
