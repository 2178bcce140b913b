"""Interpolation / extrapolation splits: ReSTTest files, scoring both sides, ReSample and clustering with MiniLM."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pydantic import ValidationError

from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import load_dataset
from cascade.eval.extrapolation import bucket_sets, holdout_plan, plan_splits, read_splits, split_scores
from cascade.pipelines.resample import SplitRule, cluster_queries, resample_split

TRAIN = pd.DataFrame(
    {
        "qid": ["t1", "t2", "t3", "t4"],
        "query": [
            "what is the capital of france",
            "how do vaccines train the immune system",
            "symptoms of the flu in adults",
            "how long to boil an egg",
        ],
    }
)
TEST = pd.DataFrame(
    {
        "qid": ["q1", "q2", "q3"],
        "query": [
            "best programming language for embedded systems",
            "what is the capital of france",  # the same text as training query t1
            "history of the roman empire",
        ],
    }
)
TOPICS = pd.DataFrame(
    {
        "qid": [f"c{i}" for i in range(9)],
        "query": [
            "how to bake sourdough bread",
            "sourdough bread baking recipe",
            "bread recipe with sourdough starter",
            "python list comprehension syntax",
            "how to write a list comprehension in python",
            "python list comprehension example",
            "symptoms of a heart attack",
            "warning signs of a heart attack",
            "heart attack symptoms in women",
        ],
    }
)


def write(path, text: str):
    path.write_text(text)
    return path


def test_read_splits_maps_names_and_drops_unknown_ids_with_one_counted_warning(tmp_path, capsys):
    table = write(
        tmp_path / "splits.tsv",
        "bucket\ttestset\tsplit\tquery-id\n"
        "1\ttrec19\tinterpolate\ta\n"
        "1\ttrec19\textrapolate\tb\n"
        "1\ttrec19\tinterpolate\tx\n"
        "2\ttrec19\textrapolate\ta\n"
        "2\ttrec19\tinterpolate\tb\n"
        "2\ttrec19\tinterpolate\tx\n"
        "2\ttrec19\tinterpolate\ty\n"
        "1\tdev\tinterpolate\td\n",
    )
    splits = read_splits(table, "msmarco-passage/dl19", known_qids={"a", "b"})
    assert splits.to_dict("list") == {
        "bucket": [1, 1, 2, 2],
        "side": ["interpolation", "extrapolation", "interpolation", "extrapolation"],
        "qid": ["a", "b", "b", "a"],
    }
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 of 4 query ids in the trec19 splits are not in the dataset" in err[0]
    assert str(table) in err[0]
    assert len(read_splits(table, "trec19", known_qids=None)) == 7 and capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1\ttrec19\tinterpolate", "expected 4 columns"),
        ("one\ttrec19\tinterpolate\tb", "bucket 'one' is not a positive integer"),
        ("1\ttrec19\tsideways\tb", "split 'sideways' is not interpolate or extrapolate"),
        ("1\ttrec19\textrapolate\ta", "query 'a' appears twice in bucket 1 (first on line 2)"),
    ],
)
def test_a_malformed_split_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    table = write(tmp_path / "splits.tsv", f"bucket\ttestset\tsplit\tquery-id\n1\ttrec19\tinterpolate\ta\n{line}\n")
    with pytest.raises(CascadeError) as info:
        read_splits(table, "trec19", None)
    assert info.value.where == f"{table}:3" and message in str(info.value)


def test_a_test_set_the_file_does_not_have_is_named(tmp_path):
    table = write(tmp_path / "splits.tsv", "1\tdev\tinterpolate\ta\n")
    with pytest.raises(CascadeError, match=r"no splits for test set 'trec20' \(the file has: dev\)"):
        read_splits(table, "msmarco-passage/dl20", None)


def test_raw_folder_layout_reads_like_the_table(tmp_path):
    for bucket, interp, extrap in ((1, "a b", "c"), (2, "a c", "b")):
        folder = tmp_path / f"bucket-{bucket}"
        folder.mkdir()
        for name, qids in (("interpolate", interp), ("extrapolate", extrap)):
            write(
                folder / f"{name}.trec20-qrel.txt",
                "".join(f"{q} 0 p{i} 1\n{q} 0 p9 0\n" for i, q in enumerate(qids.split())),
            )
    splits = read_splits(tmp_path, "trec20", {"a", "b", "c"})
    assert list(splits.itertuples(index=False, name=None)) == [
        (1, "interpolation", "a"),
        (1, "interpolation", "b"),
        (1, "extrapolation", "c"),
        (2, "interpolation", "a"),
        (2, "interpolation", "c"),
        (2, "extrapolation", "b"),
    ]


@pytest.mark.realdata
def test_published_resttest_splits_partition_dl19(data_dir, capsys):
    dl19 = set(load_dataset("msmarco-passage/dl19", data_dir).queries["qid"])
    splits = read_splits(data_dir / "extrapolate-eval" / "resttest_query_splits.tsv", "msmarco-passage/dl19", dl19)
    assert capsys.readouterr().err == ""  # every DL19 split id is a DL19 query
    counts = splits.groupby(["bucket", "side"]).size()
    assert counts[1, "interpolation"] == 38 and counts[1, "extrapolation"] == 5
    for _, bucket in splits.groupby("bucket"):
        interp = set(bucket.qid[bucket.side == "interpolation"])
        extrap = set(bucket.qid[bucket.side == "extrapolation"])
        assert not interp & extrap and interp | extrap == dl19 and len(dl19) == 43
    raw = read_splits(data_dir / "extrapolate-eval/raw/resttest_files/msmarco-passage", "trec19", dl19)
    assert sorted(raw.itertuples(index=False, name=None)) == sorted(splits.itertuples(index=False, name=None))


def test_split_scores_macro_averages_buckets_and_counts_missing_queries():
    perquery = pd.DataFrame(
        {
            "qid": ["a", "b", "c", "d", "a"],
            "measure": ["nDCG@10"] * 4 + ["AP"],
            "value": [1.0, 0.5, 0.0, 0.25, 0.9],
        }
    )
    splits = pd.DataFrame(
        {
            "bucket": [1, 1, 1, 1, 2, 2, 2, 2],
            "side": ["interpolation", "interpolation", "extrapolation", "extrapolation"] * 2,
            "qid": ["a", "b", "c", "e", "a", "c", "b", "d"],  # 'e' has no per-query value
        }
    )
    scores = split_scores(perquery, splits, "nDCG@10")
    b = scores.buckets.set_index("bucket")
    assert b.loc[1, "interpolation"] == 0.75 and b.loc[1, "extrapolation"] == 0.0 and b.loc[1, "gap"] == 0.75
    assert b.loc[1, "extrapolation_queries"] == 1 and b.loc[1, "extrapolation_missing"] == 1
    assert b.loc[2, "interpolation"] == 0.5 and b.loc[2, "extrapolation"] == 0.375 and b.loc[2, "gap"] == 0.125
    assert scores.average == {"interpolation": 0.625, "extrapolation": 0.1875, "gap": 0.4375, "buckets": 2}

    zero = split_scores(perquery, splits, "nDCG@10", missing="zero").buckets.set_index("bucket")
    assert zero.loc[1, "extrapolation"] == 0.0 and zero.loc[1, "extrapolation_queries"] == 2
    assert zero.loc[1, "extrapolation_missing"] == 0

    with pytest.raises(CascadeError, match=r"measure 'P@5' is not in the per-query frame \(it has: AP, nDCG@10\)"):
        split_scores(perquery, splits, "P@5")


def test_split_scores_matches_per_bucket_values_and_reports_an_empty_side_as_nan():
    perquery = pd.DataFrame(
        {"bucket": [1, 1, 2], "qid": ["a", "b", "a"], "measure": ["RR@10"] * 3, "value": [1.0, 0.5, 0.2]}
    )
    splits = pd.DataFrame(
        {"bucket": [1, 1, 2], "side": ["interpolation", "extrapolation", "interpolation"], "qid": ["a", "b", "a"]}
    )
    scores = split_scores(perquery, splits, "RR@10")
    assert scores.buckets["interpolation"].tolist() == [1.0, 0.2]
    assert math.isnan(scores.buckets.loc[1, "extrapolation"]) and scores.buckets.loc[1, "extrapolation_queries"] == 0
    assert scores.average["interpolation"] == pytest.approx(0.6) and scores.average["extrapolation"] == 0.5


def test_split_rule_takes_exactly_its_own_parameter():
    assert SplitRule(rule="quantile", fraction=0.5).model == "minilm-l6"
    for bad in (
        {"rule": "threshold"},
        {"rule": "threshold", "threshold": 0.5, "fraction": 0.5},
        {"rule": "quantile", "fraction": 1.5},
        {"rule": "quantile", "fraction": 0.5, "k": 3},
    ):
        with pytest.raises(ValidationError):
            SplitRule(**bad)


def _cards(store: ArtifactStore) -> dict[str, int]:
    return {str(p.relative_to(store.root)): p.stat().st_mtime_ns for p in store.root.glob("*/*/card.json")}


def test_resample_split_is_deterministic_cached_and_puts_a_training_query_in_interpolation(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    rule = SplitRule(rule="threshold", threshold=0.95)
    first = resample_split(TRAIN, TEST, rule, store)
    assert first["qid"].tolist() == ["q1", "q2", "q3"]
    assert first.set_index("qid").loc["q2", "side"] == "interpolation"
    assert first.set_index("qid").loc["q2", "nearest"] == "t1"
    assert first.set_index("qid").loc["q2", "similarity"] == pytest.approx(1.0, abs=1e-5)
    assert (first.set_index("qid").loc[["q1", "q3"], "side"] == "extrapolation").all()
    cards = _cards(store)
    assert sorted(k.split("/")[0] for k in cards) == ["query-embeddings", "query-embeddings", "resample-split"]

    again = resample_split(TRAIN, TEST, rule, store)
    pd.testing.assert_frame_equal(first, again)
    assert _cards(store) == cards  # nothing was built again, so nothing was encoded

    quantile = resample_split(TRAIN, TEST, SplitRule(rule="quantile", fraction=0.34), store)
    assert quantile["side"].tolist() == ["extrapolation", "interpolation", "extrapolation"]
    assert quantile["similarity"].tolist() == first["similarity"].tolist()
    new = set(_cards(store)) - set(cards)
    assert len(new) == 1 and next(iter(new)).startswith("resample-split/")  # the query vectors were reused

    fresh = resample_split(TRAIN, TEST, rule, ArtifactStore(tmp_path / "other"))
    pd.testing.assert_frame_equal(first, fresh)


def test_cluster_queries_is_deterministic_and_groups_paraphrases(tmp_path):
    store = ArtifactStore(tmp_path / "a")
    clusters = cluster_queries(TOPICS, k=3, seed=7, store=store)
    assert clusters["qid"].tolist() == TOPICS["qid"].tolist()
    assert sorted(clusters["cluster"].unique()) == [1, 2, 3]
    for seed in range(5):  # every seed, not a lucky one: each topic's three paraphrases share a cluster
        topic_of = cluster_queries(TOPICS, k=3, seed=seed, store=store)["cluster"].to_numpy().reshape(3, 3)
        assert all(len(set(row)) == 1 for row in topic_of) and len(set(topic_of[:, 0])) == 3
    pd.testing.assert_frame_equal(clusters, cluster_queries(TOPICS, k=3, seed=7, store=ArtifactStore(tmp_path / "b")))
    with pytest.raises(CascadeError, match="k must be between 1 and the number of queries"):
        cluster_queries(TOPICS, k=10, seed=7, store=store)


def test_holdout_plan_buckets_hold_out_one_cluster():
    clusters = pd.DataFrame({"qid": [f"q{i}" for i in range(20)], "cluster": [1] * 8 + [2] * 8 + [3] * 3 + [4]})
    plan = holdout_plan(clusters, test_fraction=0.25, seed=3)
    assert plan.equals(holdout_plan(clusters, test_fraction=0.25, seed=3))
    assert plan.groupby("cluster")["role"].apply(lambda r: (r == "test").sum()).tolist() == [2, 2, 1, 1]
    for b in (1, 2, 3, 4):
        train, interp, extrap = bucket_sets(plan, b)
        in_b = set(clusters.qid[clusters.cluster == b])
        assert not set(train) & in_b and not set(interp) & in_b and set(extrap) <= in_b
        assert not set(train) & set(interp) and len(extrap) >= 1
        assert set(train) | set(interp) | set(extrap) == set(clusters.qid) - set(
            plan.qid[(plan.cluster == b) & (plan.role == "train")]
        )
    splits = plan_splits(plan)
    assert splits.groupby(["bucket", "side"]).size()[1, "extrapolation"] == 2
    with pytest.raises(CascadeError, match="bucket 9 is not a cluster"):
        bucket_sets(plan, 9)
