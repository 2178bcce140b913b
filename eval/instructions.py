"""Instruction-following evaluation: FollowIR's p-MRR and InstructIR's Robustness@10, with readers for both.

Plain nDCG cannot tell whether a system *follows* an instruction: a system that ignores it scores the same on
the original and on a narrowed instruction. Both benchmarks therefore compare runs, and need their own files.

FollowIR (Weller et al. 2024, arXiv:2403.15246) — a folder as published on Hugging Face in
`jhu-clsp/{core17,robust04,news21}-instructions` and read by MTEB's `HFDataLoaderInstructions`
(mteb/abstasks/AbsTaskInstructionRetrieval.py: local mode reads `<qrels>_og/<split>.tsv` and
`<qrels>_changed/<split>.tsv`, keeps the query fields below and `qid, pid` of top_ranked):

    corpus.jsonl               {"_id", "title", "text"}
    queries.jsonl              {"_id", "text", "instruction_og", "instruction_changed"}  (other keys ignored)
    qrels_og/<split>.tsv       query-id  corpus-id  score   (BEIR TSV with header; judgments, 0 included,
    qrels_changed/<split>.tsv  query-id  corpus-id  score    under the original and the changed instruction)
    top_ranked.jsonl           {"qid", "pid"} per line: the candidates to rerank (optional)

InstructIR (Oh et al. 2024, arXiv:2402.14334) — github.com/kaistAI/InstructIR `INSTRUCTIR/`, a BEIR folder
whose queries are instances of a base query, each with its own user instruction and its own target:

    corpus.jsonl[.gz]          {"_id", "title", "text"}
    queries.jsonl[.gz]         {"_id", "text", "instruction", "base_query_id"}
    qrels/<split>.tsv          query-id  corpus-id  score
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from cascade.core.errors import CascadeError, warn
from cascade.eval.corpus import iter_corpus, iter_jsonl
from cascade.eval.measures import canonical, parse_measures
from cascade.eval.runs import normalise_run
from cascade.eval.topics import check_queries, read_qrels

FOLLOWIR_QUERY_FIELDS = ("_id", "text", "instruction_og", "instruction_changed")
INSTRUCTIR_QUERY_FIELDS = ("_id", "text", "instruction", "base_query_id")


@dataclass
class FollowIRData:
    queries: pd.DataFrame  # qid, query, instruction_og, instruction_changed
    corpus: list[dict]  # {"docno", "title", "text"}
    qrels_og: pd.DataFrame  # qid, docno, label
    qrels_changed: pd.DataFrame
    candidates: pd.DataFrame  # qid, docno: the pool each query's runs rank

    def queries_for(self, which: Literal["og", "changed"]) -> pd.DataFrame:
        """`qid, query, instruction` with one of the two instructions: the input of the og or the changed run."""
        column = {"og": "instruction_og", "changed": "instruction_changed"}[which]
        return self.queries[["qid", "query", column]].rename(columns={column: "instruction"})


@dataclass
class InstructIRData:
    queries: pd.DataFrame  # qid, query, instruction, base_qid
    qrels: pd.DataFrame  # qid, docno, label
    corpus: list[dict]  # {"docno", "title", "text"}

    @property
    def base_of(self) -> dict[str, str]:
        """Instance query id -> base query id, for `robustness_at_k`."""
        return dict(zip(self.queries["qid"], self.queries["base_qid"], strict=True))


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise CascadeError(f"no {name} (or {name}.gz) in the folder", where=str(folder))


def _read_jsonl_fields(path: Path, fields: tuple[str, ...], what: str) -> tuple[list[dict], list[int]]:
    """Records with every field present (values as str); the first line lacking one is an error naming it."""
    records, lines = [], []
    for number, obj in iter_jsonl(path, f"JSON {what}"):
        missing = [f for f in fields if obj.get(f) is None]
        if missing:
            raise CascadeError(f"{what} line lacks field {missing[0]!r}", where=f"{path}:{number}")
        records.append({f: str(obj[f]) for f in fields})
        lines.append(number)
    return records, lines


def read_followir(folder: str | Path, split: str = "test") -> FollowIRData:
    """Read a FollowIR folder (layout in the module docstring).

    Queries without original-instruction judgments are dropped, as MTEB does; a judged query without
    changed-instruction judgments is an error, because p-MRR would then count every originally relevant
    document as newly irrelevant.
    """
    folder = Path(folder)
    queries_path = _find(folder, "queries.jsonl")
    records, lines = _read_jsonl_fields(queries_path, FOLLOWIR_QUERY_FIELDS, "FollowIR query")
    queries = pd.DataFrame(records, columns=list(FOLLOWIR_QUERY_FIELDS)).rename(columns={"_id": "qid", "text": "query"})
    check_queries(queries, str(queries_path), lines)

    og_path = _find(folder / "qrels_og", f"{split}.tsv")
    changed_path = _find(folder / "qrels_changed", f"{split}.tsv")
    qrels_og, qrels_changed = read_qrels(og_path), read_qrels(changed_path)
    judged = set(qrels_og["qid"])
    unjudged = ~queries["qid"].isin(judged)
    if unjudged.any():
        warn(f"{int(unjudged.sum())} queries have no judgments and are left out", where=str(og_path))
        queries = queries[~unjudged].reset_index(drop=True)
    changed = set(qrels_changed["qid"])
    for qid in queries["qid"]:
        if qid not in changed:
            raise CascadeError(f"query {qid!r} has no changed-instruction judgments", where=str(changed_path))

    corpus = list(iter_corpus(_find(folder, "corpus.jsonl")))
    top_ranked = [p for p in (folder / "top_ranked.jsonl", folder / "top_ranked.jsonl.gz") if p.is_file()]
    if top_ranked:
        candidates = _read_top_ranked(top_ranked[0], queries, {d["docno"] for d in corpus})
    else:
        both = pd.concat([qrels_og[["qid", "docno"]], qrels_changed[["qid", "docno"]]])
        candidates = both[both["qid"].isin(set(queries["qid"]))].drop_duplicates().reset_index(drop=True)
    return FollowIRData(queries, corpus, qrels_og, qrels_changed, candidates)


def _read_top_ranked(path: Path, queries: pd.DataFrame, docnos: set[str]) -> pd.DataFrame:
    records, _ = _read_jsonl_fields(path, ("qid", "pid"), "top_ranked")
    pool = pd.DataFrame(records, columns=["qid", "pid"]).rename(columns={"pid": "docno"}).drop_duplicates()
    pool = pool[pool["qid"].isin(set(queries["qid"]))]
    unknown = ~pool["docno"].isin(docnos)
    if unknown.any():
        warn(f"{int(unknown.sum())} candidates are not in the corpus and are left out", where=str(path))
        pool = pool[~unknown]
    pooled = set(pool["qid"])
    for qid in queries["qid"]:
        if qid not in pooled:
            raise CascadeError(f"query {qid!r} has no candidates", where=str(path))
    return pool.reset_index(drop=True)


def read_instructir(folder: str | Path, split: str = "test") -> InstructIRData:
    """Read an InstructIR folder (layout in the module docstring); every instance must name its base query."""
    folder = Path(folder)
    queries_path = _find(folder, "queries.jsonl")
    records, lines = _read_jsonl_fields(queries_path, INSTRUCTIR_QUERY_FIELDS, "InstructIR query")
    queries = pd.DataFrame(records, columns=list(INSTRUCTIR_QUERY_FIELDS)).rename(
        columns={"_id": "qid", "text": "query", "base_query_id": "base_qid"}
    )
    check_queries(queries, str(queries_path), lines)
    qrels_path = _find(folder / "qrels", f"{split}.tsv")
    qrels = read_qrels(qrels_path)
    unknown = ~qrels["qid"].isin(set(queries["qid"]))
    if unknown.any():
        raise CascadeError(
            f"judgments for query {qrels['qid'][unknown].iloc[0]!r}, which is not in {queries_path.name}",
            where=str(qrels_path),
        )
    corpus = list(iter_corpus(_find(folder, "corpus.jsonl")))
    return InstructIRData(queries, qrels, corpus)


# --- FollowIR p-MRR -------------------------------------------------------------------------------------------


def rank_change_score(og_rank: int, new_rank: int) -> float:
    """p-MRR's score for one document that the changed instruction made non-relevant, in [-1, 1].

    Positive when the document drops (1 - og/new), negative when it rises (new/og - 1), 0 when it stays.
    Same as MTEB's `rank_score` (mteb/evaluation/evaluators/utils.py):
        if x["og_rank"] >= x["new_rank"]: return ((1 / x["og_rank"]) / (1 / x["new_rank"])) - 1
        else: return 1 - ((1 / x["new_rank"]) / (1 / x["og_rank"]))
    """
    if og_rank >= new_rank:
        return new_rank / og_rank - 1.0
    return 1.0 - og_rank / new_rank


def newly_irrelevant(qrels_og: pd.DataFrame, qrels_changed: pd.DataFrame) -> pd.DataFrame:
    """`qid, docno` relevant (label > 0) under the original instruction and not under the changed one.

    A document the changed qrels do not judge counts as not relevant. A query judged under the original but
    absent from the changed qrels is an error: its instruction change is unknown, not "everything irrelevant".
    """
    missing = sorted(set(qrels_og["qid"]) - set(qrels_changed["qid"]))
    if missing:
        raise CascadeError(f"query {missing[0]!r} has no changed-instruction judgments")
    og = qrels_og[qrels_og["label"] > 0][["qid", "docno"]]
    still = qrels_changed[qrels_changed["label"] > 0][["qid", "docno"]].assign(_still=True)
    merged = og.merge(still, on=["qid", "docno"], how="left")
    return merged[merged["_still"].isna()][["qid", "docno"]].reset_index(drop=True)


def _ranks(run: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """Rank of each (qid, docno) in `run` by descending score (ties: run order); absent -> the query's depth + 1."""
    ranked = normalise_run(run[["qid", "docno", "score"]].astype({"qid": str, "docno": str}).copy())
    depth = ranked.groupby("qid", sort=False).size()
    found = pairs.merge(ranked[["qid", "docno", "rank"]], on=["qid", "docno"], how="left")["rank"]
    fallback = pairs["qid"].map(depth).fillna(0).to_numpy() + 1
    return np.where(found.isna(), fallback, found.to_numpy(dtype="float64")).astype("int64")


