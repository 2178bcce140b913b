"""The extended lexical feature set: names, hand-checked values on synthetic token streams, the real Lucene dump on
the built-in sample, and models trained on an older, smaller set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cascade.core.errors import CascadeError
from cascade.core.store import ArtifactStore
from cascade.eval.datasets import load_dataset
from cascade.indexes import lucene
from cascade.indexes.lexical import FEATURE_DOCS, FEATURES, GROUPS, TermStats, term_stats, write_streams
from cascade.pipelines.train import ensure_trained
from cascade.pipelines.train.ltr import carried_names
from cascade.rankers import BM25, Context
from cascade.rankers.base import carry_scores, with_queries
from cascade.rankers.ltr import LTR, feature_matrix, feature_names
from cascade.rankers.lucene import lucene_index

ROOT = Path(__file__).resolve().parent.parent
OLD_FEATURES = (  # the first lexical set (cascade's first LTR models were trained on it)
    "doc_len",
    "query_len",
    "matched_terms",
    "coverage",
    *(f"{s}_{a}" for s in ("tf", "ntf", "idf", "tfidf", "bm25") for a in ("sum", "min", "max", "mean")),
    "lm_dirichlet",
)


def test_at_least_sixty_named_documented_features_the_old_ones_first():
    assert len(FEATURES) >= 60 and len(set(FEATURES)) == len(FEATURES)
    assert FEATURES[: len(OLD_FEATURES)] == OLD_FEATURES
    assert all(doc and "\n" not in doc for doc in FEATURE_DOCS.values())
    assert sum(len(g) for g in GROUPS.values()) == len(FEATURES)
    assert not any(c in name for name in FEATURES for c in '[]{}":,')  # LightGBM refuses these in names


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> TermStats:
    """Three documents; None is a stopword gap. Query terms: a b c."""
    folder = tmp_path_factory.mktemp("streams")
    streams = [
        ("d1", ["a", None, "b", "x", "x", "c", "a"]),  # a0 b2 c5 a6
        ("d2", ["c", *["y"] * 9, "a"]),  # c0 a10: far apart, no b
        ("d3", ["y", "z"]),  # nothing
    ]
    write_streams(streams, folder)
    return TermStats.load(folder)


def value(stats: TermStats, query: list[str], doc: str, name: str) -> float:
    return float(stats.features(query, [doc])[0, FEATURES.index(name)])


def test_values_by_hand(synthetic):
    q = ["a", "b", "c"]
    assert value(synthetic, q, "d1", "doc_len") == 6 and value(synthetic, q, "d1", "positions") == 7
    assert value(synthetic, q, "d1", "stopword_ratio") == pytest.approx(1 / 7)
    assert value(synthetic, q, "d1", "min_window") == 5  # b2 c5 a6 (a0 b2 c5 spans 6)
    assert value(synthetic, q, "d1", "min_window_all") == 5
    assert value(synthetic, q, "d1", "window_density") == pytest.approx(3 / 5)
    assert value(synthetic, q, "d1", "pair_dist_min") == 1  # c5 a6
    assert value(synthetic, q, "d1", "pair_dist_mean") == pytest.approx((2 + 1 + 3) / 3)  # ab 2, ac 1, bc 3
    assert value(synthetic, q, "d1", "pairs_near") == 1
    assert value(synthetic, q, "d1", "ordered_bigrams") == 2  # a0 -> b2 and b2 -> c5, each within 3
    assert value(synthetic, q, "d1", "first_pos") == 0
    assert value(synthetic, q, "d2", "min_window") == 11 and math.isnan(value(synthetic, q, "d2", "min_window_all"))
    assert value(synthetic, q, "d2", "pairs_near") == 0 and value(synthetic, q, "d2", "ordered_bigrams") == 0
    assert value(synthetic, q, "d2", "first_pos_norm") == 0
    assert math.isnan(value(synthetic, q, "d3", "min_window")) and value(synthetic, q, "d3", "matched_terms") == 0
    assert math.isnan(value(synthetic, q, "d3", "first_pos"))
    # the core BM25 (k1 0.9, b 0.4) for d2: a and c each in 2 of 3 documents, tf 1, dl 11, avgdl 19/3
    idf = math.log(1 + (3 - 2 + 0.5) / 2.5)
    norm = 0.9 * (1 - 0.4 + 0.4 * 11 / (19 / 3))
    assert value(synthetic, q, "d2", "bm25_sum") == pytest.approx(2 * idf / (1 + norm))
    norm = 1.2 * (1 - 0.75 + 0.75 * 11 / (19 / 3))
    assert value(synthetic, q, "d2", "bm25_k1.2_b0.75_max") == pytest.approx(idf / (1 + norm))
    # Jelinek-Mercer, collection weight 0.4, and Dirichlet mu 100: collection counts a 3, b 1, c 2 of 19
    p = {"a": 3 / 19, "b": 1 / 19, "c": 2 / 19}
    tf = {"a": 1, "b": 0, "c": 1}
    jm = sum(math.log(0.6 * tf[t] / 11 + 0.4 * p[t]) for t in q)
    assert value(synthetic, q, "d2", "lm_jm_0.4") == pytest.approx(jm)
    dirichlet = sum(math.log((tf[t] + 100 * p[t]) / (11 + 100)) for t in q)
    assert value(synthetic, q, "d2", "lm_dir_100") == pytest.approx(dirichlet)
    idf_b = math.log(1 + (3 - 1 + 0.5) / 1.5)
    assert value(synthetic, q, "d2", "idf_coverage") == pytest.approx(2 * idf / (2 * idf + idf_b))
    entropy = -(2 * (2 / 6) * math.log(2 / 6) + 2 * (1 / 6) * math.log(1 / 6))
    assert value(synthetic, q, "d1", "entropy") == pytest.approx(entropy)


def test_unknown_documents_and_terms_are_zero_rows(synthetic):
    assert not synthetic.features(["a"], ["nope"]).any()
    row = synthetic.features(["zzz"], ["d1"])[0]
    assert row[FEATURES.index("query_oov")] == 1 and row[FEATURES.index("bm25_sum")] == 0


@pytest.fixture(scope="module")
def sample_ctx(cache_dir):
    sample = load_dataset("sample")
    ctx = Context(store=ArtifactStore(cache_dir), corpus=sample.corpus, progress=False)
    run = with_queries(BM25(k=20).transform(sample.queries, ctx), sample.queries)
    return carry_scores(run, sample.queries, "bm25"), ctx


def test_token_dump_matches_the_document_vectors(sample_ctx):
    _, ctx = sample_ctx
    index = lucene_index(ctx)
    stats = term_stats(ctx.store, index, ctx.log_dir / "lexical.log")
    terms = sorted(stats.vocab, key=stats.vocab.get)
    for docno, vector in lucene.document_vectors(index, ctx.log_dir / "lexical.log"):
        row = stats.tf[stats.row[docno]]
        ours = {terms[i]: int(c) for i, c in zip(row.indices, row.data, strict=True)}
        assert ours == {t: c for t, c in vector.items() if t != "null"}, docno


def test_proximity_agrees_with_lucene_positions(sample_ctx):
    """min_window and pair_dist_min against a brute force over Anserini's getTermPositions."""
    frame, ctx = sample_ctx
    index = lucene_index(ctx)
    stats = term_stats(ctx.store, index, ctx.log_dir / "lexical.log")
    utils = lucene._java("io.anserini.index.IndexReaderUtils")
    reader = utils.getReader(str(index))
    checked = 0
    try:
        for qid, group in list(frame.groupby("qid", sort=False))[:5]:
            query = list(dict.fromkeys(lucene.analyze([group["query"].iloc[0]])[0]))
            for docno in group["docno"].head(5):
                positions = utils.getTermPositions(reader, docno)
                where = {t: sorted(int(p) for p in positions.get(t).toArray()) for t in query if positions.get(t)}
                got = stats.features(query, [docno])[0]
                if len(where) < 2:
                    assert math.isnan(got[FEATURES.index("min_window")])
                    continue
                occurrences = sorted((p, t) for t, ps in where.items() for p in ps)
                window = min(
                    occurrences[j][0] - occurrences[i][0] + 1
                    for i in range(len(occurrences))
                    for j in range(i, len(occurrences))
                    if len({t for _, t in occurrences[i : j + 1]}) == len(where)
                )
                pairs = [min(abs(x - y) for x in where[a] for y in where[b]) for a in where for b in where if a < b]
                assert got[FEATURES.index("min_window")] == window, (qid, docno)
                assert got[FEATURES.index("pair_dist_min")] == min(pairs), (qid, docno)
                checked += 1
    finally:
        reader.close()
    assert checked >= 5


