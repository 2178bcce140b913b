"""The `restrain` suite task on the built-in sample: LTR retrained per query cluster (k=3), scored on both sides.

k=3 with test_fraction 0.2: the sample's 85 distinct judged queries make clusters of 20-40, so every bucket trains
on 35-50 queries and tests on 4-13 per side.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import load_dataset
from cascade.pipelines.suites import load_pipelines, run_suite
from cascade.pipelines.suites.restrain import Restrain
from cascade.pipelines.suites.retraining import RestrainSpec, capped, deep_merge, trained_refs
from cascade.pipelines.train import model_key, read_training_config
from cascade.rankers.pool import NotApplicable

ROOT = Path(__file__).resolve().parent.parent
LTR_SAMPLE = ROOT / "configs" / "train" / "ltr-sample.yaml"
PIPELINE = ROOT / "configs" / "sample" / "bm25-ltr.yaml"
SUITE = """suite: sample-restrain
tasks:
  - restrain: {k: 3, test_fraction: 0.2, measure: nDCG@10}
"""


def _run(tmp: Path, out: Path, cache_dir: Path) -> Path:
    (tmp / "suite.yaml").write_text(SUITE)
    session = Context.open(None, cache_dir, 2, False)
    outcomes = run_suite(tmp / "suite.yaml", [PIPELINE, ROOT / "configs" / "sample" / "bm25.yaml"], out, session)
    assert [o.folder is None for o in outcomes] == [False, True]
    assert "no stage is trained" in outcomes[1].note
    return outcomes[0].folder


@pytest.fixture(scope="module")
def restrain_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("restrain")
    return _run(tmp, tmp / "out", cache_dir), cache_dir


def _read(folder: Path) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    metrics = json.loads((folder / "metrics.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    perquery = pd.read_csv(folder / "perquery.tsv", sep="\t", dtype={"qid": str})
    splits = pd.read_csv(folder / "splits.tsv", sep="\t")
    plan = pd.read_csv(folder / "plan.tsv", sep="\t", dtype={"qid": str})
    return metrics, manifest, perquery, splits, plan


def test_run_folder_reports_both_sides_and_the_gap(restrain_run) -> None:
    folder, _ = restrain_run
    assert folder.parts[-2:] == ("restrain-sample", "bm25-ltr")
    metrics, manifest, perquery, splits, plan = _read(folder)
    summary = metrics["summary"]
    assert summary["buckets"] == 3 and len(splits) == 3
    assert manifest["suite"] == "sample-restrain" and manifest["restrain"]["k"] == 3
    assert metrics["queries"] == len(perquery) == perquery["qid"].nunique()  # units: (bucket, query)
    # each bucket's sides, recomputed from perquery.tsv and the cluster plan
    perquery[["bucket", "qid"]] = perquery["qid"].str.extract(r"^b(\d+):(.*)$")
    perquery["bucket"] = perquery["bucket"].astype(int)
    tests = plan[plan["role"] == "test"]
    for row in splits.itertuples():
        values = perquery[perquery["bucket"] == row.bucket].set_index("qid")["value"]
        interp = tests.loc[tests["cluster"] != row.bucket, "qid"]
        extrap = tests.loc[tests["cluster"] == row.bucket, "qid"]
        assert set(values.index) == set(interp) | set(extrap)
        assert row.interpolation == pytest.approx(values[interp].mean(), abs=1e-6)
        assert row.extrapolation == pytest.approx(values[extrap].mean(), abs=1e-6)
        assert row.extrapolation_queries == len(extrap) > 0 and row.interpolation_queries == len(interp) > 0
    assert summary["interpolation nDCG@10"] == pytest.approx(splits["interpolation"].mean(), abs=1e-6)
    assert summary["extrapolation nDCG@10"] == pytest.approx(splits["extrapolation"].mean(), abs=1e-6)
    gap = summary["interpolation nDCG@10"] - summary["extrapolation nDCG@10"]
    assert summary["gap (interp - extrap)"] == pytest.approx(gap)


def test_each_bucket_has_its_own_model_that_never_saw_its_test_queries(restrain_run) -> None:
    folder, _ = restrain_run
    _, manifest, perquery, _, plan = _read(folder)
    every = set(load_dataset("sample").queries["qid"])
    models = set()
    for bucket in manifest["buckets"]:
        ((ref, paths),) = bucket["models"].items()
        assert ref == "configs/train/ltr-sample.yaml"
        models.add(paths["model"])
        card = json.loads((Path(paths["model"]) / "card.json").read_text())
        assert card["made_from"]["file"] == paths["config"]
        excluded = set(card["made_from"]["config"]["train"]["exclude_queries"])
        assert yaml.safe_load(Path(paths["config"]).read_text())["train"]["exclude_queries"] == sorted(excluded)
        trained = every - excluded
        b = bucket["bucket"]
        tested = {q.split(":", 1)[1] for q in perquery["qid"] if q.startswith(f"b{b}:")}
        assert tested and not tested & trained
        held_out = set(plan.loc[plan["cluster"] == b, "qid"])
        assert not held_out & trained  # the whole held-out cluster, not only its test part
        assert trained == set(plan.loc[(plan["cluster"] != b) & (plan["role"] == "train"), "qid"])
        assert card["excluded_queries"] == len(excluded) and card["train_queries"] + card["dev_queries"] <= len(trained)
    assert len(models) == 3


def test_a_second_run_is_fully_cached(restrain_run, tmp_path: Path) -> None:
    folder, cache_dir = restrain_run
    _, first, _, _, _ = _read(folder)
    models = [Path(p["model"]) for b in first["buckets"] for p in b["models"].values()]
    stamps = {m: (m / "card.json").stat().st_mtime_ns for m in models}
    before = sorted(p.name for p in (cache_dir / "models").iterdir())
    again = _run(tmp_path, tmp_path / "out", cache_dir)
    metrics, manifest, perquery, splits, _ = _read(again)
    assert sorted(p.name for p in (cache_dir / "models").iterdir()) == before
    assert {m: (m / "card.json").stat().st_mtime_ns for m in models} == stamps
    assert all(s["cached"] for b in manifest["buckets"] for s in b["stages"])
    assert [b["models"] for b in manifest["buckets"]] == [b["models"] for b in first["buckets"]]
    assert metrics["summary"] == json.loads((folder / "metrics.json").read_text())["summary"]


def test_the_unchanged_sample_config_keeps_its_model_key() -> None:
    # The key before `train.exclude_queries` existed: an empty default must not enter the key (models are
    # addressed by the YAML data). Change it only together with ltr-sample.yaml or the LTR trainer's version.
    data, trainer = read_training_config(LTR_SAMPLE)
    assert "exclude_queries" not in data["train"]
    assert model_key(data, trainer) == "14505b696b4d3d55a9f7830b"  # LTR trainer version 2 (83 lexical features)


def test_cross_encoder_training_data_leaves_excluded_queries_out(cache_dir: Path) -> None:
    from cascade.pipelines.train.data import DataSpec, build_training_data

    env = Context(ArtifactStore(cache_dir), data_dir=None, threads=2, progress=False)
    queries = load_dataset("sample").queries["qid"].tolist()
    exclude = queries[::3]
    spec = DataSpec(dataset="sample", relevant_label=2, dev_queries=6, negatives_depth=8, exclude_queries=exclude)
    data = build_training_data(spec, [], env, 42, "[SEP]", lambda key: key)
    used = {g.qid for g in data.groups} | set(data.dev_candidates["qid"]) | set(data.qrels["qid"])
    assert used and not used & set(exclude)
    assert data.counts["excluded_queries"] == len(exclude)
    with pytest.raises(CascadeError, match=r"train\.exclude_queries: 1 ids are not queries"):
        build_training_data(spec.model_copy(update={"exclude_queries": ["nope"]}), [], env, 42, "[SEP]", str)


def test_ids_read_as_numbers_are_query_ids() -> None:
    from cascade.pipelines.train.ltr import TrainData

    assert TrainData(exclude_queries=[1048585, "2"]).exclude_queries == ["1048585", "2"]


def test_task_options_are_checked_and_other_trainers_are_skipped(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown trainer kind 'ltx'"):
        RestrainSpec(overrides={"ltx": {}})
    with pytest.raises(ValueError):
        RestrainSpec(k=1)
    _, (ref,) = load_pipelines([PIPELINE])
    with pytest.raises(NotApplicable, match="ltr model .* is not retrained"):
        trained_refs(ref, RestrainSpec(trainers=["cross-encoder"]))
    spec = RestrainSpec(overrides={"ltr": {"lightgbm": {"n_estimators": 5}, "train": {"dev_fraction": 0.5}}})
    (small,) = trained_refs(ref, spec)
    assert small.base["lightgbm"]["n_estimators"] == 5 and small.base["lightgbm"]["num_leaves"] == 7
    assert small.base["train"] == {"dataset": "sample", "dev_fraction": 0.5}
    assert Restrain(spec).key["restrain"]["overrides"]["ltr"]["lightgbm"] == {"n_estimators": 5}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}) == {"a": {"b": None, "c": 2}}


def test_the_test_query_cap_is_per_side_and_bucket() -> None:
    splits = pd.DataFrame(
        {
            "bucket": [1] * 6 + [2] * 6,
            "side": (["interpolation"] * 4 + ["extrapolation"] * 2) * 2,
            "qid": ["a", "b", "c", "d", "e", "f", "e", "f", "a", "b", "c", "d"],
        }
    )
    kept = capped(splits, 2, seed=1)
    assert kept.groupby(["bucket", "side"]).size().tolist() == [2, 2, 2, 2]
    assert capped(splits, 2, seed=1).equals(kept) and capped(splits, None, seed=1) is splits
