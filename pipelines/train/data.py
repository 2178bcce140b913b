"""Training data for rerankers: queries with a relevant passage, BM25 hard negatives, a seeded dev split.

Where it comes from (never from test queries; `refuse_overlap` checks ids and texts):
- a registered dataset's queries whose relevant passages (label >= `relevant_label`) are in its corpus, e.g. the
  MS MARCO dev-small queries over the 30k-passage corpus;
- BM25 hard negatives: cascade's own `bm25` stage over the same corpus, keeping the top-ranked passages that are
  not judged relevant (unjudged or label 0; a passage judged below `relevant_label` but above 0 is neither);
- optionally more first stages' negatives (`negatives_from`, e.g. MiniLM and splade-tiny), interleaved with
  BM25's by rank: negatives that a dense or sparse first stage ranks high, not only lexical look-alikes;
- optionally text triples (`query \\t positive \\t negative`), whose own negative comes first among BM25 ones.

Everything is ordered by the dataset and a seed: the same config gives the same groups, split and batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cascade.core.digest import file_digest, frame_digest
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.core.paths import resolve_path
from cascade.eval.datasets import load_dataset
from cascade.eval.textfiles import open_text, reading
from cascade.indexes.docstore import open_docstore
from cascade.rankers.base import build_pipeline
from cascade.rankers.cross_encoder import pair_segments
from cascade.rankers.engine import execute
from cascade.rankers.lucene import BM25


class ExcludedQueries(BaseModel):
    """`train.exclude_queries`, shared by both trainers: query ids never used for training or dev."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # never coerced, finite

    exclude_queries: list[str] = Field(
        default_factory=list, description="query ids never used for training or dev (e.g. a held-out test part)"
    )

    @field_validator("exclude_queries", mode="before")
    @classmethod
    def _ids(cls, value: object) -> object:
        """YAML reads an unquoted id like 1048585 as a number; a query id is its text."""
        return [str(v) for v in value] if isinstance(value, list) else value


class DataSpec(ExcludedQueries):
    """The `train:` section of a training config."""

    dataset: str = "msmarco-passage/dev-small"
    relevant_label: int = Field(1, ge=1, description="labels at or above this are positives")
    dev_queries: int = Field(100, ge=1, description="held out from training, for dev metrics")
    max_queries: int | None = Field(None, gt=0, description="cap on training queries (after the dev split)")
    triples: str | None = Field(None, description="TSV of text triples; 'data:' prefix = relative to the data dir")
    negatives_depth: int = Field(30, gt=0, description="hard negatives come from the BM25 top-N")
    negatives_from: list[dict] = Field(
        default_factory=list,
        description="more first stages (pipeline items, e.g. {dense: {model: minilm-l6}}) whose top-N non-relevant "
        "passages join BM25's as hard negatives",
    )
    dev_depth: int = Field(20, gt=0, description="dev metrics rerank the BM25 top-N of each dev query")
    bm25: dict = Field(default_factory=lambda: {"k1": 0.9, "b": 0.4})

    @model_validator(mode="after")
    def _first_stages(self) -> DataSpec:
        """A bad `negatives_from` item is refused when the config is read, before any training work."""
        negative_stages(self.negatives_from, self.negatives_depth)
        return self


def without_excluded(queries: pd.DataFrame, exclude: list[str], where: str) -> pd.DataFrame:
    """The queries minus `exclude` (applied before any split or sampling); an id the dataset lacks is an error,
    since a mistyped id would silently leave a test query in the training data."""
    if not exclude:
        return queries
    unknown = sorted(set(exclude) - set(queries["qid"].astype(str)))
    if unknown:
        example = ", ".join(repr(q) for q in unknown[:3])
        raise CascadeError(
            f"train.exclude_queries: {len(unknown)} ids are not queries of the training dataset (e.g. {example})",
            where=where,
        )
    return queries[~queries["qid"].astype(str).isin(set(exclude))].reset_index(drop=True)


