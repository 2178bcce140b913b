"""SPLADE-style sparse encoding: `log1p(relu(MLM logits))`, max-pooled over the real tokens of each text.

The cost of a small SPLADE is its vocabulary projection (30,522 outputs per token), so the fast path
- runs the model with its output projection swapped for the identity, getting the MLM head's hidden states;
- projects only the real (non-padding) tokens (those of several texts per matrix product), takes each text's
  max over its positions right away, and adds the bias after the max; `log1p(relu(.))` is monotone, so
  `max(log1p(relu(h W + b)))` = `log1p(relu(max(h W) + b))`;
- batches texts of similar length, in bf16 autocast where the CPU has AMX (or on CUDA).
`encode_reference` is the straightforward loop that materialises batch x length x vocab logits: the oracle the
fast path is tested and benchmarked against.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cascade.core.errors import CascadeError
from cascade.indexes.batching import length_sorted_batches, pad_tensors
from cascade.indexes.models import autocast_dtype, model_fingerprint, pick_device, resolve_model
from cascade.indexes.sparse_vectors import SparseVectors


@dataclass
class SparseEncoder:
    """A loaded masked-LM: `model` returns the MLM head's hidden states; `weight`/`bias` are its vocab projection."""

    name: str
    resolved: str
    fingerprint: str
    tokenizer: Any
    model: Any
    weight: Any  # torch.Tensor [vocab, hidden]
    bias: Any  # torch.Tensor [vocab]
    device: str
    dtype: Any  # torch autocast dtype, or None for fp32

    @property
    def dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def precision(self) -> str:
        return "fp32" if self.dtype is None else str(self.dtype).removeprefix("torch.")

    def identity(self) -> dict:
        """What decides the vectors besides the texts: part of every content address built from them."""
        return {"encoder": self.fingerprint, "device": self.device.split(":")[0], "precision": self.precision}


def _is_masked_lm(config: Any) -> bool:
    return any(a.endswith("ForMaskedLM") for a in (getattr(config, "architectures", None) or []))


