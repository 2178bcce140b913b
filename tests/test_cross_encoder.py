"""Cross-encoder reranking and training with the real torch and MiniLM weights on the built-in sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import doc_text, load_dataset
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config
from cascade.pipelines.train import ensure_trained
from cascade.pipelines.train.data import epoch_order, split_dev
from cascade.rankers import BM25, Context, CrossEncoder
from cascade.rankers.base import build_pipeline, with_queries
from cascade.rankers.cross_encoder import load_scorer, pair_segments, score_pairs

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "train" / "cross-encoder-tiny.yaml"


@pytest.fixture(scope="module")
def sample():
    return load_dataset("sample")


@pytest.fixture(scope="module")
def candidates(sample, cache_dir):
    ctx = Context(store=ArtifactStore(cache_dir), corpus=sample.corpus, progress=False, threads=2)
    queries = sample.queries[sample.queries["qid"].isin({"q01", "q02", "q03", "q06", "q10", "q14"})]
    return with_queries(BM25(k=12).transform(queries, ctx), queries), ctx


def test_scores_equal_sentence_transformers(random_head, sample):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    docs = [d["text"] for d in list(sample.corpus.docs())[:12]]
    queries = ["how do trains stay apart", "cooking eggs"] * 6
    ours = score_pairs(load_scorer(str(random_head), "cpu", "fp32"), queries, docs, batch_size=5, max_length=128)
    import torch

    theirs = STCrossEncoder(str(random_head), device="cpu", max_length=128).predict(
        list(zip(queries, docs, strict=True)), batch_size=5, activation_fn=torch.nn.Identity()
    )
    assert np.abs(ours - theirs).max() < 1e-4


def test_stage_reranks_the_top_k_and_keeps_the_rest_below(candidates, random_head):
    run, ctx = candidates
    # fp32: on CPUs with AMX, precision "auto" is bf16 autocast, which rounds a pair's score differently
    # when its batch is padded to another length (about 1e-4), so batch invariance is checked in fp32
    out = CrossEncoder(model=str(random_head), k=5, batch_size=4, precision="fp32").transform(run, ctx)
    assert len(out) == len(run) and list(out.columns[:4]) == ["qid", "docno", "score", "rank"]
    changed = 0
    for qid, before in run.groupby("qid"):
        before = before.sort_values("rank")["docno"].tolist()
        after = out[out.qid == qid].sort_values("rank")["docno"].tolist()
        assert set(after[:5]) == set(before[:5]) and after[5:] == before[5:]
        changed += after[:5] != before[:5]
    assert changed >= 2
    again = CrossEncoder(model=str(random_head), k=5, batch_size=3, precision="fp32").transform(run, ctx)
    assert np.array_equal(again["docno"].to_numpy(), out["docno"].to_numpy())  # batching does not change order
    assert np.allclose(again["score"], out["score"], atol=1e-5)


def test_instruction_is_encoded_in_the_first_segment(candidates, random_head, sample):
    assert pair_segments(["q", "r"], ["only in water", None], "[SEP]") == ["q [SEP] only in water", "r"]
    run, ctx = candidates
    row = run[(run.qid == "q06") & (run["rank"] == 1)].iloc[0]
    assert isinstance(row["instruction"], str) and row["instruction"]
    out = CrossEncoder(model=str(random_head), k=1).transform(run[run.qid == "q06"], ctx)
    scorer = load_scorer(str(random_head), "cpu", "auto")
    doc = next(doc_text(d) for d in sample.corpus.docs() if d["docno"] == row["docno"])
    with_instruction = score_pairs(scorer, [f"{row['query']} [SEP] {row['instruction']}"], [doc])[0]
    without = score_pairs(scorer, [row["query"]], [doc])[0]
    assert out.iloc[0]["score"] == pytest.approx(with_instruction, abs=1e-5)
    assert abs(with_instruction - without) > 1e-4
    tokens = scorer.tokenizer(f"{row['query']} [SEP] {row['instruction']}", doc)
    assert tokens["input_ids"].count(scorer.tokenizer.sep_token_id) == 3  # query | instruction | passage


def test_data_order_and_dev_split_depend_on_the_seed_only():
    assert np.array_equal(epoch_order(50, 0, 42), epoch_order(50, 0, 42))
    assert not np.array_equal(epoch_order(50, 0, 42), epoch_order(50, 1, 42))
    qids = [f"q{i}" for i in range(30)]
    train, dev = split_dev(qids, 5, 42)
    assert (train, dev) == split_dev(qids, 5, 42) and len(dev) == 5 and not set(train) & set(dev)
    assert train == sorted(train, key=qids.index)


def assert_clean_failure(result, pattern: str) -> None:
    """Exit code 2 and one line on stderr matching `pattern`, no traceback."""
    import re

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(pattern, lines[0]), lines[0]


def model_folders(cache: Path) -> list[Path]:
    """Trained cross-encoders in a cache that other tests' models share."""
    folders = sorted((Path(cache) / "models").glob("*/card.json"))
    return [c.parent for c in folders if json.loads(c.read_text())["made_from"]["kind"] == "cross-encoder"]