@dataclass(frozen=True)
class Group:
    """One training query: its first segment, relevant passages, and hard negatives (best BM25 rank first)."""

    qid: str
    query: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]


@dataclass
class TrainingData:
    groups: list[Group]
    dev_candidates: pd.DataFrame  # BM25 run of the dev queries, with `query` (and `instruction`)
    qrels: pd.DataFrame  # of the dev queries
    texts: Callable[[list[str]], list[str]]
    counts: dict = field(default_factory=dict)


def normalised_texts(texts: pd.Series) -> set[str]:
    """Case and spacing do not make a query new."""
    return set(texts.astype(str).str.lower().str.split().str.join(" "))


def refuse_overlap(sources: dict[str, pd.DataFrame], tests: dict[str, pd.DataFrame], where: Callable[[str], str]):
    """Refuse any training query (`key -> qid, query`) that is a test query by id or by text: one-line error."""
    for key, train in sources.items():
        for name, test in tests.items():
            same_id = sorted(set(train["qid"].astype(str)) & set(test["qid"].astype(str))) if "qid" in train else []
            same_text = sorted(normalised_texts(train["query"]) & normalised_texts(test["query"]))
            if same_id or same_text:
                example = ", ".join(repr(x) for x in (same_id or same_text)[:3])
                raise CascadeError(
                    f"{key}: {len(same_id) or len(same_text)} training queries are test queries of '{name}' "
                    f"(same {'id' if same_id else 'text'}, e.g. {example}); test queries never train a model",
                    where=where(key),
                )


def read_triples(path: Path) -> pd.DataFrame:
    """`query \\t positive \\t negative` lines; a short line is an error naming its line."""
    rows = []
    with reading(path, "triples"), open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise CascadeError(f"expected 3 tab-separated fields, found {len(parts)}", where=f"{path}:{number}")
            rows.append((f"triple-{len(rows) + 1}", *parts))
    return pd.DataFrame(rows, columns=["qid", "query", "positive", "negative"])


def split_dev(qids: list[str], n_dev: int, seed: int, key: str = "train.dev_queries") -> tuple[list[str], list[str]]:
    """(train, dev) qids: a seeded permutation, each part kept in the dataset's order (both trainers use it)."""
    if n_dev >= len(qids):
        raise CascadeError(f"{key}: {n_dev} dev queries leave no training queries out of {len(qids)}")
    order = np.random.default_rng(seed).permutation(len(qids))
    dev = set(order[:n_dev].tolist())
    return [q for i, q in enumerate(qids) if i not in dev], [q for i, q in enumerate(qids) if i in dev]


