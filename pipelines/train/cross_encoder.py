"""`cascade train cross-encoder CONFIG`: fine-tune an encoder into a one-output cross-encoder.

    kind: cross-encoder
    seed: 42
    model: minilm-l6                     # the encoder to start from (alias, folder, HF name)
    train:                               # cascade.pipelines.train.data.DataSpec
      dataset: msmarco-passage/dev-small
      dev_queries: 100
      triples: data:msmarco-passage/train/triples.splade-toy.tsv
      negatives_depth: 30
    test_datasets: [msmarco-passage/dl19, msmarco-passage/dl20]   # any overlap is refused
    optim: {loss: listwise, negatives: 7, batch_queries: 4, epochs: 2, lr: 3.0e-5, max_length: 128}
    eval: {every: 200, measures: [RR@10, nDCG@10]}

The model is `AutoModelForSequenceClassification(num_labels=1)` initialised from the encoder (a fresh scoring
head). Losses: `listwise` is softmax cross-entropy over 1 positive and `negatives` hard negatives; `pairwise` is
RankNet (mean softplus(s_neg - s_pos)). The folder gets `model.safetensors`, `config.json`, the tokenizer and
`training_log.json` (loss every `log_every` steps, dev metrics every `eval.every` steps and at the end).
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.eval.measures import evaluate, parse_measures
from cascade.indexes.batching import length_sorted_batches
from cascade.indexes.models import autocast_dtype, model_fingerprint, pick_device, resolve_model
from cascade.pipelines.manifest import training_record
from cascade.pipelines.train.data import (
    DataSpec,
    TrainingData,
    build_training_data,
    data_fingerprint,
    epoch_order,
    first_segment,
    sample_group,
)
from cascade.pipelines.train.registry import Trainer, key_locator, parse_config, register
from cascade.rankers.cross_encoder import Scorer, forward_logits, pad_batch, score_pairs, tokenize_pairs
from cascade.rankers.dense import rerank_merge

TRAINER_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # never coerced, finite


class Optim(_Strict):
    loss: Literal["listwise", "pairwise"] = "listwise"
    negatives: int = Field(7, gt=0, description="hard negatives per query and step")
    batch_queries: int = Field(4, gt=0, description="queries per optimiser step")
    micro_batch: int = Field(16, gt=0, description="pairs per forward pass (length-sorted); memory, not maths")
    epochs: float = Field(1.0, gt=0)
    lr: float = Field(3e-5, gt=0)
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of steps with linear warm-up")
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    max_length: int = Field(128, gt=8)
    precision: Literal["auto", "fp32", "bf16"] = "auto"


class Eval(_Strict):
    every: int = Field(200, gt=0, description="optimiser steps between dev evaluations")
    measures: list[str] = Field(default_factory=lambda: ["RR@10", "nDCG@10"], min_length=1)
    batch_size: int = Field(32, gt=0)
    max_length: int = Field(256, gt=8)


class CrossEncoderTrainConfig(_Strict):
    kind: Literal["cross-encoder"] = "cross-encoder"
    seed: int = Field(42, ge=0, le=2**32 - 1)
    model: str = Field("minilm-l6", min_length=1)
    train: DataSpec = Field(default_factory=DataSpec)
    test_datasets: list[str] = Field(default_factory=lambda: ["msmarco-passage/dl19", "msmarco-passage/dl20"])
    optim: Optim = Field(default_factory=Optim)
    eval: Eval = Field(default_factory=Eval)
    log_every: int = Field(10, gt=0)
    keep: Literal["last", "best"] = Field("last", description="save the last weights, or the best by dev nDCG@10")


def parse(data: dict, path: Path) -> CrossEncoderTrainConfig:
    return parse_config(CrossEncoderTrainConfig, data, path)


def fingerprint(data: dict, path: Path, env: Context) -> dict:
    """The base model's and the training data's content: with the config, they address the trained model."""
    config = parse(data, path)
    base = model_fingerprint(resolve_model(config.model, where=key_locator(path)("model")))
    data_parts = data_fingerprint(config.train, config.test_datasets, env.data_dir, key_locator(path))
    return {"model": base, "data": data_parts}


def parameter_groups(model, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights (BERT's recipe)."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        (plain if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def step_loss(scores, loss: str):
    """Scores of shape (queries, 1 + negatives), positive first."""
    import torch

    if loss == "listwise":
        target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        return torch.nn.functional.cross_entropy(scores, target)
    return torch.nn.functional.softplus(scores[:, 1:] - scores[:, :1]).mean()


def batch_scores(scorer, first: list[str], second: list[str], max_length: int, micro_batch: int):
    """Scores with grad for all pairs of one step, computed in length-sorted micro-batches (less padding)."""
    import torch

    tokens = tokenize_pairs(scorer.tokenizer, first, second, max_length)
    pad_id = scorer.tokenizer.pad_token_id or 0
    parts, order = [], []
    for rows in length_sorted_batches([len(x) for x in tokens["input_ids"]], micro_batch):
        parts.append(forward_logits(scorer, pad_batch(tokens, rows, pad_id)))
        order.extend(rows.tolist())
    scores = torch.empty(len(first), device=parts[0].device, dtype=parts[0].dtype)
    return scores.index_copy(0, torch.tensor(order, device=scores.device), torch.cat(parts))


def evaluate_dev(scorer, data: TrainingData, config: CrossEncoderTrainConfig, progress: bool) -> dict[str, float]:
    """Dev metrics: rerank each dev query's BM25 candidates with the current weights."""
    run = data.dev_candidates
    scorer.model.eval()
    scores = score_pairs(
        scorer,
        first_segment(run, scorer.tokenizer.sep_token),
        data.texts(run["docno"].astype(str).tolist()),
        batch_size=config.eval.batch_size,
        max_length=config.eval.max_length,
        progress=progress,
        desc="dev",
    )
    scorer.model.train()
    reranked = rerank_merge(run.assign(score=scores.astype("float64")), run.iloc[:0])
    aggregate, _ = evaluate(reranked, data.qrels, parse_measures(config.eval.measures))
    return {name: round(value, 6) for name, value in aggregate.items()}