def _load_masked_lm(name: str, resolved: str):
    """The tokenizer and masked-LM, or a one-line error when the model has no trained MLM head."""
    import transformers
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise CascadeError(f"cannot load encoder '{name}' ({str(exc).splitlines()[0]})", where="encoder") from None
    if not _is_masked_lm(config):
        found = ", ".join(getattr(config, "architectures", None) or [config.model_type])
        raise CascadeError(
            f"encoder '{name}' is not a masked language model ({found}); a SPLADE encoder needs an MLM head "
            "(*ForMaskedLM)",
            where="encoder",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model, info = AutoModelForMaskedLM.from_pretrained(resolved, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise CascadeError(f"cannot load encoder '{name}' ({str(exc).splitlines()[0]})", where="encoder") from None
    head = model.get_output_embeddings()
    missing = [k for k in info.get("missing_keys", []) if k.startswith(("cls.", "lm_head", "vocab_", "predictions"))]
    if head is None or missing:
        raise CascadeError(
            f"encoder '{name}' has no trained MLM head (missing {', '.join(missing[:3]) or 'output embeddings'})",
            where="encoder",
        )
    return tokenizer, model


def _swap_for_identity(model: Any, module: Any) -> None:
    import torch

    for parent in model.modules():
        for child_name, child in parent.named_children():
            if child is module:
                setattr(parent, child_name, torch.nn.Identity())
                return
    raise CascadeError("cannot find the encoder's output projection", where="encoder")


def load_sparse_encoder(name: str, device: str = "auto", precision: str = "auto") -> SparseEncoder:
    """Load `name` (`splade-tiny`, a local folder or a Hugging Face id) for fast sparse encoding."""
    import torch

    resolved = resolve_model(name, where="encoder")
    tokenizer, model = _load_masked_lm(name, resolved)
    head = model.get_output_embeddings()
    weight = head.weight.detach().clone()
    bias = head.bias.detach().clone() if head.bias is not None else torch.zeros(weight.shape[0])
    _swap_for_identity(model, head)
    device = pick_device(device)
    model.eval().to(device)
    return SparseEncoder(
        name=name,
        resolved=resolved,
        fingerprint=model_fingerprint(resolved),
        tokenizer=tokenizer,
        model=model,
        weight=weight.to(device),
        bias=bias.float().to(device),
        device=device,
        dtype=autocast_dtype(device, precision),
    )


def _autocast(encoder: SparseEncoder):
    import torch

    device_type = "cuda" if encoder.device.startswith("cuda") else "cpu"
    return torch.autocast(device_type, dtype=encoder.dtype or torch.float32, enabled=encoder.dtype is not None)


GEMM_ROWS = 512  # real tokens per projection: small products (one short text) ran at a third of the speed


def _forward_fast(encoder: SparseEncoder, input_ids, mask) -> np.ndarray:
    """[batch, vocab] weights: project the real tokens only, max at once, bias and activation after.

    The real tokens of consecutive texts are projected together, about GEMM_ROWS rows per product, and each
    text's max is taken over its own rows of that product.
    """
    import torch

    device = encoder.device
    input_ids, mask = input_ids.to(device), mask.to(device)
    with torch.inference_mode(), _autocast(encoder):
        hidden = encoder.model(input_ids=input_ids, attention_mask=mask).logits  # MLM head states [B, L, H]
        weight = encoder.weight.to(hidden.dtype) if encoder.dtype is None else encoder.weight
        keep = mask.bool()
        flat = hidden[keep]  # real tokens, text by text
        lengths = keep.sum(1).tolist()
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        pooled = torch.empty((len(lengths), weight.shape[0]), dtype=torch.float32, device=device)
        first = 0
        while first < len(lengths):
            last = first + 1
            while last < len(lengths) and offsets[last + 1] - offsets[first] <= GEMM_ROWS:
                last += 1
            logits = flat[offsets[first] : offsets[last]] @ weight.T
            for t in range(first, last):
                pooled[t] = logits[offsets[t] - offsets[first] : offsets[t + 1] - offsets[first]].amax(0).float()
            first = last
    return torch.log1p(torch.relu(pooled + encoder.bias)).cpu().numpy()


def _rows(dense: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    rows, cols = np.nonzero(dense > 0)
    splits = np.searchsorted(rows, np.arange(1, dense.shape[0]))
    values = dense[rows, cols]
    return list(zip(np.split(cols.astype(np.int32), splits), np.split(values.astype(np.float32), splits), strict=True))


def encode(
    encoder: SparseEncoder,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "sparse encode",
) -> SparseVectors:
    """Encode texts into sparse vectors (rows in input order) with the fast path."""
    from tqdm.auto import tqdm

    rows: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(texts)
    tokens = encoder.tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)
    ids = tokens["input_ids"]
    pad = encoder.tokenizer.pad_token_id or 0
    small = sum(len(x) for x in ids) < SMALL_INPUT_TOKENS
    with (
        _one_thread(encoder.device) if small else contextlib.nullcontext(),
        tqdm(total=len(texts), desc=desc, unit="text", disable=not progress, leave=False) as bar,
    ):
        for batch in length_sorted_batches([len(x) for x in ids], batch_size):
            for i, row in zip(batch, _rows(_forward_fast(encoder, *pad_tensors(ids, batch, pad))), strict=True):
                rows[i] = row
            bar.update(len(batch))
    return SparseVectors.from_rows(rows, encoder.dim)  # type: ignore[arg-type]


SMALL_INPUT_TOKENS = 2048  # below this (a query, a few queries) one CPU thread is faster than a thread pool


@contextlib.contextmanager
def _one_thread(device: str) -> Iterator[None]:
    """Encode small inputs on one CPU thread: the pool's hand-offs cost more than the work (143 ms vs 10 ms for
    one query on a busy 2-core machine)."""
    import torch

    if device.startswith("cuda"):
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def encode_reference(
    model: Any, tokenizer: Any, texts: Sequence[str], *, max_length: int, batch_size: int = 32
) -> SparseVectors:
    """The straightforward loop: full [batch, length, vocab] logits, masked, max-pooled; batches in input order."""
    import torch

    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            activated = torch.log1p(torch.relu(logits)) * enc["attention_mask"].unsqueeze(-1)
            rows += _rows(activated.amax(1).numpy())
    return SparseVectors.from_rows(rows, model.config.vocab_size)


def load_reference_model(name: str):
    """The unmodified masked-LM and its tokenizer, for `encode_reference`."""
    return _load_masked_lm(name, resolve_model(name, where="encoder"))