def epoch_order(n_groups: int, epoch: int, seed: int) -> np.ndarray:
    """The order groups are visited in one epoch: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(n_groups)


def sample_group(group: Group, n_negatives: int, rng: np.random.Generator) -> tuple[str, list[str]]:
    """One positive and `n_negatives` hard negatives (with repeats only when the pool is smaller)."""
    positive = group.positives[int(rng.integers(len(group.positives)))]
    pool = len(group.negatives)
    picks = rng.choice(pool, size=n_negatives, replace=pool < n_negatives)
    return positive, [group.negatives[i] for i in picks]


def first_segment(frame: pd.DataFrame, sep: str) -> list[str]:
    instructions = frame["instruction"].tolist() if "instruction" in frame else None
    return pair_segments(frame["query"].tolist(), instructions, sep)


def training_context(dataset, env, seed: int):
    """The stage context of a training command: its dataset's corpus and the command's cache and threads."""
    return Context(
        store=env.store,
        corpus=dataset.corpus,
        data_dir=env.data_dir,
        threads=env.threads,
        progress=env.progress,
        seed=seed,
        log_progress=env.log_progress,
    )


def run_candidates(stages: list, queries: pd.DataFrame, ctx) -> pd.DataFrame:
    """Training candidates come from the same cached stages a pipeline runs, so training and test see one BM25."""
    return execute(stages, queries, ctx).frame


def bm25_candidates(queries: pd.DataFrame, dataset, spec: DataSpec, env, depth: int, seed: int) -> pd.DataFrame:
    """cascade's `bm25` stage over the dataset's corpus, cached like any pipeline stage."""
    stage = BM25(**{**spec.bm25, "k": depth})
    return run_candidates([stage], queries, training_context(dataset, env, seed))


def negative_stages(items: list[dict], depth: int) -> list:
    """The `negatives_from` first stages, each cut at `depth`; a reranking stage or bad parameters are refused."""
    stages = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or len(item) != 1:
            raise ValueError(f"item {index}: map one stage name to its parameters, e.g. {{dense: {{k: 30}}}}")
        ((name, params),) = item.items()
        try:
            stage = build_pipeline([{name: {**(params or {}), "k": depth}}]).stages[0]
        except (CascadeError, TypeError, ValueError) as exc:
            raise ValueError(f"item {index}: {str(exc).splitlines()[0]}") from None
        if stage.reranks:
            raise ValueError(f"item {index}: '{name}' reranks an upstream run; name a first stage (e.g. dense, sparse)")
        stages.append(stage)
    return stages


def mined_negatives(queries: pd.DataFrame, dataset, spec: DataSpec, env, seed: int) -> pd.DataFrame:
    """Each `negatives_from` stage's top `negatives_depth` (qid, docno, rank): one run per stage, cached like any
    pipeline stage, so a dense or SPLADE negative is what that stage would rank there at test time."""
    ctx = training_context(dataset, env, seed)
    runs = [
        run_candidates([stage], queries, ctx)[["qid", "docno", "rank"]]
        for stage in negative_stages(spec.negatives_from, spec.negatives_depth)
    ]
    return pd.concat(runs, ignore_index=True)


def union_by_rank(frames: list[pd.DataFrame]) -> dict[str, list[str]]:
    """qid -> docnos of several runs interleaved by rank (every run's rank 1, then rank 2, ...), each docno once.
    Ties in rank keep the runs' order, so BM25 (listed first) leads and the union is deterministic."""
    joined = pd.concat([f.assign(_source=i) for i, f in enumerate(frames)], ignore_index=True)
    joined = joined.sort_values(["qid", "rank", "_source"], kind="stable").drop_duplicates(["qid", "docno"])
    return joined.groupby("qid", sort=False)["docno"].agg(list).to_dict()


def checked_sources(spec: DataSpec, tests: list[str], data_dir: Path | None, where: Callable[[str], str]):
    """(dataset, triples or None), once no training query is a test query."""
    dataset = load_dataset(spec.dataset, data_dir)
    if dataset.corpus is None:
        raise CascadeError(f"train.dataset: '{spec.dataset}' has no corpus to draw passages from", where=where("train"))
    triples = read_triples(resolve_path(spec.triples, data_dir, "train.triples")) if spec.triples else None
    sources = {"train.dataset": without_excluded(dataset.queries, spec.exclude_queries, where("train.exclude_queries"))}
    if triples is not None:
        sources["train.triples"] = triples[["query"]]
    refuse_overlap(sources, {name: load_dataset(name, data_dir).queries for name in tests}, where)
    return dataset, triples


def build_training_data(
    spec: DataSpec, tests: list[str], env, seed: int, sep: str, where: Callable[[str], str]
) -> TrainingData:
    """Groups for training and BM25 candidates for the dev split, after the overlap check."""
    dataset, triples = checked_sources(spec, tests, env.data_dir, where)
    queries = without_excluded(dataset.queries, spec.exclude_queries, where("train.exclude_queries"))
    queries = queries.reset_index(drop=True)
    qrels = dataset.qrels

    positives = qrels[qrels["label"] >= spec.relevant_label]
    store = open_docstore(dataset.corpus, env.store, env.progress)
    positives = positives[positives["docno"].isin(set(store.lookup(positives["docno"])))]
    usable = [q for q in queries["qid"] if q in set(positives["qid"])]
    train_qids, dev_qids = split_dev(usable, spec.dev_queries, seed)
    if spec.max_queries:
        train_qids = train_qids[: spec.max_queries]

    wanted = set(train_qids) | set(dev_qids)
    selected = queries[queries["qid"].isin(wanted)].reset_index(drop=True)
    search = selected[[c for c in ("qid", "query", "instruction") if c in selected]]
    if triples is not None:
        search = pd.concat([search, triples[["qid", "query"]]], ignore_index=True)
    run = bm25_candidates(search, dataset, spec, env, max(spec.negatives_depth, spec.dev_depth), seed)

    labels = qrels[["qid", "docno", "label"]].rename(columns={"label": "_label"})
    run = run.merge(labels, on=["qid", "docno"], how="left", sort=False)
    run["_label"] = run["_label"].fillna(0)
    negatives = run[(run["rank"] <= spec.negatives_depth) & (run["_label"] <= 0)]
    if spec.negatives_from:
        mined = mined_negatives(search, dataset, spec, env, seed)
        mined = mined.merge(labels, on=["qid", "docno"], how="left", sort=False)
        mined = mined[mined["_label"].fillna(0) <= 0]
        neg_by_q = union_by_rank([negatives[["qid", "docno", "rank"]], mined[["qid", "docno", "rank"]]])
    else:
        neg_by_q = negatives.groupby("qid", sort=False)["docno"].agg(list).to_dict()
    pos_by_q = positives.groupby("qid", sort=False)["docno"].agg(list).to_dict()
    texts = store.texts
    firsts = dict(zip(selected["qid"], first_segment(selected, sep), strict=True))

    groups, skipped = [], 0
    for qid in train_qids:
        negs = neg_by_q.get(qid, [])
        if not negs:
            skipped += 1
            continue
        groups.append(Group(qid, firsts[qid], tuple(texts(pos_by_q[qid])), tuple(texts(negs))))
    if triples is not None:
        for row in triples.itertuples(index=False):
            negs = texts(neg_by_q.get(row.qid, []))
            groups.append(Group(row.qid, row.query, (row.positive,), (row.negative, *negs)))
    if not groups:
        raise CascadeError("train.dataset: no training query has both a relevant passage and a negative")

    dev_candidates = run[run["qid"].isin(set(dev_qids)) & (run["rank"] <= spec.dev_depth)].drop(columns="_label")
    counts = {
        "dataset_queries": len(dataset.queries),
        **({"excluded_queries": len(spec.exclude_queries)} if spec.exclude_queries else {}),
        "with_relevant_in_corpus": len(usable),
        "train_groups": len(groups),
        "train_queries": len(groups) - (len(triples) if triples is not None else 0),
        "triples": 0 if triples is None else len(triples),
        "dev_queries": len(dev_qids),
        "skipped_without_negatives": skipped,
    }
    dev_qrels = qrels[qrels["qid"].isin(set(dev_qids))].reset_index(drop=True)  # unscored queries would count 0
    return TrainingData(groups, dev_candidates.reset_index(drop=True), dev_qrels, texts, counts)


def data_fingerprint(spec: DataSpec, tests: list[str], data_dir: Path | None, where: Callable[[str], str]) -> dict:
    """What the training data is made of, by content: part of a trained model's address. Checks overlap first,
    so a refused config fails before anything is built."""
    dataset, _ = checked_sources(spec, tests, data_dir, where)
    parts = {
        "queries": frame_digest(dataset.queries, ["qid", "query", "instruction"]),
        "qrels": frame_digest(dataset.qrels, ["qid", "docno", "label"]),
        "corpus": dataset.corpus.fingerprint if dataset.corpus is not None else None,
    }
    if spec.triples:
        parts["triples"] = file_digest(resolve_path(spec.triples, data_dir, "train.triples"))
    return parts
