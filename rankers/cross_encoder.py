"""Cross-encoder reranking (`cross_encoder`): a transformer reads query and passage together and gives one score.

    - bm25: {k: 1000}
    - cross_encoder: {model: "train:configs/train/cross-encoder.yaml", k: 100}

The model is any `AutoModelForSequenceClassification` with one output (an alias, a local folder, a Hugging Face
name, or a `train:` reference that the runner replaces by the trained model's folder). The top `k` documents of
each query are scored; the rest keep their order below them (standard reranking).

Input format, shared by training and inference (`pair_segments`):

    [CLS] query [SEP] passage [SEP]                      no instruction
    [CLS] query [SEP] instruction [SEP] passage [SEP]    with an `instruction` column

i.e. an instruction is appended to the query in the first segment, joined by the tokenizer's own separator token
(`[SEP]` for BERT), so the model sees it as a third span with segment id 0. At inference the query keeps at most a
quarter of `max_length` tokens and the instruction the rest of the first half, so a long query cannot push the
instruction out of the window. The passage is the corpus document's
title and body (`cascade.eval.datasets.doc_text`); pairs longer than `max_length` lose tokens from the longer side.

Speed: all pairs are tokenised in one call, sorted by token length (stable, so the batches and hence the scores
are deterministic) and cut into batches that need almost no padding; every batch goes through `map_batches`, the
one loop a distributed executor could replace. Precision is autocast over fp32 weights, the same mechanism on
both devices: bf16 (or fp16) on CUDA; on CPU bf16 only where `cascade.indexes.models.autocast_dtype` finds AMX
(emulated bf16 is slower than fp32), else fp32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from cascade.core.errors import CascadeError
from cascade.core.executor import Executor, WorkerSpec
from cascade.core.paths import TRAIN_PREFIX  # resolved by cascade.pipelines.train before the stage is built
from cascade.indexes.batching import batch_groups, length_sorted_batches, pad_rows
from cascade.indexes.docstore import docstore
from cascade.indexes.models import autocast_dtype, compute_label, model_fingerprint, pick_device, resolve_model
from cascade.rankers.base import Context, Params, Stage, cut_tokens
from cascade.rankers.dense import rerank_merge, split_top_k


class CrossEncoderParams(Params):
    model: str = Field(..., min_length=1, description="alias, local folder, Hugging Face name, or train:CONFIG")
    k: int = Field(100, gt=0, description="rerank the top k of the upstream run")
    batch_size: int = Field(32, gt=0)
    max_length: int = Field(256, gt=8, description="tokens of query + instruction + passage")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        """Fail at config load, before any stage runs, on a model that cannot be found."""
        if value.startswith(TRAIN_PREFIX):
            return value
        try:
            resolve_model(value)
        except CascadeError as exc:
            raise PydanticCustomError("model", "{reason}", {"reason": str(exc).removeprefix("model: ")}) from None
        return value


@dataclass
class Scorer:
    """A loaded cross-encoder: tokenizer, model (eval mode, on its device) and the CPU autocast dtype, if any."""

    tokenizer: Any
    model: Any
    device: str
    autocast: Any  # torch dtype for autocast (fp32 weights, half matmuls), or None for fp32


def load_scorer(resolved: str, device: str = "cpu", precision: str = "auto") -> Scorer:
    """Load a one-output sequence classifier; a folder without a usable model is a one-line error."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model = AutoModelForSequenceClassification.from_pretrained(resolved)
    except (OSError, ValueError) as exc:
        raise CascadeError(f"cannot load model '{resolved}' ({str(exc).splitlines()[0]})", where="model") from None
    if model.config.num_labels != 1:
        raise CascadeError(f"model '{resolved}' has {model.config.num_labels} outputs; a cross-encoder has 1")
    model.eval().to(device)
    torch.manual_seed(0)
    return Scorer(tokenizer, model, device, autocast_dtype(device, precision))


@functools.cache
def _cached_scorer(resolved: str, device: str, precision: str) -> Scorer:
    return load_scorer(resolved, device, precision)


