"""NevIR (Weller et al., EACL 2024): negation pairs and the official paired accuracy.

Each instance has two queries and two documents that differ by a negation; doc1 answers q1 and doc2 answers q2.
Each query ranks the two documents of its pair. The pair counts only if q1 puts doc1 strictly first and q2 puts
doc2 strictly first: a tie is wrong, so random scores get 25% and a model blind to negation gets 0%.

Per pair this module also reports the pairwise accuracy of the single queries (0, 0.5 or 1) and whether the
model put the same document first for both queries (it ignored the negation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cascade.core.errors import CascadeError
from cascade.eval.corpus import iter_jsonl

FIELDS = ("id", "q1", "q2", "doc1", "doc2")
MEASURES = ("paired_accuracy", "pairwise_accuracy", "same_first")


@dataclass(frozen=True)
class Pairs:
    """NevIR instances as cascade frames: queries `<id>-q1/q2`, documents `<id>-doc1/doc2`, the 2x2 pools."""

    source: Path
    table: pd.DataFrame  # id, q1, q2, doc1, doc2

    @property
    def queries(self) -> pd.DataFrame:
        rows = [
            (f"{row.id}-q{n}", text)
            for row in self.table.itertuples(index=False)
            for n, text in ((1, row.q1), (2, row.q2))
        ]
        return pd.DataFrame(rows, columns=["qid", "query"])

    def docs(self):
        for row in self.table.itertuples(index=False):
            yield {"docno": f"{row.id}-doc1", "title": "", "text": row.doc1}
            yield {"docno": f"{row.id}-doc2", "title": "", "text": row.doc2}

    @property
    def pools(self) -> pd.DataFrame:
        rows = [(f"{i}-q{n}", f"{i}-doc{d}") for i in self.table["id"] for n in (1, 2) for d in (1, 2)]
        return pd.DataFrame(rows, columns=["qid", "docno"])

    @property
    def qrels(self) -> pd.DataFrame:
        rows = [(f"{i}-q{n}", f"{i}-doc{d}", int(n == d)) for i in self.table["id"] for n in (1, 2) for d in (1, 2)]
        return pd.DataFrame(rows, columns=["qid", "docno", "label"])


def read_pairs(path: str | Path) -> Pairs:
    """Read NevIR's `test.jsonl` (id, q1, q2, doc1, doc2); a line missing a field names the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise CascadeError("NevIR pairs file not found", where=str(path))
    rows, seen = [], set()
    for number, obj in iter_jsonl(path, "NevIR"):
        for name in FIELDS:
            value = obj.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise CascadeError(f"missing field '{name}'", where=f"{path}:{number}")
        pair = str(obj["id"])
        if any(c.isspace() for c in pair):  # its queries and documents are `<id>-q1`, ...: TREC ids
            raise CascadeError(
                f"pair id {pair!r} contains whitespace: a TREC run cannot hold it", where=f"{path}:{number}"
            )
        if pair in seen:
            raise CascadeError(f"pair id '{pair}' appears twice", where=f"{path}:{number}")
        seen.add(pair)
        rows.append((pair, *(str(obj[n]) for n in FIELDS[1:])))
    if not rows:
        raise CascadeError("no NevIR pairs in the file", where=str(path))
    return Pairs(path, pd.DataFrame(rows, columns=list(FIELDS)))


def pair_scores(run: pd.DataFrame, pairs: Pairs) -> pd.DataFrame:
    """The four scores of every pair (`pair, qid, docno, score`): the file an independent scorer recomputes from."""
    pools = pairs.pools
    scored = pools.merge(run[["qid", "docno", "score"]], on=["qid", "docno"], how="left", sort=False)
    missing = scored["score"].isna()
    if missing.any():
        row = scored[missing].iloc[0]
        raise CascadeError(f"the run has no score for query {row.qid!r}, document {row.docno!r} of its pair")
    scored.insert(0, "pair", scored["qid"].str.rsplit("-q", n=1).str[0])
    return scored[["pair", "qid", "docno", "score"]]


def pair_measures(scores: pd.DataFrame) -> pd.DataFrame:
    """Per pair: paired accuracy (both right, strictly), pairwise accuracy (share of right queries), same first."""
    wide = scores.assign(
        key=scores["qid"].str.rsplit("-", n=1).str[1] + "_" + scores["docno"].str.rsplit("-", n=1).str[1]
    ).pivot(index="pair", columns="key", values="score")
    q1_right = wide["q1_doc1"] > wide["q1_doc2"]
    q2_right = wide["q2_doc2"] > wide["q2_doc1"]
    same_first = ((wide["q1_doc1"] > wide["q1_doc2"]) & (wide["q2_doc1"] > wide["q2_doc2"])) | (
        (wide["q1_doc2"] > wide["q1_doc1"]) & (wide["q2_doc2"] > wide["q2_doc1"])
    )
    table = pd.DataFrame(
        {
            "paired_accuracy": (q1_right & q2_right).astype(float),
            "pairwise_accuracy": (q1_right.astype(float) + q2_right.astype(float)) / 2.0,
            "same_first": same_first.astype(float),
        }
    )
    order = {p: i for i, p in enumerate(dict.fromkeys(scores["pair"]))}
    table = table.loc[sorted(table.index, key=order.__getitem__)]
    long = table.reset_index().melt(id_vars="pair", var_name="measure", value_name="value")
    long = long.rename(columns={"pair": "qid"})
    long["measure"] = pd.Categorical(long["measure"], MEASURES, ordered=True)
    long = long.sort_values(["measure"], kind="stable")
    long["measure"] = long["measure"].astype(str)
    return long.reset_index(drop=True)[["qid", "measure", "value"]]