def p_mrr_changes(
    run_og: pd.DataFrame, run_changed: pd.DataFrame, qrels_og: pd.DataFrame, qrels_changed: pd.DataFrame
) -> pd.DataFrame:
    """Per document: `qid, docno, og_rank, new_rank, p_mrr`, for the newly non-relevant documents.

    A document missing from a run ranks one past that query's last retrieved document in that run, as
    MTEB's `get_rank_from_dict` does (`len(sorted_by_score) + 1`). Queries missing from either run are left
    out with a warning, as MTEB's `calculate_pmrr` does.
    """
    pairs = newly_irrelevant(qrels_og, qrels_changed)
    og_qids, changed_qids = set(run_og["qid"].astype(str)), set(run_changed["qid"].astype(str))
    present = pairs["qid"].isin(og_qids) & pairs["qid"].isin(changed_qids)
    if not present.all():
        absent = pairs.loc[~present, "qid"].unique()
        warn(
            f"{len(absent)} queries are missing from the original or changed run and left out of p-MRR "
            f"(first: {absent[0]!r})"
        )
        pairs = pairs[present].reset_index(drop=True)
    og_rank, new_rank = _ranks(run_og, pairs), _ranks(run_changed, pairs)
    scores = [rank_change_score(int(o), int(n)) for o, n in zip(og_rank, new_rank, strict=True)]
    return pairs.assign(og_rank=og_rank, new_rank=new_rank, p_mrr=np.asarray(scores, dtype="float64"))


