"""Progress of long work: a tqdm bar with throughput and ETA on a terminal, and a log line every `every` seconds
when stderr is not one (a batch job's log, CI), so hours of corpus work never run silent."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    def __init__(
        self, desc: str, total: int | None = None, unit: str = "it", enabled: bool = True, every: float = 30.0
    ) -> None:
        self.desc, self.total, self.unit, self.enabled, self.every = desc, total, unit, enabled, every
        self.done = 0
        self._bar: Any = None
        self._started = self._logged = time.monotonic()

    def __enter__(self) -> Progress:
        if self.enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, leave=False, dynamic_ncols=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and exc[0] is None and time.monotonic() - self._started >= self.every:
            self._log(final=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._logged >= self.every:
            self._log()

    def track(self, items: Iterable[T]) -> Iterator[T]:
        for item in items:
            yield item
            self.update()

    def _log(self, final: bool = False) -> None:
        self._logged = time.monotonic()
        seconds = max(self._logged - self._started, 1e-9)
        rate = self.done / seconds
        line = f"{self.desc}: {self.done:,}"
        if self.total:
            line += f"/{self.total:,} ({100 * self.done / self.total:.1f}%)"
        line += f" {self.unit}s, {rate:,.1f} {self.unit}/s, {seconds:,.0f} s"
        if self.total and rate > 0 and not final:
            line += f", ETA {(self.total - self.done) / rate:,.0f} s"
        print(line, file=sys.stderr, flush=True)