def pipeline_config(tmp_path: Path, model: str, name: str = "ce") -> Path:
    path = tmp_path / f"{name}.yaml"
    config = {
        "name": name,
        "dataset": "sample",
        "measures": ["nDCG@10"],
        "pipeline": [{"bm25": {"k": 10}}, {"cross_encoder": {"model": model, "k": 3, "batch_size": 16}}],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """`cascade run` of a pipeline whose model is `train:` the tiny config: trains it on the way."""
    out = tmp_path_factory.mktemp("runs")
    path = pipeline_config(out, f"train:{TINY}")
    result = run_config(load_config(path), path, out, cache_dir=cache_dir, progress=False, threads=2)
    return result, path, cache_dir


def test_training_saves_safetensors_config_tokenizer_and_log(trained):
    result, _, cache = trained
    (folder,) = model_folders(cache)
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "training_log.json", "card.json"} <= names
    assert not any(n.endswith((".bin", ".pkl", ".pt")) for n in names)
    trained_with = json.loads((folder / "card.json").read_text())["trained_with"]  # what retraining depends on
    assert trained_with["device"] in ("cpu", "cuda") and trained_with["versions"]["torch"]
    assert trained_with["precision"].split()[0] in ("fp32", "bf16", "fp16") and "features" in trained_with["cpu"]
    log = json.loads((folder / "training_log.json").read_text())
    assert [e["step"] for e in log["loss"]] == list(range(1, log["steps"] + 1))
    assert all(np.isfinite(e["loss"]) for e in log["loss"])
    assert [e["step"] for e in log["dev"]] == [2, log["steps"]] and {"RR@10", "nDCG@10"} <= set(log["dev"][0])
    assert log["data"]["train_queries"] == 16 and log["data"]["dev_queries"] == 6
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 1
    manifest = json.loads((result.folder / "manifest.json").read_text())
    assert str(folder) in manifest["pipeline"]


def test_train_reference_trains_once_then_reuses(trained, tmp_path):
    result, path, cache = trained
    models = model_folders(cache)
    weights = [p / "model.safetensors" for p in models]
    mtimes = [w.stat().st_mtime_ns for w in weights]
    again = run_config(load_config(path), path, tmp_path, cache_dir=cache, progress=False, threads=2)
    assert model_folders(cache) == models and len(models) == 1
    assert [w.stat().st_mtime_ns for w in weights] == mtimes
    assert [t.cached for t in again.timings] == [True, True]
    assert (again.folder / "run.trec").read_bytes() == (result.folder / "run.trec").read_bytes()