def p_mrr(
    run_og: pd.DataFrame, run_changed: pd.DataFrame, qrels_og: pd.DataFrame, qrels_changed: pd.DataFrame
) -> tuple[float, pd.DataFrame]:
    """FollowIR's p-MRR: (mean over queries of the per-query mean document score, per-query `qid, p_mrr, docs`).

    `run_og` answers each query with its original instruction, `run_changed` with the changed one. Queries
    whose change made no judged document non-relevant have no score and are not averaged (as in MTEB);
    NaN when no query has one. Formula: `rank_change_score`; source: MTEB `calculate_pmrr`.
    """
    changes = p_mrr_changes(run_og, run_changed, qrels_og, qrels_changed)
    perquery = (
        changes.groupby("qid", sort=False)["p_mrr"]
        .agg(["mean", "size"])
        .reset_index()
        .rename(columns={"mean": "p_mrr", "size": "docs"})
    )
    value = float(perquery["p_mrr"].mean()) if len(perquery) else float("nan")
    return value, perquery


# --- InstructIR Robustness@k ----------------------------------------------------------------------------------


class Robustness(NamedTuple):
    """Unpacks as `robustness, mean, per_base`."""

    robustness: float  # mean over base queries of the worst instance's value
    mean: float  # mean over all instances (InstructIR's plain nDCG@10)
    per_base: pd.DataFrame  # base_qid, instances, mean, worst


def robustness_at_k(perquery: pd.DataFrame, base_of: Mapping[str, str], measure: str = "nDCG@10") -> Robustness:
    """InstructIR's Robustness@k: the worst `measure` over a base query's instances, averaged over base queries.

    A system that serves one user's instruction well and another's badly is not robust; the mean hides that,
    the worst case does not. `perquery` is `evaluate`'s `qid, measure, value`; instances without a value (not
    in the run) are not in the minimum, as in InstructIR's eval/robust_eval.py, which groups pytrec_eval's
    per-query results. InstructIR groups by query text; `base_of` (instance -> base id) is the same grouping.
    """
    name = canonical(parse_measures([measure])[0])
    values = perquery[perquery["measure"] == name][["qid", "value"]].astype({"qid": str})
    if values.empty:
        have = sorted(set(perquery["measure"]))
        raise CascadeError(f"no per-query {name} values (measures here: {', '.join(have) or 'none'})")
    bases = values["qid"].map(base_of)
    if bases.isna().any():
        raise CascadeError(f"query {values['qid'][bases.isna()].iloc[0]!r} has no base query")
    per_base = (
        values.assign(base_qid=bases.to_numpy())
        .groupby("base_qid", sort=False)["value"]
        .agg(instances="size", mean="mean", worst="min")
        .reset_index()
    )
    return Robustness(float(per_base["worst"].mean()), float(values["value"].mean()), per_base)