def pair_segments(
    queries: Iterable[str],
    instructions: Iterable[str | None] | None,
    sep: str,
    tokenizer: Any = None,
    max_length: int | None = None,
) -> list[str]:
    """First segments of the pairs: the query, or `query SEP instruction` (see the module docstring).

    With a tokenizer and `max_length`, a query with an instruction keeps at most a quarter of the window and the
    instruction the rest of the first half (`rankers.base.fit_instruction`), so truncation, which cuts the longer
    side first, takes the passage's tail and never the instruction.
    """
    if instructions is None:
        return [str(q) for q in queries]
    pairs = zip(queries, instructions, strict=True)
    if tokenizer is None or max_length is None:
        return [f"{q} {sep} {i}" if isinstance(i, str) and i.strip() else str(q) for q, i in pairs]
    query_tokens = max(max_length // 4, 4)
    instruction_tokens = max(max_length // 2 - query_tokens - 4, 4)
    out = []
    for q, i in pairs:
        if isinstance(i, str) and i.strip():
            query = cut_tokens(str(q), tokenizer, query_tokens)
            out.append(f"{query} {sep} {cut_tokens(i, tokenizer, instruction_tokens)}")
        else:
            out.append(str(q))
    return out


def tokenize_pairs(tokenizer: Any, first: Sequence[str], second: Sequence[str], max_length: int) -> dict:
    """Token ids (and segment ids) of every pair, unpadded, in one fast-tokenizer call."""
    return tokenizer(list(first), list(second), truncation=True, max_length=max_length)


def pad_batch(tokens: dict, rows: Sequence[int], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded int64 arrays of the given rows: input_ids, attention_mask and token_type_ids (if any)."""
    out = dict(zip(("input_ids", "attention_mask"), pad_rows(tokens["input_ids"], rows, pad_id), strict=True))
    if "token_type_ids" in tokens:
        out["token_type_ids"] = pad_rows(tokens["token_type_ids"], rows, 0)[0]
    return out


def forward_logits(scorer: Scorer, batch: dict[str, np.ndarray]):
    """Scores of one padded batch as a float32 tensor (with grad when the caller trains)."""
    import torch

    inputs = {name: torch.from_numpy(array).to(scorer.device) for name, array in batch.items()}
    kind = "cuda" if scorer.device.startswith("cuda") else "cpu"
    with torch.autocast(kind, dtype=scorer.autocast or torch.float32, enabled=scorer.autocast is not None):
        logits = scorer.model(**inputs).logits
    return logits[:, 0].float()


def map_batches(fn: Callable[[Any], Any], batches: Iterable[Any]) -> Iterator[Any]:
    """The one loop over batches of local rerank work (`score_spread` sends the same batches to an executor)."""
    for batch in batches:
        yield fn(batch)


def score_pairs(
    scorer: Scorer,
    first: Sequence[str],
    second: Sequence[str],
    *,
    batch_size: int = 32,
    max_length: int = 256,
    progress: bool = False,
    desc: str = "cross_encoder",
) -> np.ndarray:
    """One float32 score per (first segment, passage) pair, in input order."""
    import torch
    from tqdm.auto import tqdm

    out = np.zeros(len(first), dtype=np.float32)
    if not len(first):
        return out
    tokens = tokenize_pairs(scorer.tokenizer, first, second, max_length)
    batches = length_sorted_batches([len(x) for x in tokens["input_ids"]], batch_size)
    pad_id = scorer.tokenizer.pad_token_id or 0

    def run(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rows, forward_logits(scorer, pad_batch(tokens, rows, pad_id)).cpu().numpy()

    with torch.inference_mode(), tqdm(total=len(first), desc=desc, unit="pair", disable=not progress) as bar:
        for rows, scores in map_batches(run, batches):
            out[rows] = scores
            bar.update(len(rows))
    return out


def pair_scorer(
    resolved: str, device: str, precision: str, batch_size: int, max_length: int, threads: int
) -> Callable[[tuple[list[str], list[str]]], np.ndarray]:
    """A worker's function (`cascade.core.executor.WorkerSpec`): (first segments, passages) -> scores, on the
    run's `threads`, as a local run scores them."""
    import torch

    scorer = _cached_scorer(resolved, pick_device(device), precision)

    def score(pairs: tuple[list[str], list[str]]) -> np.ndarray:
        torch.set_num_threads(max(1, threads))
        return score_pairs(scorer, pairs[0], pairs[1], batch_size=batch_size, max_length=max_length)

    return score


@functools.cache
def _tokenizer(resolved: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolved)


def score_spread(executor: Executor, worker: WorkerSpec, tokenizer: Any, first: list[str], second: list[str],
                 *, batch_size: int, max_length: int) -> np.ndarray:  # fmt: skip
    """`score_pairs` on the executor's workers, in groups of the very batches a local run makes, so every score
    equals the local one (`cascade.indexes.batching.batch_groups`)."""
    out = np.zeros(len(first), dtype=np.float32)
    if not first:
        return out
    lengths = [len(ids) for ids in tokenize_pairs(tokenizer, first, second, max_length)["input_ids"]]
    groups = batch_groups(lengths, batch_size, executor.settings.batch_size)
    items = (([first[i] for i in group], [second[i] for i in group]) for group in groups)
    for group, (scores, _) in zip(groups, executor.map(worker, items), strict=True):
        out[group] = scores
    return out


class CrossEncoder(Stage):
    """Reranks the top-k of the upstream run with a cross-encoder; documents below k keep their order."""

    name = "cross_encoder"
    depth_param = "k"
    reranks = True
    Params = CrossEncoderParams
    uses_corpus = True
    reads_instruction = "its own segment after the query"

    def resolved(self) -> str:
        if self.params.model.startswith(TRAIN_PREFIX):
            raise CascadeError(
                f"{self.params.model!r} is a training-config reference: `cascade run` resolves it (pipelines.train)",
                where=f"{self.name}.model",
            )
        return resolve_model(self.params.model, where=f"{self.name}.model")

    def scorer(self) -> Scorer:
        return _cached_scorer(self.resolved(), pick_device(self.params.device), self.params.precision)

    def cache_parts(self, ctx: Context) -> dict:
        """The model's content (not its path), and where it runs: CUDA half and CPU fp32 scores differ slightly."""
        parts = super().cache_parts(ctx)
        parts["params"] = {**parts["params"], "model": model_fingerprint(self.resolved())}
        parts["compute"] = ctx.executor.call(compute_label, self.params.device, self.params.precision)
        return parts

    def prepare(self, ctx: Context) -> None:
        if not ctx.executor.distributed:
            self.scorer()

    def transform(self, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
        import torch

        texts = docstore(ctx, self.name)
        head, tail = split_top_k(inp, self.params.k)
        if ctx.executor.distributed:
            return rerank_merge(head.assign(score=self._score_remote(head, texts, ctx).astype("float64")), tail)
        scorer = self.scorer()
        torch.set_num_threads(max(1, ctx.threads))
        instructions = head["instruction"].tolist() if "instruction" in head else None
        first = pair_segments(
            head["query"].tolist(), instructions, scorer.tokenizer.sep_token, scorer.tokenizer, self.params.max_length
        )
        scores = score_pairs(
            scorer,
            first,
            texts.texts(head["docno"].astype(str)),
            batch_size=self.params.batch_size,
            max_length=self.params.max_length,
            progress=ctx.progress,
        )
        return rerank_merge(head.assign(score=scores.astype("float64")), tail)

    def _score_remote(self, head: pd.DataFrame, texts: Any, ctx: Context) -> np.ndarray:
        """The pairs scored by the executor's workers; this process loads only the tokenizer."""
        p = self.params
        tokenizer = _tokenizer(self.resolved())
        instructions = head["instruction"].tolist() if "instruction" in head else None
        first = pair_segments(head["query"].tolist(), instructions, tokenizer.sep_token, tokenizer, p.max_length)
        worker = WorkerSpec(
            self.name, pair_scorer, (self.resolved(), p.device, p.precision, p.batch_size, p.max_length, ctx.threads)
        )
        second = list(texts.texts(head["docno"].astype(str)))
        return score_spread(
            ctx.executor, worker, tokenizer, first, second, batch_size=p.batch_size, max_length=p.max_length
        )