def test_overlap_with_test_queries_is_refused_before_training(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(TINY.read_text().replace("test_datasets: []", "test_datasets: [sample]"))
    env = Context(ArtifactStore(tmp_path / "cache"), data_dir=None, threads=2, progress=False)
    with pytest.raises(CascadeError, match=r"bad\.yaml:\d+: train\.dataset: \d+ training queries are test queries"):
        ensure_trained(config, env)
    assert not (tmp_path / "cache" / "models").exists()


def test_python_api_refuses_an_unresolved_train_reference(candidates):
    run, ctx = candidates
    with pytest.raises(CascadeError, match="cascade run"):
        CrossEncoder(model=f"train:{TINY}", k=3).transform(run, ctx)


@pytest.mark.parametrize(
    ("model", "pattern"),
    [
        ("no-such-org/no-such-model", r"ce\.yaml:\d+: pipeline\[1\]\.cross_encoder\.model: unknown model"),
        ("EMPTY", r"pipeline\[1\]\.cross_encoder\.model: model folder .* has no weights"),
    ],
)
def test_bad_model_is_a_one_line_error_through_the_cli(cascade, tmp_path, model, pattern):
    if model == "EMPTY":
        model = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.json").write_text("{}")
    path = pipeline_config(tmp_path, model)
    out = tmp_path / "runs"
    result = cascade("run", path, "--out", out, "--cache", tmp_path / "cache", "-q")
    assert_clean_failure(result, pattern)
    assert not out.exists() and not (tmp_path / "cache" / "runs").exists()


def test_overlapping_training_config_is_exit_2_through_the_cli(cascade, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(TINY.read_text().replace("test_datasets: []", "test_datasets: [sample]"))
    result = cascade("train", "cross-encoder", config, "--cache", tmp_path / "cache", "-q")
    assert_clean_failure(result, r"bad\.yaml:\d+: train\.dataset: \d+ training queries are test queries of 'sample'")
    assert not (tmp_path / "cache" / "models").exists()


def test_negatives_from_dense_join_bm25_negatives_interleaved_by_rank(sample, cache_dir):
    """Issue 15: hard negatives from the union of BM25's and a dense first stage's top N, never a relevant passage."""
    from cascade.pipelines.train.data import DataSpec, build_training_data

    env = Context(ArtifactStore(cache_dir), data_dir=None, threads=2, progress=False)
    base = DataSpec(dataset="sample", relevant_label=2, dev_queries=6, negatives_depth=4, dev_depth=8)
    union = base.model_copy(update={"negatives_from": [{"dense": {"model": "minilm-l6"}}]})
    plain = build_training_data(base, [], env, 42, "[SEP]", str)
    mixed = build_training_data(union, [], env, 42, "[SEP]", str)
    assert plain.dev_candidates.equals(mixed.dev_candidates)  # the same dev split, ranked by BM25 alone
    before_by_q = {g.qid: g for g in plain.groups}
    # a query whose BM25 top N held no negative now has the dense stage's
    assert set(before_by_q) < {g.qid for g in mixed.groups}

    queries = sample.queries[sample.queries["qid"].isin({g.qid for g in mixed.groups})]
    ctx = Context(store=ArtifactStore(cache_dir), corpus=sample.corpus, progress=False, threads=2)
    dense = build_pipeline([{"dense": {"model": "minilm-l6", "k": 4}}]).transform(queries, ctx)
    bm25 = BM25(k1=0.9, b=0.4, k=8).transform(queries, ctx)
    texts = {d["docno"]: doc_text(d) for d in sample.corpus.docs()}
    judged = sample.qrels.set_index(["qid", "docno"])["label"].to_dict()
    grew = 0
    for after in mixed.groups:
        before = before_by_q.get(after.qid)
        if before is None:
            assert mixed.counts["skipped_without_negatives"] < plain.counts["skipped_without_negatives"]
            continue
        assert after.positives == before.positives
        assert set(before.negatives) <= set(after.negatives) and len(set(after.negatives)) == len(after.negatives)
        expected = [texts[d] for d in dense[dense["qid"] == after.qid].sort_values("rank")["docno"]
                    if judged.get((after.qid, d), 0) <= 0]
        assert set(expected) <= set(after.negatives)  # every non-relevant dense top-4 passage is a negative
        # interleaved by rank: each passage at its best rank in either source's top 4
        best = {}
        for run in (bm25, dense):
            for row in run[(run["qid"] == after.qid) & (run["rank"] <= 4)].itertuples():
                best[texts[row.docno]] = min(best.get(texts[row.docno], 99), row.rank)
        assert [best[t] for t in after.negatives] == sorted(best[t] for t in after.negatives)
        grew += len(after.negatives) > len(before.negatives)
    assert grew > 0  # the dense stage found negatives BM25's top 4 did not


@pytest.mark.parametrize(
    ("item", "pattern"),
    [
        ({"cross_encoder": {"model": "minilm-l6"}}, r"negatives_from.*reranks an upstream run"),
        ({"no_such_stage": {}}, r"negatives_from.*unknown stage 'no_such_stage'"),
        ({"dense": {"nope": 1}}, r"negatives_from.*item 0"),
    ],
)
def test_bad_negatives_from_is_refused_when_the_config_is_read(tmp_path, item, pattern):
    from cascade.pipelines.train import read_training_config

    data = yaml.safe_load(TINY.read_text())
    data["train"]["negatives_from"] = [item]
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CascadeError, match=pattern) as error:
        read_training_config(config)
    assert str(config) in str(error.value) and len(str(error.value).splitlines()) == 1
