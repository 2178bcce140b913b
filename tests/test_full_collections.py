"""Full collections: the document store, TSV collections, one corpus per ir_datasets parent, and corpus encoding in
shards that a killed run resumes (issue 12). Real Lucene, MiniLM and SQLite on the built-in sample."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.eval.datasets import SAMPLE_DIR, load_dataset, load_folder
from cascade.eval.frames import iter_corpus
from cascade.indexes.docstore import open_docstore
from tests.conftest import ROOT, run_cascade, wait_for

SAMPLE_DOCS = [json.loads(line) for line in (SAMPLE_DIR / "corpus.jsonl").read_text().splitlines() if line.strip()]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def tsv_folder(folder: Path, docs: list[dict] = SAMPLE_DOCS) -> Path:
    """The sample as MS MARCO ships a collection: `collection.tsv`, `queries.tsv`, TREC qrels."""
    write(folder / "collection.tsv", "".join(f"{d['_id']}\t{d['text']}\n" for d in docs))
    queries = [json.loads(x) for x in (SAMPLE_DIR / "queries.jsonl").read_text().splitlines() if x.strip()]
    write(folder / "queries.tsv", "".join(f"{q['_id']}\t{q['text']}\n" for q in queries))
    qrels = (SAMPLE_DIR / "qrels" / "test.tsv").read_text().splitlines()[1:]
    write(folder / "qrels" / "test.tsv", "".join("{} 0 {} {}\n".format(*row.split("\t")) for row in qrels if row))
    return folder


# --------------------------------------------------------------------------- the document store


def test_docstore_returns_every_text_of_the_corpus_and_refuses_an_unknown_docno(tmp_path):
    corpus = load_dataset("sample").corpus
    store = open_docstore(corpus, Context.open(cache_dir=tmp_path).store)
    docs = list(corpus.docs())
    assert store.size == len(docs) == corpus.size
    wanted = [d["docno"] for d in docs[::-1]]
    expected = {d["docno"]: f"{d['title']} {d['text']}".strip() if d["title"] else d["text"] for d in docs}
    assert store.texts(wanted) == [expected[d] for d in wanted]
    assert store.lookup(["nope", wanted[0]]) == {wanted[0]: (docs[-1]["title"], docs[-1]["text"])}
    with pytest.raises(CascadeError, match=r"document 'nope' is not in the corpus of 'sample' \(325 documents\)"):
        store.texts([wanted[0], "nope"])


def test_a_run_naming_a_document_the_store_lacks_is_one_line(tmp_path):
    write(tmp_path / "r.trec", "q01 Q0 nope 1 9.0 x\n")
    config = write(
        tmp_path / "c.yaml",
        f"name: c\ndataset: sample\npipeline:\n  - run_file: {{path: {tmp_path / 'r.trec'}}}\n"
        "  - dense_rerank: {k: 10}\n",
    )
    result = run_cascade("run", config, "--cache", tmp_path / "cache", "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "cascade: error: document 'nope' is not in the corpus of 'sample' (325 documents): the run names a document "
        "of another collection"
    ]
    assert not (tmp_path / "out" / "c").exists()


def test_file_fingerprint_is_remembered_between_processes_and_follows_the_file(tmp_path):
    folder = tsv_folder(tmp_path / "data")
    ctx = Context.open(cache_dir=tmp_path / "cache")
    corpus = load_folder(folder).corpus
    ctx.for_run(corpus, 1)
    first = corpus.fingerprint
    memo = list((tmp_path / "cache" / "fingerprints").iterdir())
    assert len(memo) == 1 and memo[0].read_text() == first
    # a changed file (new size and time) gets its own fingerprint, not the remembered one
    with open(folder / "collection.tsv", "a", encoding="utf-8") as handle:
        handle.write("extra\tone more passage\n")
    again = load_folder(folder).corpus
    ctx.for_run(again, 1)
    assert again.fingerprint != first
    assert len(list((tmp_path / "cache" / "fingerprints").iterdir())) == 2


# --------------------------------------------------------------------------- TSV collections and bad input


def test_tsv_collection_ranks_as_its_jsonl_twin(tmp_path):
    """MS MARCO's shape (collection.tsv, queries.tsv, TREC qrels) gives the run the BEIR folder gives."""
    docs = [{**d, "title": ""} for d in SAMPLE_DOCS]  # a TSV collection has no titles
    tsv_folder(tmp_path / "tsv", docs)
    beir = tmp_path / "beir"
    write(beir / "corpus.jsonl", "".join(json.dumps(d) + "\n" for d in docs))
    write(beir / "queries.tsv", (tmp_path / "tsv" / "queries.tsv").read_text())
    write(beir / "qrels" / "test.tsv", (tmp_path / "tsv" / "qrels" / "test.tsv").read_text())
    runs = []
    for name in ("tsv", "beir"):
        config = write(
            tmp_path / f"{name}.yaml",
            f"name: {name}\ndataset: {{path: {tmp_path / name}}}\npipeline:\n  - bm25: {{k: 20}}\n",
        )
        result = run_cascade("run", config, "--cache", tmp_path / "cache", "--out", tmp_path / "out", "-q")
        assert result.returncode == 0, result.stderr
        runs.append((tmp_path / "out" / name / "run.trec").read_text().replace(f" {name}\n", "\n"))
    assert runs[0] == runs[1] and runs[0].count("\n") > 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\tfirst\nb second\n", r"collection\.tsv:2: not a collection line \(docno<TAB>text\): no tab"),
        (
            "a\tfirst\nb\tsecond\na\tthird\nb\tfourth\n",
            r"collection\.tsv:3: document id 'a' appears twice \(first on line 1\)",
        ),
        ("a\tfirst\n\tsecond\n", r"collection\.tsv:2: empty document id"),
    ],
)
def test_tsv_collection_bad_lines(tmp_path, text, message):
    path = write(tmp_path / "collection.tsv", text)
    with pytest.raises(CascadeError, match=message):
        list(iter_corpus(path))