def write_model(folder: Path, frame, ctx, columns: list[str], features: list[str], record_columns: bool = True):
    """A LambdaMART model trained on `columns` (as an older cascade would have written it)."""
    import lightgbm

    full = feature_matrix(frame, features, ctx)
    index = {n: i for i, n in enumerate(feature_names(features))}
    if all(c in index for c in columns):
        x = full[:, [index[c] for c in columns]]
    else:  # a column this version lacks: any values train a model of the right width
        x = np.random.default_rng(0).random((len(frame), len(columns)))
    y = (frame["rank"] <= 3).astype(int).to_numpy()
    groups = frame.groupby("qid", sort=False).size().tolist()
    model = lightgbm.LGBMRanker(n_estimators=5, num_leaves=3, min_child_samples=2, verbose=-1)
    model.fit(x, y, group=groups)
    folder.mkdir()
    model.booster_.save_model(str(folder / "model.txt"))
    record = {"features": features, **({"columns": columns} if record_columns else {})}
    (folder / "features.json").write_text(json.dumps(record))
    return folder


def test_a_model_of_the_old_feature_set_still_runs(sample_ctx, tmp_path):
    frame, ctx = sample_ctx
    columns = ["score:bm25", *(f"lexical:{f}" for f in OLD_FEATURES)]
    folder = write_model(tmp_path / "old", frame, ctx, columns, ["bm25", "lexical"])
    out = LTR(model=str(folder), k=20).apply(frame, ctx, [])
    assert len(out.run) == len(frame) and set(out.stats["feature_importance_gain"]) == set(columns)


