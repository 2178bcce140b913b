"""Interpolation/extrapolation views of a pipeline's own test set: `resttest` (the published ReSTTest query
splits) and `resample` (ReSample: test queries split by their similarity to the pipeline's training queries).

Both run the pipeline on its own dataset exactly as `cascade run` does and average its per-query values on each
side of each bucket; the run folder adds the sides to the summary and the per-bucket scores as splits.tsv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from pydantic import Field, ValidationError, field_validator

from cascade.core.env import Context
from cascade.eval.datasets import Dataset, load_dataset
from cascade.eval.extrapolation import RESTTEST_TESTSETS, read_splits, split_scores
from cascade.pipelines.config import Config
from cascade.pipelines.resample import SplitRule, resample_split
from cascade.pipelines.runner import Artifacts, open_dataset, run_artifacts
from cascade.pipelines.suites.base import PipelineRef, Protocol, Strict
from cascade.pipelines.suites.common import resolve_source, tsv
from cascade.pipelines.suites.retraining import train_refs
from cascade.pipelines.train import read_training_config
from cascade.rankers.pool import NotApplicable

SIDE_NAMES = ("interpolation", "extrapolation")


class _SidesProtocol(Protocol):
    """A view of the pipeline's own run: its dataset's name with the protocol's `title`."""

    own_dataset = True
    title: ClassVar[str]

    def label(self, ref: PipelineRef) -> str:
        name = ref.config.dataset.name or Path(ref.config.dataset.path or "folder").name
        return f"{name} · {self.title}"

    def on_sides(
        self,
        ref: PipelineRef,
        session: Context,
        dataset: Dataset,
        sides: pd.DataFrame,
        measure: str,
        protocol: str,
        table: pd.DataFrame | None = None,
    ) -> Artifacts:
        """The pipeline on its own dataset, its per-query values averaged on the interpolation and extrapolation
        side of each bucket of `sides` (`[bucket,] side, qid`); `table` (default: the per-bucket scores) goes to
        splits.tsv."""

        def extend(perquery: pd.DataFrame) -> tuple[dict, dict[str, bytes]]:
            scores = split_scores(perquery, sides, measure)
            avg = scores.average
            summary = {
                f"interpolation {measure}": avg["interpolation"],
                f"extrapolation {measure}": avg["extrapolation"],
                "gap (interp - extrap)": avg["gap"],
                "buckets": int(avg["buckets"]),
            }
            if "bucket" not in sides:  # one split: say how the queries divide
                counts = (str(int((sides["side"] == side).sum())) for side in SIDE_NAMES)
                summary["queries (interp / extrap)"] = " / ".join(counts)
            return summary, {"splits.tsv": tsv(scores.buckets if table is None else table, "%.6f")}

        label = self.label(ref)
        extra = {"protocol": protocol}
        return run_artifacts(ref.config, ref.path, dataset, session, extend=extend, dataset_label=label, extra=extra)


class ResttestSpec(Strict):
    splits: str = Field(..., description="ReSTTest query splits TSV: a path or data:<path under the data dir>")
    measure: str = "nDCG@10"


class ReSTTest(_SidesProtocol):
    """The pipeline on its own dataset, scored on each ReSTTest bucket's interpolation and extrapolation sides."""

    kind = "resttest"
    Spec = ResttestSpec
    spec: ResttestSpec
    title = "ReSTTest buckets"

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        name = ref.config.dataset.name
        if name not in RESTTEST_TESTSETS:
            raise NotApplicable(
                f"ReSTTest splits exist for {', '.join(RESTTEST_TESTSETS)}, not for {name or 'a folder'}"
            )
        dataset = open_dataset(ref.config, session.data_dir)
        path = resolve_source(self.spec.splits, session, "resttest.splits")
        splits = read_splits(path, RESTTEST_TESTSETS[name], known_qids=set(dataset.queries["qid"]))
        protocol = f"ReSTTest splits from {path.name}, mean over buckets"
        return self.on_sides(ref, session, dataset, splits, self.spec.measure, protocol)


class ResampleSpec(Strict):
    """ReSample (Zhan et al.) for any pipeline with a trained stage: its test queries split by their MiniLM cosine
    to the queries its models were trained from."""

    rule: dict[str, Any] = Field(default_factory=lambda: {"rule": "quantile", "fraction": 0.5})
    measure: str = "nDCG@10"

    @field_validator("rule")
    @classmethod
    def _split_rule(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Checked when the suite is read (the spec keeps the dict as written: it goes into config hashes)."""
        try:
            SplitRule.model_validate(value)
        except ValidationError as exc:
            detail = exc.errors()[0]
            key = ".".join(str(p) for p in detail["loc"])
            raise ValueError(f"{key + ': ' if key else ''}{detail['msg'].removeprefix('Value error, ')}") from None
        return value


class ReSample(_SidesProtocol):
    """The pipeline on its own dataset, its queries split by similarity to its training queries."""

    kind = "resample"
    Spec = ResampleSpec
    spec: ResampleSpec
    title = "ReSample split"

    def run(self, ref: PipelineRef, session: Context) -> Artifacts:
        rule = SplitRule.model_validate(self.spec.rule)  # checked when the suite was read (ResampleSpec)
        train = training_queries(ref.config, session.data_dir)
        if train.empty:
            raise NotApplicable("no stage is trained (`train:` model), so there is nothing to interpolate from")
        dataset = open_dataset(ref.config, session.data_dir)
        sides = resample_split(train, dataset.queries, rule, session.store, session.progress)
        protocol = f"ReSample split: {rule.model_dump(exclude_none=True)}"
        return self.on_sides(ref, session, dataset, sides[["qid", "side"]], self.spec.measure, protocol, sides)


def training_queries(config: Config, data_dir: Path | None) -> pd.DataFrame:
    """The queries the pipeline's `train:` models learn from (each training config's training dataset); empty when
    no stage is trained. The whole pool is used: a model's dev split is also data it was selected on."""
    frames = []
    for ref in train_refs(config.pipeline):
        data, _ = read_training_config(ref)
        train = data.get("train") or {}
        if isinstance(train, dict) and train.get("dataset"):
            frames.append(load_dataset(str(train["dataset"]), data_dir).queries[["qid", "query"]])
    if not frames:
        return pd.DataFrame(columns=["qid", "query"])
    return pd.concat(frames, ignore_index=True).drop_duplicates("qid").reset_index(drop=True)
