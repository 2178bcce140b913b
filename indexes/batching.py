"""Length-sorted batches and right padding: the one copy every transformer encoder and scorer uses.

Texts are tokenised once, their indices sorted by token length (longest first, stable, so equal inputs give equal
batches and hence equal floats) and cut into batches that need almost no padding. Used by the dense and sparse
encoders here and by `cascade.rankers.cross_encoder` (rankers may import indexes, never the reverse).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first), so padding stays small; stable order."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_rows(sequences: Sequence[Sequence[int]], rows: Sequence[int], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, attention mask) of the given rows as right-padded int64 arrays [len(rows), longest row]."""
    width = max(len(sequences[r]) for r in rows)
    values = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        n = len(sequences[r])
        values[i, :n] = sequences[r]
        mask[i, :n] = 1
    return values, mask


def pad_tensors(sequences: Sequence[Sequence[int]], rows: Sequence[int], pad_id: int):
    """`pad_rows` as two torch.long tensors (input_ids, attention_mask), sharing the arrays' memory."""
    import torch

    values, mask = pad_rows(sequences, rows, pad_id)
    return torch.from_numpy(values), torch.from_numpy(mask)


def batch_groups(lengths: Sequence[int], batch_size: int, per_call: int) -> list[np.ndarray]:
    """The rows of each remote call of an executor: whole length-sorted batches, in the order a local run makes
    them. A group is in non-increasing length order, so the worker's own (stable) sort keeps it as it is and cuts
    the same batches, and every score equals the local one."""
    order = np.concatenate(length_sorted_batches(lengths, batch_size)) if len(lengths) else np.zeros(0, np.int64)
    step = max(per_call // batch_size, 1) * batch_size
    return [order[i : i + step] for i in range(0, len(order), step)]
