"""Dense bi-encoder: text -> normalised vectors, corpus embeddings on disk, FAISS indexes over them.

The encoder follows the model's own sentence-transformers configuration (pooling mode, normalisation), so
cascade's vectors equal `SentenceTransformer.encode`'s. Speed comes from tokenising once, sorting by length
(little padding), and bf16 autocast where the CPU has AMX (or fp16/bf16 on CUDA).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cascade.core.errors import CascadeError
from cascade.core.executor import Executor, WorkerSpec
from cascade.indexes.batching import batch_groups, length_sorted_batches, pad_tensors
from cascade.indexes.models import autocast_dtype, pick_device
from cascade.indexes.shards import ShardReport, concat_docnos, save_array, shard_files, stream_npy


@dataclass
class Encoder:
    """A loaded bi-encoder: tokenizer, transformer, pooling, device."""

    tokenizer: object
    model: object
    pooling: str  # "mean" | "cls" | "max"
    normalize: bool
    device: str
    dtype: object  # torch dtype for autocast, or None


def pooling_config(folder: str) -> tuple[str, bool]:
    """Read sentence-transformers' modules.json / 1_Pooling; a plain transformer folder gets mean + normalise."""
    path = Path(folder)
    modules = path / "modules.json"
    if not modules.is_file():
        return "mean", True
    entries = json.loads(modules.read_text())
    normalize = any(e.get("type", "").endswith("Normalize") for e in entries)
    pooling = "mean"
    for entry in entries:
        if entry.get("type", "").endswith("Pooling"):
            config = json.loads((path / entry["path"] / "config.json").read_text())
            if config.get("pooling_mode_cls_token"):
                pooling = "cls"
            elif config.get("pooling_mode_max_tokens"):
                pooling = "max"
    return pooling, normalize


def load_encoder(resolved: str, device: str, precision: str = "auto") -> Encoder:
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()  # its weight-loading bar is noise in cascade's output

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model = AutoModel.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise CascadeError(f"cannot load model '{resolved}' ({str(exc).splitlines()[0]})", where="model") from None
    model.eval().to(device)
    torch.manual_seed(0)
    pooling, normalize = pooling_config(resolved) if Path(resolved).is_dir() else ("mean", True)
    return Encoder(tokenizer, model, pooling, normalize, device, autocast_dtype(device, precision))


def encode(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
    progress: bool = False,
    desc: str = "encode",
) -> np.ndarray:
    """Encode texts into float32 vectors, in input order."""
    from tqdm.auto import tqdm

    if not len(texts):
        return np.zeros((0, encoder.model.config.hidden_size), dtype=np.float32)
    tokens = encoder.tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)
    ids = tokens["input_ids"]
    out = np.zeros((len(texts), encoder.model.config.hidden_size), dtype=np.float32)
    pad = encoder.tokenizer.pad_token_id or 0
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress, leave=False) as bar:
        for batch in length_sorted_batches([len(x) for x in ids], batch_size):
            out[batch] = _forward(encoder, *pad_tensors(ids, batch, pad))
            bar.update(len(batch))
    return out


def _forward(encoder: Encoder, input_ids, mask) -> np.ndarray:
    import torch

    device = encoder.device
    with (
        torch.inference_mode(),
        torch.autocast(
            device_type="cuda" if device.startswith("cuda") else "cpu",
            dtype=encoder.dtype or torch.float32,
            enabled=encoder.dtype is not None,
        ),
    ):
        hidden = encoder.model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    hidden = hidden.float()
    m = mask.to(device).unsqueeze(-1).to(hidden.dtype)
    if encoder.pooling == "cls":
        pooled = hidden[:, 0]
    elif encoder.pooling == "max":
        pooled = hidden.masked_fill(m == 0, -1e9).amax(1)
    else:
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    if encoder.normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return pooled.cpu().numpy()


@functools.cache
def shared_encoder(resolved: str, device: str, precision: str) -> Encoder:
    """One loaded encoder per (model, device, precision) and process: stages and workers share it."""
    return load_encoder(resolved, device, precision)


def text_encoder(
    resolved: str, device: str, precision: str, batch_size: int, max_length: int, threads: int, dtype: str = "float32"
) -> Callable[[list[str]], np.ndarray]:
    """A worker's function (`cascade.core.executor.WorkerSpec`): texts -> vectors. `device` is resolved where the
    worker runs (`auto`: its GPU if it has one); torch runs on the run's `threads` (`cascade.core.executor.threads`
    says why)."""
    import torch

    encoder = shared_encoder(resolved, pick_device(device), precision)

    def encode_texts(texts: list[str]) -> np.ndarray:
        torch.set_num_threads(threads)
        return encode(encoder, texts, batch_size=batch_size, max_length=max_length).astype(dtype)

    return encode_texts


def write_embeddings(vectors: np.ndarray, folder: Path, stem: str) -> list[str]:
    """A shard of corpus embeddings: its float16 vectors in `NNNNN.npy` (`cascade.indexes.shards`)."""
    return [save_array(folder, f"{stem}.npy", vectors)]


def encode_spread(
    executor: Executor,
    worker: WorkerSpec,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
    dim: int,
) -> np.ndarray:
    """`encode` on the executor's workers: the texts go out in groups of the very batches a local `encode` makes
    (`cascade.indexes.batching.batch_groups`), so every vector equals the local one."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if not len(texts):
        return out
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    groups = batch_groups(lengths, batch_size, executor.settings.batch_size)
    results = executor.map(worker, ([texts[i] for i in group] for group in groups))
    for group, (vectors, _) in zip(groups, results, strict=True):
        out[group] = vectors
    return out


def assemble_embeddings(shards: Path, report: ShardReport, out: Path) -> dict:
    """Stream the shards into one float16 `embeddings.npy` (opened later as a memmap) and `docnos.txt`."""
    paths = shard_files(shards, report, ".npy")
    shapes = [np.load(path, mmap_mode="r").shape for path in paths]
    rows = sum(int(shape[0]) for shape in shapes)
    dim = int(shapes[0][1]) if shapes else 0
    stream_npy(out / "embeddings.npy", np.float16, (rows, dim), (np.load(path) for path in paths))
    concat_docnos(shards, report, out / "docnos.txt")
    return {"documents": rows, "dim": dim, "dtype": "float16", **report.facts()}


def load_embeddings(folder: Path) -> tuple[list[str], np.ndarray]:
    docnos = (folder / "docnos.txt").read_text(encoding="utf-8").splitlines()
    return docnos, np.load(folder / "embeddings.npy", mmap_mode="r")


FAISS_ADD_ROWS = 65_536  # vectors converted to float32 and added at a time


def build_faiss(vectors: np.ndarray, kind: str, hnsw_m: int, ef_construction: int, threads: int):
    """Exact inner product (`flat`) or HNSW over inner product.

    The (memory-mapped float16) vectors are added in slices: FAISS keeps its own float32 copy of every vector,
    so converting the whole matrix first would hold the corpus twice."""
    import faiss

    faiss.omp_set_num_threads(threads)
    dim = int(vectors.shape[1])
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
    for start in range(0, int(vectors.shape[0]), FAISS_ADD_ROWS):
        index.add(np.ascontiguousarray(vectors[start : start + FAISS_ADD_ROWS], dtype=np.float32))
    return index


def save_faiss(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def load_faiss(path: Path):
    import faiss

    return faiss.read_index(str(path))


def search_faiss(index, queries: np.ndarray, k: int, ef_search: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    faiss.omp_set_num_threads(threads)
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(ef_search, k)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