def test_a_model_with_a_feature_no_longer_computed_is_one_line(sample_ctx, tmp_path):
    frame, ctx = sample_ctx
    columns = ["score:bm25", "lexical:doc_len", "lexical:gone_feature"]
    folder = write_model(tmp_path / "gone", frame, ctx, columns, ["bm25", "lexical"])
    pattern = r"^ltr\.model: the model was trained on features this version does not compute \(lexical:gone_feature\)"
    with pytest.raises(CascadeError, match=pattern) as error:
        LTR(model=str(folder), k=20).apply(frame, ctx, [])
    assert "\n" not in str(error.value)


def test_a_model_without_columns_and_another_width_is_one_line(sample_ctx, tmp_path):
    frame, ctx = sample_ctx
    columns = ["score:bm25", *(f"lexical:{f}" for f in OLD_FEATURES)]
    folder = write_model(tmp_path / "nocols", frame, ctx, columns, ["bm25", "lexical"], record_columns=False)
    with pytest.raises(CascadeError, match=r"model\.txt has 26 features but features\.json names \d+; retrain it"):
        LTR(model=str(folder), k=20).apply(frame, ctx, [])


def test_any_upstream_stage_score_is_a_feature(sample_ctx):
    frame, ctx = sample_ctx
    frame = frame.assign(**{"score:dense_rerank": 1.0, "score:bm25#2": 2.0})
    matrix = feature_matrix(frame, ["dense_rerank", "bm25#2", "bm25", "lexical"], ctx)
    assert matrix.shape == (len(frame), 3 + len(FEATURES))
    assert (matrix[:, 0] == 1.0).all() and (matrix[:, 1] == 2.0).all()


def test_carried_names_follow_the_engine():
    assert carried_names(["bm25", "dense_rerank", "bm25", "bm25"]) == ["bm25", "dense_rerank", "bm25#2", "bm25#3"]


def test_training_feature_no_candidate_provides_is_file_line_key(tmp_path):
    config = tmp_path / "bad.yaml"
    text = (ROOT / "configs" / "train" / "ltr-sample.yaml").read_text()
    config.write_text(text.replace("features: [bm25, lexical]", "features: [bm25, cross_encoder, lexical]"))
    pattern = (
        r"bad\.yaml:8: features\[1\]: feature 'cross_encoder' is not provided by any candidate stage "
        r"\(candidates: bm25\)"
    )
    with pytest.raises(CascadeError, match=pattern):
        ensure_trained(config, Context(ArtifactStore(tmp_path / "cache"), data_dir=None, threads=2, progress=False))
