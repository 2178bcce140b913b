"""The top documents of each query with a snippet of their text, kept in the run folder as `topdocs.jsonl`.

The report may read only run folders, and its per-query drill-down shows what a pipeline put on top; so the runner
writes these few documents' snippets beside the run, taken from the corpus in one streaming pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

TOP_K = 3
SNIPPET_CHARS = 300
_QID = re.compile(r'^\{"qid": ("(?:[^"\\]|\\.)*")')


def wanted_docnos(run: pd.DataFrame, k: int = TOP_K) -> set[str]:
    """The docnos ranked in the top `k` of any query: the only documents whose text is needed."""
    return set(run.loc[run["rank"] <= k, "docno"].astype(str))


def snippet(title: str, text: str, chars: int = SNIPPET_CHARS) -> str:
    joined = " ".join(f"{title.strip()}. {text}".split()) if title.strip() else " ".join(text.split())
    return joined if len(joined) <= chars else joined[: chars - 1].rstrip() + "…"


def top_documents(
    run: pd.DataFrame, texts: Mapping[str, str], k: int = TOP_K, qrels: pd.DataFrame | None = None
) -> list[dict]:
    """One record per query: `qid`, `query` (when the run carries it) and its top `k` documents.

    Each document has `docno, rank, score, text` and, with qrels, its `label` (None when unjudged).
    """
    top = run[run["rank"] <= k]
    labels: dict[tuple[str, str], int] = {}
    if qrels is not None:
        labels = {(str(q), str(d)): int(v) for q, d, v in qrels[["qid", "docno", "label"]].itertuples(index=False)}
    records = []
    for qid, group in top.groupby("qid", sort=False):
        record: dict = {"qid": str(qid)}
        if "query" in group:
            record["query"] = str(group["query"].iloc[0])
        docs = []
        for docno, rank, score in group[["docno", "rank", "score"]].itertuples(index=False):
            doc = {"docno": str(docno), "rank": int(rank), "score": float(score), "text": texts.get(str(docno))}
            if qrels is not None:
                doc["label"] = labels.get((str(qid), str(docno)))
            docs.append(doc)
        record["docs"] = docs
        records.append(record)
    return records


def topdocs_jsonl(records: Iterable[dict]) -> str:
    """JSON lines with `qid` first, so a reader can pick queries without parsing every line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def read_topdocs(path: str | Path, qids: set[str] | None = None) -> dict[str, dict]:
    """Records of `topdocs.jsonl` by qid (only those in `qids` when given); a missing file gives {}.

    With `qids`, a line is parsed only when its leading qid (as `topdocs_jsonl` writes it) is wanted: a
    leaderboard reads a few queries from each of many files with thousands of lines.
    """
    path = Path(path)
    if not path.exists():
        return {}
    wanted = None if qids is None else {json.dumps(str(q), ensure_ascii=False) for q in qids}
    out: dict[str, dict] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if wanted is not None:
                head = _QID.match(line)
                if head is not None and "\\" not in head.group(1) and head.group(1) not in wanted:
                    continue
            if not line.strip():
                continue
            record = json.loads(line)
            if qids is None or str(record.get("qid")) in qids:
                out[str(record["qid"])] = record
    return out