def test_duplicate_docno_in_a_collection_is_refused_by_the_cli_before_any_index_is_kept(tmp_path):
    tsv_folder(tmp_path / "data")
    with open(tmp_path / "data" / "collection.tsv", "a", encoding="utf-8") as handle:
        handle.write(f"{SAMPLE_DOCS[3]['_id']}\tthe same id again\n")
    config = write(tmp_path / "c.yaml", f"name: c\ndataset: {{path: {tmp_path / 'data'}}}\npipeline:\n  - bm25: {{}}\n")
    result = run_cascade("run", config, "--cache", tmp_path / "cache", "--out", tmp_path / "out")
    assert result.returncode == 2
    line = len(SAMPLE_DOCS) + 1
    assert result.stderr.strip().splitlines() == [
        f"cascade: error: {tmp_path / 'data' / 'collection.tsv'}:{line}: document id '{SAMPLE_DOCS[3]['_id']}' "
        "appears twice (first on line 4)"
    ]
    assert not any((tmp_path / "cache" / "lucene").glob("*/card.json"))


def test_ir_datasets_that_share_documents_share_one_corpus_fingerprint():
    """DL19 and DL20 are two query sets over msmarco-passage's 8.8M passages: one index, not two (metadata only,
    nothing is downloaded)."""
    dl19 = load_dataset("irds:msmarco-passage/trec-dl-2019/judged").corpus
    dl20 = load_dataset("irds:msmarco-passage/trec-dl-2020/judged").corpus
    dev = load_dataset("irds:msmarco-passage/dev/small").corpus
    assert dl19.fingerprint == dl20.fingerprint == dev.fingerprint
    assert dl19.name == "irds:msmarco-passage" and dl19.size == 8_841_823
    assert load_dataset("irds:beir/scifact/test").corpus.fingerprint != dl19.fingerprint


# --------------------------------------------------------------------------- corpus encoding in shards

DENSE = "name: enc\ndataset: sample\nmeasures: [nDCG@10]\npipeline:\n  - dense: {{k: 10, shard_size: {shard}}}\n"

# The CLI with the third corpus shard of a dense encode made to wait (after two shards were written and recorded):
# the test kills it there, never racing an encode that might finish first.
KILLED_IN_THIRD_SHARD = """
import sys, time
from pathlib import Path
marker = Path(sys.argv.pop(1))
import cascade.indexes.dense as dense
original, calls = dense.encode, []
def encode(encoder, texts, **kw):
    calls.append(len(texts))
    if len(calls) == 3:
        marker.write_text("third shard")
        while True:
            time.sleep(1)
    return original(encoder, texts, **kw)
dense.encode = encode
from cascade.pipelines.cli import main
sys.argv[0] = "cascade"
main()
"""


def embeddings(cache: Path) -> tuple[bytes, bytes, dict]:
    (folder,) = [p.parent for p in (cache / "dense-embeddings").glob("*/card.json")]
    card = json.loads((folder / "card.json").read_text())
    return (folder / "embeddings.npy").read_bytes(), (folder / "docnos.txt").read_bytes(), card


def stage_stats(out: Path) -> dict:
    """The shard counts; the measured figures (time, the encoding's peak memory) are checked for presence only."""
    manifest = json.loads((out / "enc" / "manifest.json").read_text())
    stats = dict(manifest["stages"][0]["stats"]["embeddings"])
    assert stats.pop("build_seconds") >= 0 and stats.pop("encode_peak_rss_mb") > 0
    workers = stats.pop("shard_workers")
    assert len(workers) == stats["shards"] and workers.count("reused") == stats["shards_reused"]
    return stats