def load_base(config: CrossEncoderTrainConfig, path: Path, device: str):
    """The encoder with a fresh one-output head (the warning about it is expected, so it is silenced)."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    resolved = resolve_model(config.model, where=key_locator(path)("model"))
    transformers.utils.logging.disable_progress_bar()
    level = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model = AutoModelForSequenceClassification.from_pretrained(resolved, num_labels=1)
    except (OSError, ValueError) as exc:
        message = f"model: cannot load '{resolved}' ({str(exc).splitlines()[0]})"
        raise CascadeError(message, where=key_locator(path)("model")) from None
    finally:
        transformers.utils.logging.set_verbosity(level)
    return tokenizer, model.to(device)


def write_log(out: Path, log: dict) -> None:
    (out / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")


def train_cross_encoder(data: dict, path: Path, env: Context, out: Path) -> dict:
    import torch
    from tqdm.auto import tqdm

    config = parse(data, path)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(max(1, env.threads))
    device = pick_device("auto")
    tokenizer, model = load_base(config, path, device)
    autocast = autocast_dtype(device, config.optim.precision)
    scorer = Scorer(tokenizer, model, device, autocast)
    training = build_training_data(
        config.train, config.test_datasets, env, config.seed, tokenizer.sep_token, key_locator(path)
    )
    opt = config.optim
    groups = training.groups
    steps_per_epoch = math.ceil(len(groups) / opt.batch_queries)
    total = max(1, int(round(opt.epochs * steps_per_epoch)))
    optimizer = torch.optim.AdamW(parameter_groups(model, opt.weight_decay), lr=opt.lr)
    warmup = int(opt.warmup * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )

    log: dict = {"config": config.model_dump(mode="json"), "data": training.counts, "loss": [], "dev": []}
    best: tuple[float, dict | None] = (-math.inf, None)

    def record_dev(step: int) -> None:
        nonlocal best
        metrics = evaluate_dev(scorer, training, config, env.progress)
        log["dev"].append({"step": step, **metrics, "seconds": round(time.perf_counter() - started, 1)})
        write_log(out, log)
        ndcg = metrics.get("nDCG@10", next(iter(metrics.values())))
        if config.keep == "best" and ndcg > best[0]:
            best = (ndcg, copy.deepcopy(model.state_dict()))

    model.train()
    window: list[float] = []
    step = 0
    with tqdm(total=total, desc="train cross-encoder", unit="step", disable=not env.progress) as bar:
        for epoch in range(math.ceil(opt.epochs)):
            order = epoch_order(len(groups), epoch, config.seed)
            rng = np.random.default_rng([config.seed, epoch, 1])
            for start in range(0, len(order), opt.batch_queries):
                if step >= total:
                    break
                batch = [groups[i] for i in order[start : start + opt.batch_queries]]
                first, second = [], []
                for group in batch:
                    positive, negatives = sample_group(group, opt.negatives, rng)
                    first.extend([group.query] * (1 + len(negatives)))
                    second.extend([positive, *negatives])
                scores = batch_scores(scorer, first, second, opt.max_length, opt.micro_batch)
                loss = step_loss(scores.view(len(batch), 1 + opt.negatives), opt.loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
                optimizer.step()
                schedule.step()
                step += 1
                window.append(float(loss.detach()))
                bar.update(1)
                if step % config.log_every == 0 or step == total:
                    log["loss"].append(
                        {
                            "step": step,
                            "loss": round(float(np.mean(window)), 6),
                            "lr": float(f"{schedule.get_last_lr()[0]:.3g}"),
                            "seconds": round(time.perf_counter() - started, 1),
                        }
                    )
                    window = []
                    write_log(out, log)  # the temp folder shows progress; it becomes final only when complete
                if step % config.eval.every == 0 and step < total:
                    record_dev(step)
    record_dev(step)
    if config.keep == "best" and best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    final = log["dev"][-1] if config.keep == "last" else max(log["dev"], key=lambda d: d.get("nDCG@10", 0.0))
    log["kept"] = {"rule": config.keep, **final}
    log["steps"] = step
    log["seconds"] = round(time.perf_counter() - started, 1)
    write_log(out, log)
    if not (out / "model.safetensors").is_file():
        raise CascadeError(f"training saved no model.safetensors in {out}")
    precision = {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(autocast, "fp32")
    packages = ("torch", "transformers", "tokenizers", "numpy")
    trained_with = training_record(device, f"{precision} (precision: {opt.precision})", env.threads, packages)
    return {
        "steps": step,
        "train_seconds": log["seconds"],
        "dev": final,
        "data": training.counts,
        "trained_with": trained_with,  # a retrained neural model matches only on the same record (README)
    }


register(Trainer("cross-encoder", TRAINER_VERSION, train_cross_encoder, fingerprint, check=parse))
