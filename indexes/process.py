"""What a build does to this process: where native libraries' output goes, and how much memory the build takes.

Java (Lucene) and Rust (Seismic) write progress straight to file descriptors 1 and 2, which Python-level
redirection cannot catch; `output_to` swaps the descriptors themselves. `PeakMemory` samples the resident set
size while a build runs, because the process-wide high-water mark (`ru_maxrss`) cannot tell one build from another.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Send everything written to file descriptors 1 and 2 (by any library, in any language) to `log`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; the high-water mark elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Context manager: `peak_bytes` is the largest RSS seen inside the block, `extra_bytes` its rise over the start.

    A daemon thread samples every `interval` seconds; short spikes between samples can be missed, so the
    figure is a lower bound, close for builds that hold their memory for more than a few samples.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self.start_bytes = self.peak_bytes = rss_bytes()
        self._thread = threading.Thread(target=self._sample, name="cascade-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_bytes = max(self.peak_bytes, rss_bytes())

    @property
    def extra_bytes(self) -> int:
        return max(self.peak_bytes - self.start_bytes, 0)


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under `folder`: an index's size on disk."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
