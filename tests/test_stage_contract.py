"""The contract every registered stage keeps, after PyTerrier's TransformerTestCase (pyterrier/testing.py).

Each stage in `cascade.rankers.STAGES` runs on the built-in sample (rerankers over a BM25 run, fusion over two
inputs, `run_file` over a run written here, `ltr` and `cross_encoder` with tiny models made here) and must give:
the run columns with ranks 1..n that follow the scores, the same run through the engine as computed directly, a
cache key that two constructions share and a changed parameter changes, the same run twice, and an empty run for
an empty input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade.core.digest import content_key
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import load_dataset
from cascade.eval.frames import RUN_COLUMNS, format_run
from cascade.rankers import BM25, STAGES, Context, Stage
from cascade.rankers.engine import check_run, execute

QIDS = ["q01", "q02", "q03", "q06", "q10"]


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


@pytest.fixture(scope="module")
def ctx(sample, cache_dir) -> Context:
    return Context(store=ArtifactStore(cache_dir), corpus=sample.corpus, progress=False, threads=2)


@pytest.fixture(scope="module")
def queries(sample) -> pd.DataFrame:
    return sample.queries[sample.queries["qid"].isin(QIDS)].reset_index(drop=True)


@pytest.fixture(scope="module")
def bm25_run(queries, ctx) -> pd.DataFrame:
    """The upstream run of a reranker, with its query columns and carried scores, as the engine hands it on."""
    return execute(BM25(k=12), queries, ctx).frame


@pytest.fixture(scope="module")
def models(tmp_path_factory, bm25_run) -> dict[str, Path]:
    """A run file, an LTR model over the BM25 score and a seeded, untrained cross-encoder head."""
    import lightgbm
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from cascade.indexes.models import resolve_model

    folder = tmp_path_factory.mktemp("contract")
    (folder / "run.trec").write_bytes(format_run(bm25_run[RUN_COLUMNS].assign(score=bm25_run["score"].round(3))))

    ltr = folder / "ltr"
    ltr.mkdir()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 1))
    labels = (features[:, 0] + rng.normal(scale=0.5, size=60) > 0).astype(int)
    params = {"objective": "lambdarank", "num_leaves": 3, "min_data_in_leaf": 2, "verbose": -1, "seed": 0}
    booster = lightgbm.train(params, lightgbm.Dataset(features, labels, group=[10] * 6), num_boost_round=5)
    booster.save_model(str(ltr / "model.txt"))
    (ltr / "features.json").write_text(json.dumps({"features": ["bm25"]}))

    head = folder / "cross-encoder"
    torch.manual_seed(7)
    base = resolve_model("minilm-l6")
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(head)
    AutoTokenizer.from_pretrained(base).save_pretrained(head)
    return {"run": folder / "run.trec", "ltr": ltr, "cross_encoder": head}


# name -> (parameters, a changed parameter, whether it reranks a BM25 run); every registered stage needs a case.
FUSION_INPUTS = [[{"bm25": {"k": 10}}], [{"rm3": {"k": 10}}]]
CASES: dict[str, Callable[[dict[str, Path]], tuple[dict, dict]]] = {
    "bm25": lambda m: ({"k": 10}, {"b": 0.75}),
    "rm3": lambda m: ({"k": 10}, {"fb_terms": 5}),
    "run_file": lambda m: ({"path": str(m["run"]), "k": 8}, {"k": 5}),
    "dense": lambda m: ({"k": 10, "precision": "fp32"}, {"k": 5}),
    "dense_rerank": lambda m: ({"k": 8, "precision": "fp32"}, {"k": 5}),
    "sparse": lambda m: ({"index": "exact", "k": 10, "measure": False, "precision": "fp32"}, {"k": 5}),
    "sparse_rerank": lambda m: ({"k": 8, "precision": "fp32"}, {"k": 5}),
    "rrf": lambda m: ({"inputs": FUSION_INPUTS, "k": 60}, {"k": 10}),
    "combsum": lambda m: ({"inputs": FUSION_INPUTS}, {"norm": "zscore"}),
    "combmnz": lambda m: ({"inputs": FUSION_INPUTS}, {"weights": [1.0, 2.0]}),
    "ltr": lambda m: ({"model": str(m["ltr"]), "k": 8}, {"k": 5}),
    "cross_encoder": lambda m: ({"model": str(m["cross_encoder"]), "k": 5, "precision": "fp32"}, {"k": 3}),
}


def test_every_registered_stage_has_a_case():
    assert sorted(CASES) == sorted(STAGES)


def compute(stage: Stage, inp: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    """The stage's own run for `inp`, not read from the cache (its children's runs come from the engine)."""
    inputs = [execute(child, inp, ctx).frame for child in stage.children()]
    stage.prepare(ctx)
    return stage.apply(inp, ctx, inputs).run


def assert_valid_run(run: pd.DataFrame, inp: pd.DataFrame) -> None:
    assert set(RUN_COLUMNS) <= set(run.columns)
    assert not run.duplicated(["qid", "docno"]).any()
    assert set(run["qid"]) <= set(inp["qid"])
    for _, group in run.groupby("qid", sort=False):
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert (np.diff(group["score"].to_numpy(dtype="float64")) <= 0).all()
    check_run(run, inp, "contract")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_contract(name, models, queries, bm25_run, ctx):
    params, changed = CASES[name](models)
    cls = STAGES[name]
    inp = bm25_run if cls.reranks else queries

    run = compute(cls(**params), inp, ctx)
    assert_valid_run(run, inp)
    assert len(run) > 0 and set(run["qid"]) == set(inp["qid"])
    if cls.depth_param is not None and not cls.reranks and not cls.children_param:
        assert run.groupby("qid").size().max() <= params[cls.depth_param]

    # the engine gives the stage's own run, and checks it
    done = execute(cls(**params), inp, ctx)
    pd.testing.assert_frame_equal(done.frame[RUN_COLUMNS].reset_index(drop=True), run[RUN_COLUMNS])

    # determinism: a second construction computes the same run
    pd.testing.assert_frame_equal(compute(cls(**params), inp, ctx)[RUN_COLUMNS], run[RUN_COLUMNS])

    # cache key: stable across constructions, changed by a changed parameter
    key = content_key(cls(**params).cache_parts(ctx))
    assert content_key(cls(**params).cache_parts(ctx)) == key
    assert content_key(cls(**{**params, **changed}).cache_parts(ctx)) != key

    # an empty input gives an empty, valid run, with the query columns
    empty = execute(cls(**params), inp.iloc[:0], ctx).frame
    assert empty.empty and {"query", *RUN_COLUMNS} <= set(empty.columns)
    assert_valid_run(empty, inp.iloc[:0])


def test_spec_from_rshift_equals_spec_from_yaml():
    from cascade.rankers import RRF, build_pipeline

    yaml_items = [{"rrf": {"k": 60, "inputs": [[{"bm25": {"k": 10}}], [{"bm25": {"k": 10}}, {"rm3": {}}]]}}]
    built = build_pipeline(yaml_items)
    composed = RRF(inputs=[BM25(k=10), BM25(k=10) >> STAGES["rm3"]()], k=60)
    assert composed.spec() == built.spec()
    assert [s.name for s in composed.walk()] == ["bm25", "bm25", "rm3"]
    assert repr(composed) == repr(built)
