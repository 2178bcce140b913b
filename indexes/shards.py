"""Corpus encoding in shards of a fixed number of passages: memory bounded by the shard, and a killed encode
resumes at the first unfinished shard.

A shard's files are written into the store's `shards/<kind>/<key>/` folder, each atomically, and then its record
(`NNNNN.json`: document count, first and last docno, and each file's size and sha256) is written last: a shard
with a record is done. On a rerun, a recorded shard whose files still match their record is reused; one whose
file was truncated or changed is said on stderr and encoded again. Once every shard is done, the kind's
`assemble` streams them into the final artifact, and the shard folder goes.

The kind's `worker` (a `cascade.core.executor.WorkerSpec`: texts -> result) is the one function per kind of work
that runs on a shard, and the executor (`ctx.executor`: this process, or Ray actors) decides where. Shard
boundaries and each shard's batches are fixed by the corpus order and the shard size, never by who encoded it, so
a resumed or distributed encode equals an uninterrupted local one byte for byte. Shards are written and recorded
here, in the driver, as their results come back: a worker never writes into the store.
"""

from __future__ import annotations

import json
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cascade.core.atomic import atomic_file, write_text
from cascade.core.digest import file_digest
from cascade.core.errors import warn
from cascade.core.executor import Executor, LocalExecutor, WorkerSpec
from cascade.core.progress import Progress
from cascade.indexes.process import PeakMemory


@dataclass
class ShardKind:
    """What one kind of corpus work does with a shard: encode its texts (`worker`, run by the executor), write
    the result (returning the file names it wrote, all starting with the stem), and how it names itself."""

    name: str
    worker: WorkerSpec
    write: Callable[[Any, Path, str], list[str]]


@dataclass
class ShardReport:
    records: list[dict] = field(default_factory=list)
    encoded: int = 0
    reused: int = 0
    repaired: int = 0
    peak_rss_mb: float = 0.0
    workers: dict[int, str] = field(default_factory=dict)  # shard index -> the worker that encoded it

    def facts(self) -> dict:
        """For the artifact's card: how many shards this build encoded and how many it found done, and the
        process's peak resident memory while it encoded (what the shard size bounds)."""
        return {
            "shards": len(self.records),
            "shards_encoded": self.encoded,
            "shards_reused": self.reused,
            "shards_repaired": self.repaired,
            "encode_peak_rss_mb": self.peak_rss_mb,
            "shard_workers": [self.workers.get(r["index"], "reused") for r in self.records],
        }


def chunks(docs: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _stem(index: int) -> str:
    return f"{index:05d}"


def _damage(folder: Path, record: dict, chunk: list[dict]) -> str | None:
    """Why a recorded shard cannot be reused, or None."""
    if record.get("documents") != len(chunk) or record.get("first") != chunk[0]["docno"]:
        return "its record does not match the corpus"
    if record.get("last") != chunk[-1]["docno"]:
        return "its record does not match the corpus"
    for name, facts in record.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != facts.get("bytes"):
            return f"{name} has {size:,} bytes, its record says {facts.get('bytes'):,}"
        if file_digest(path) != facts.get("sha256"):
            return f"{name} does not match its recorded sha256"
    return None


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def encode_in_shards(
    folder: Path,
    docs: Iterable[dict],
    shard_size: int,
    kind: ShardKind,
    text: Callable[[dict], str],
    *,
    total: int | None = None,
    progress: bool = False,
    executor: Executor | None = None,
) -> ShardReport:
    """Encode the corpus shard by shard into `folder`, reusing the shards a previous run finished."""
    folder.mkdir(parents=True, exist_ok=True)
    executor = executor or LocalExecutor()
    report = ShardReport()
    out: deque[tuple[int, list[str]]] = deque()  # (index, docnos) of the shards sent out, in order

    def to_encode(bar: Progress) -> Iterator[list[str]]:
        """The texts of each shard that is not done yet; a done one is recorded as reused on the way."""
        for index, chunk in enumerate(chunks(docs, shard_size)):
            record_path = folder / f"{_stem(index)}.json"
            record = _read_record(record_path) if record_path.exists() else None
            if record is not None:
                why = _damage(folder, record, chunk)
                if why is None:
                    report.records.append(record)
                    report.reused += 1
                    bar.update(len(chunk))
                    continue
                warn(f"{kind.name} shard {index} ({folder / _stem(index)}.*): {why}; encoding it again")
                report.repaired += 1
                record_path.unlink()
            out.append((index, [d["docno"] for d in chunk]))
            yield [text(doc) for doc in chunk]

    progress_bar = Progress(f"{kind.name}: encoding corpus", total=total, unit="passage", enabled=progress)
    with PeakMemory(interval=0.2) as memory, progress_bar as bar:
        for result, worker in executor.map(kind.worker, to_encode(bar)):
            index, docnos = out.popleft()
            report.records.append(_write_shard(folder, index, docnos, kind.write(result, folder, _stem(index))))
            report.workers[index] = worker
            report.encoded += 1
            bar.update(len(docnos))
    report.records.sort(key=lambda r: r["index"])
    report.peak_rss_mb = round(memory.peak_bytes / 2**20, 1)
    return report


def _write_shard(folder: Path, index: int, docnos: list[str], names: list[str]) -> dict:
    """The shard's docnos, then its record, written last: a shard with a record is done."""
    names = [*names, write_docnos(folder, _stem(index), docnos)]
    record = {
        "index": index,
        "documents": len(docnos),
        "first": docnos[0],
        "last": docnos[-1],
        "files": {n: {"bytes": (folder / n).stat().st_size, "sha256": file_digest(folder / n)} for n in names},
    }
    write_text(folder / f"{_stem(index)}.json", json.dumps(record, indent=1) + "\n")
    return record


def shard_files(folder: Path, report: ShardReport, suffix: str) -> list[Path]:
    """The file of each shard, in order, whose name ends with `suffix`."""
    return [folder / f"{_stem(r['index'])}{suffix}" for r in report.records]


def save_array(folder: Path, name: str, array: Any) -> str:
    """One `.npy` file, written atomically."""
    import numpy as np

    with atomic_file(folder / name, "wb") as handle:
        np.save(handle, array)
    return name


def stream_npy(path: Path, dtype: Any, shape: tuple[int, ...], parts: Iterable[Any]) -> None:
    """One `.npy` file written part by part with plain writes, atomically.

    Writing through `np.lib.format.open_memmap` would map every written page into this process: its resident
    set would grow with the corpus, which is what encoding in shards is meant to prevent. The header is the one
    `np.save` writes, so the file is the same byte for byte."""
    import numpy as np

    dtype = np.dtype(dtype)
    with atomic_file(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        )
        for part in parts:
            handle.write(np.ascontiguousarray(part, dtype=dtype).tobytes())


def write_docnos(folder: Path, stem: str, docnos: list[str]) -> str:
    name = f"{stem}.docnos.txt"
    with atomic_file(folder / name) as handle:
        handle.write("".join(f"{d}\n" for d in docnos))
    return name


def concat_docnos(folder: Path, report: ShardReport, out: Path) -> None:
    """The shards' docnos, in corpus order, streamed into one file."""
    with open(out, "wb") as target:
        for path in shard_files(folder, report, ".docnos.txt"):
            with open(path, "rb") as source:
                shutil.copyfileobj(source, target)


def discard(folder: Path) -> None:
    """The shards of a finished build: its artifact now holds everything (cascade wrote every file here)."""
    shutil.rmtree(folder, ignore_errors=True)