def test_killed_encode_resumes_at_the_first_unfinished_shard_and_equals_an_uninterrupted_one(tmp_path):
    config = write(tmp_path / "enc.yaml", DENSE.format(shard=50))  # 325 passages: 7 shards
    whole = run_cascade("run", config, "--cache", tmp_path / "whole", "--out", tmp_path / "o1", "-q")
    assert whole.returncode == 0, whole.stderr
    assert stage_stats(tmp_path / "o1") == {
        "documents": 325,
        "shards": 7,
        "shards_encoded": 7,
        "shards_reused": 0,
        "shards_repaired": 0,
    }

    marker = tmp_path / "marker"
    args = ["run", config, "--cache", tmp_path / "cache", "--out", tmp_path / "o2", "-q"]
    proc = subprocess.Popen([sys.executable, "-c", KILLED_IN_THIRD_SHARD, str(marker), *map(str, args)], cwd=ROOT)
    try:
        wait_for(marker, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    shards = next((tmp_path / "cache" / "shards" / "dense-embeddings").iterdir())
    assert sorted(p.name for p in shards.glob("*.json")) == ["00000.json", "00001.json"]
    assert not list((tmp_path / "cache" / "dense-embeddings").glob("*/card.json"))

    # a recorded shard damaged by hand is found by its size, said, and encoded again
    npy = shards / "00001.npy"
    npy.write_bytes(npy.read_bytes()[:-100])
    again = run_cascade(*args)
    assert again.returncode == 0, again.stderr
    assert "dense shard 1" in again.stderr and "its record says" in again.stderr
    assert stage_stats(tmp_path / "o2") == {
        "documents": 325,
        "shards": 7,
        "shards_encoded": 6,
        "shards_reused": 1,
        "shards_repaired": 1,
    }
    resumed, uninterrupted = embeddings(tmp_path / "cache"), embeddings(tmp_path / "whole")
    assert resumed[:2] == uninterrupted[:2]  # vectors and docnos, byte for byte
    assert not shards.exists()  # the finished artifact holds everything; its shards are gone
    assert (tmp_path / "o1" / "enc" / "run.trec").read_bytes() == (tmp_path / "o2" / "enc" / "run.trec").read_bytes()


DISK_FULL_IN_THIRD_SHARD = """
import errno, os, sys
import numpy as np
original, calls = np.save, []
def save(file, array, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(file, "name", str(file)))
    return original(file, array, *args, **kwargs)
np.save = save
from cascade.pipelines.cli import main
sys.argv[0] = "cascade"
main()
"""


def test_a_disk_that_fills_during_encoding_leaves_no_shard_recorded_as_done(tmp_path):
    config = write(tmp_path / "enc.yaml", DENSE.format(shard=100))
    args = ["run", config, "--cache", tmp_path / "cache", "--out", tmp_path / "out", "-q"]
    full = subprocess.run(
        [sys.executable, "-c", DISK_FULL_IN_THIRD_SHARD, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert full.returncode == 2
    (line,) = full.stderr.strip().splitlines()
    assert line.startswith("cascade: error: ") and line.endswith("No space left on device")
    shards = next((tmp_path / "cache" / "shards" / "dense-embeddings").iterdir())
    assert sorted(p.name for p in shards.iterdir()) == [
        "00000.docnos.txt",
        "00000.json",
        "00000.npy",
        "00001.docnos.txt",
        "00001.json",
        "00001.npy",
    ]  # the third shard's half-written file is gone, and it has no record
    assert not (tmp_path / "out" / "enc").exists()
    again = run_cascade(*args)
    assert again.returncode == 0, again.stderr
    assert stage_stats(tmp_path / "out")["shards_reused"] == 2
    arrays = np.load(next((tmp_path / "cache" / "dense-embeddings").glob("*/embeddings.npy")))
    assert arrays.shape == (325, 384) and arrays.dtype == np.float16


def test_estimate_says_what_is_cached_and_what_must_be_built(tmp_path):
    config = write(tmp_path / "enc.yaml", DENSE.format(shard=1000))
    before = run_cascade("estimate", config, "--cache", tmp_path / "cache")
    assert before.returncode == 0, before.stderr
    lines = before.stdout.splitlines()
    assert lines[0] == "enc: corpus of 325 documents"
    assert [line.split()[0] for line in lines[1:4]] == ["dense", "dense", "dense"]
    assert all("to build" in line for line in lines[1:4]) and lines[-1].startswith("  to build: ")
    assert not (tmp_path / "cache" / "dense-embeddings").exists()  # estimating builds nothing
    assert run_cascade("run", config, "--cache", tmp_path / "cache", "--out", tmp_path / "o", "-q").returncode == 0
    after = run_cascade("estimate", config, "--cache", tmp_path / "cache")
    assert all(" cached " in line for line in after.stdout.splitlines()[1:4])
    assert after.stdout.splitlines()[-1] == "  to build: nothing"
