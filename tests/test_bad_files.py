"""A catalogue of damaged input files, each through the real CLI: exit code 2, one stderr line naming the file
(and the line where there is one), no traceback, no output folder, no temp leftovers.

Config values and CLI options are tests/test_bad_input.py's; this file is about the files a user points at: the
corpus, queries and qrels of a BEIR folder, run files, run folders, suite data and training data. Every case fails
before (or instead of) an index build, so the catalogue stays fast.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cascade

CORPUS = b"".join(
    json.dumps({"_id": f"d{i}", "title": "", "text": text}).encode() + b"\n"
    for i, text in enumerate(["apples are red fruit", "bananas are yellow fruit", "cherries are small and red"], 1)
)
QUERIES = b'{"_id": "q1", "text": "red apples"}\n{"_id": "q2", "text": "yellow bananas"}\n'
QRELS = b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
RUN = b"q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 1.5 t\nq2 Q0 d2 1 3.0 t\n"
TREC_QRELS = b"q1 0 d1 1\nq2 0 d2 1\n"
LATIN1 = "caf\xe9".encode("latin-1")  # a byte that is not UTF-8
BINARY = bytes(range(256)) * 8
BAD_RUN_LINE = b"q2 Q0 d" + LATIN1 + b" 2 1.0 t\n"  # NUL bytes and invalid UTF-8, as a parquet or image file has


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def truncated_gz(data: bytes) -> bytes:
    whole = gz(data)
    return whole[: len(whole) // 2]


def corrupt_gz(data: bytes) -> bytes:
    whole = bytearray(gz(data))
    whole[20:40] = b"\xff" * 20  # the header is intact, the deflate stream is not
    return bytes(whole)


# Files long enough that a cut or broken gzip stream is noticed mid-file (every id distinct, so only the gzip
# damage is wrong with them).
LONG_CORPUS = CORPUS + b"".join(b'{"_id": "d%d", "text": "passage number %d"}\n' % (i, i) for i in range(4, 3000))
LONG_RUN = b"".join(b"q1 Q0 d%d %d %.4f t\n" % (i, i, 1.0 / i) for i in range(1, 3000))
LONG_QRELS = b"".join(b"q1 0 d%d 1\n" % i for i in range(1, 3000))


@dataclass
class Ctx:
    """One case's temp folder: where its files go, its --out and --cache, what it may leave behind."""

    root: Path

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def beir(self, **files: bytes) -> Path:
        """A BEIR folder; keyword `corpus_jsonl_gz=...` writes corpus.jsonl.gz (and no corpus.jsonl), etc."""
        folder = self.root / "beir"
        parts = {"corpus.jsonl": CORPUS, "queries.jsonl": QUERIES, "qrels/test.tsv": QRELS}
        for key, data in files.items():
            name = key.replace("__", "/").replace("_jsonl", ".jsonl").replace("_tsv", ".tsv").replace("_gz", ".gz")
            if name.startswith("corpus."):
                parts.pop("corpus.jsonl")
            parts[name] = data
        for name, data in parts.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return folder

    def file(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def config(self, dataset: str, stages: str = "  - bm25: {k: 10}\n", name: str = "bad") -> Path:
        text = f"name: {name}\ndataset: {dataset}\nmeasures: [nDCG@10]\npipeline:\n{stages}"
        return self.file(f"{name}.yaml", text.encode())

    def run(self, stages: str = "  - bm25: {k: 10}\n", **beir: bytes) -> list:
        """`cascade run` of a one-stage config over a BEIR folder with some files replaced."""
        folder = self.beir(**beir)
        return ["run", self.config("{path: " + str(folder) + "}", stages), "--out", self.out, "--cache", self.cache]

    def run_folder(self, name: str = "r1", metrics: bytes | None = None, perquery: bytes | None = None) -> Path:
        """A run folder as `cascade run` writes it (the parts the report reads)."""
        folder = self.out / name
        self.file(f"out/{name}/perquery.tsv", perquery or b"qid\tmeasure\tvalue\nq1\tnDCG@10\t1.0\nq2\tnDCG@10\t0.5\n")
        self.file(
            f"out/{name}/metrics.json",
            metrics or json.dumps({"name": name, "dataset": "x", "measures": {"nDCG@10": 0.75}}).encode(),
        )
        manifest = {"name": name, "config_hash": f"hash-{name}", "created": "2026-01-01T00:00:00"}
        self.file(f"out/{name}/manifest.json", json.dumps(manifest).encode())
        return folder

    def data_dir_dl19(self) -> Path:
        """A data dir whose msmarco-passage folder serves `msmarco-passage/dl19` (the ReSTTest datasets)."""
        root = self.root / "data"
        folder = root / "msmarco-passage"
        for name, data in {"corpus.jsonl": CORPUS, "queries.jsonl": QUERIES, "qrels/dl19.tsv": QRELS}.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return root


def _suite(c: Ctx, task: str, dataset: str = "sample", data_dir: Path | None = None) -> list:
    """`cascade suite` of a one-task suite over a one-stage pipeline."""
    suite = c.file("suite.yaml", f"suite: bad\ntasks:\n  - {task}\n".encode())
    pipeline = c.config(dataset, name="p")
    return ["suite", suite, "-p", pipeline, "--out", c.out, "--cache", c.cache] + (
        ["--data-dir", data_dir] if data_dir else []
    )


def _train(c: Ctx, triples: bytes) -> list:
    """`cascade train` of the tiny cross-encoder config with its `train.triples` file replaced."""
    path = c.file("triples.tsv", triples)
    text = (
        (ROOT / "configs/train/cross-encoder-tiny.yaml")
        .read_text()
        .replace("  dataset: sample\n", f"  dataset: sample\n  triples: {path}\n")
    )
    assert str(path) in text
    return ["train", "cross-encoder", c.file("train.yaml", text.encode()), "--cache", c.cache]


# (id, the CLI arguments for a case's temp folder, what the one line must match): every pattern names the file,
# and its line where the damage has one; the test also checks that the file is named by its full path.
CASES: list[tuple[str, Callable[[Ctx], list], str]] = [
    # --- cascade run over a local BEIR folder: the corpus (read by the first stage, before any index exists)
    (
        "corpus-not-utf8",
        lambda c: c.run(corpus_jsonl=CORPUS + b'{"_id": "d4", "text": "' + LATIN1 + b'"}\n'),
        r"beir/corpus\.jsonl:4: not UTF-8 text \(byte 0xe9",
    ),
    (
        "corpus-duplicate-id-bm25",
        lambda c: c.run(corpus_jsonl=CORPUS + b'{"_id": "d2", "text": "again"}\n'),
        r"beir/corpus\.jsonl:4: document id 'd2' appears twice \(first on line 2\)",
    ),
    (
        "corpus-duplicate-id-dense",
        lambda c: c.run(
            corpus_jsonl=CORPUS + b'{"_id": "d2", "text": "again"}\n', stages="  - dense: {model: minilm-l6, k: 10}\n"
        ),
        r"beir/corpus\.jsonl:4: document id 'd2' appears twice",
    ),
    (
        "corpus-id-with-space",
        lambda c: c.run(corpus_jsonl=b'{"_id": "d 0", "text": "x"}\n' + CORPUS),
        r"beir/corpus\.jsonl:1: document id 'd 0' contains whitespace",
    ),
    (
        "corpus-id-with-tab",
        lambda c: c.run(corpus_jsonl=CORPUS + b'{"_id": "d\\t9", "text": "x"}\n'),
        r"beir/corpus\.jsonl:4: document id 'd\\t9' contains whitespace",
    ),
    (
        "corpus-empty-id",
        lambda c: c.run(corpus_jsonl=CORPUS + b'\n{"_id": "", "text": "x"}\n'),
        r"beir/corpus\.jsonl:5: empty document id",
    ),
    (
        "corpus-gz-name-on-plain-file",
        lambda c: c.run(corpus_jsonl_gz=CORPUS),
        r"beir/corpus\.jsonl\.gz: named \.gz but not gzip-compressed",
    ),
    (
        "corpus-gz-truncated",
        lambda c: c.run(corpus_jsonl_gz=truncated_gz(LONG_CORPUS)),
        r"beir/corpus\.jsonl\.gz: truncated gzip data",
    ),
    (
        "corpus-gz-corrupt",
        lambda c: c.run(corpus_jsonl_gz=corrupt_gz(LONG_CORPUS)),
        r"beir/corpus\.jsonl\.gz: corrupt gzip data",
    ),
    # --- the queries and qrels (read before any stage runs)
    (
        "queries-not-utf8",
        lambda c: c.run(queries_jsonl=QUERIES + b'{"_id": "q3", "text": "' + LATIN1 + b'"}\n'),
        r"beir/queries\.jsonl:3: not UTF-8 text",
    ),
    (
        "queries-id-with-space",
        lambda c: c.run(queries_jsonl=b'{"_id": "q 1", "text": "red apples"}\n' + QUERIES),
        r"beir/queries\.jsonl:1: query id 'q 1' contains whitespace",
    ),
    (
        "qrels-not-utf8",
        lambda c: c.run(qrels__test_tsv=QRELS + b"q2\td" + LATIN1 + b"\t1\n"),
        r"beir/qrels/test\.tsv:4: not UTF-8 text",
    ),
    (
        "qrels-beir-fractional-label-counts-the-header",
        lambda c: c.run(qrels__test_tsv=QRELS + b"q2\td3\t0.5\n"),
        r"beir/qrels/test\.tsv:4: label '0\.5' is not an integer",
    ),
    # --- a run_file stage
    (
        "run-file-stage-binary",
        lambda c: c.run(stages=f"  - run_file: {{path: {c.file('bin.trec', BINARY)}}}\n"),
        r"bin\.trec:1: binary data",
    ),
    (
        "run-file-stage-not-utf8",
        lambda c: c.run(stages=f"  - run_file: {{path: {c.file('r.trec', RUN + BAD_RUN_LINE)}}}\n"),
        r"r\.trec:4: not UTF-8 text",
    ),
    (
        "run-file-stage-over-corpus-with-duplicate-id",  # the run itself is fine; the snippets' corpus read is not
        lambda c: c.run(
            stages=f"  - run_file: {{path: {c.file('r.trec', RUN)}}}\n",
            corpus_jsonl=CORPUS.replace(b'"d2"', b'"d1"'),
        ),
        r"beir/corpus\.jsonl:2: document id 'd1' appears twice",
    ),
    (
        "config-not-utf8",
        lambda c: [
            "run",
            c.file("bad.yaml", b"name: caf" + LATIN1 + b"\ndataset: sample\npipeline:\n  - bm25: {}\n"),
            "--out",
            c.out,
        ],
        r"bad\.yaml: not UTF-8 text",
    ),
    # --- cascade eval
    (
        "eval-binary-run",
        lambda c: ["eval", c.file("q.txt", TREC_QRELS), c.file("r.trec", BINARY)],
        r"r\.trec:1: binary",
    ),
    (
        "eval-run-not-utf8",
        lambda c: ["eval", c.file("q.txt", TREC_QRELS), c.file("r.trec", RUN + BAD_RUN_LINE)],
        r"r\.trec:4: not UTF-8 text \(byte 0xe9 at column 11\)",
    ),
    (
        "eval-run-gz-name-on-plain-file",
        lambda c: ["eval", c.file("q.txt", TREC_QRELS), c.file("r.trec.gz", RUN)],
        r"r\.trec\.gz: named \.gz but not gzip-compressed",
    ),
    (
        "eval-run-gz-truncated",
        lambda c: ["eval", c.file("q.txt", TREC_QRELS), c.file("r.trec.gz", truncated_gz(LONG_RUN))],
        r"r\.trec\.gz: truncated gzip data",
    ),
    (
        "eval-run-gzip-without-gz-name",
        lambda c: ["eval", c.file("q.txt", TREC_QRELS), c.file("r.trec", gz(RUN))],
        r"r\.trec: gzip-compressed, but its name does not end in \.gz",
    ),
    (
        "eval-qrels-not-utf8",
        lambda c: ["eval", c.file("q.txt", TREC_QRELS + b"q2 0 " + LATIN1 + b" 1\n"), c.file("r.trec", RUN)],
        r"q\.txt:3: not UTF-8 text",
    ),
    (
        "eval-qrels-gz-corrupt",
        lambda c: ["eval", c.file("q.txt.gz", corrupt_gz(LONG_QRELS)), c.file("r.trec", RUN)],
        r"q\.txt\.gz: corrupt gzip data",
    ),
    # --- run folders read by the report
    (
        "leaderboard-metrics-not-utf8",
        lambda c: (
            c.run_folder("r1"),
            c.run_folder("r2", metrics=b'{"name": "caf' + LATIN1 + b'"}'),
            ["leaderboard", c.out],
        )[2],
        r"out/r2/metrics\.json:1: not UTF-8 text",
    ),
    (
        "leaderboard-perquery-not-utf8",
        lambda c: (
            c.run_folder("r1", perquery=b"qid\tmeasure\tvalue\nq1\tnDCG@10\t1.0\nq" + LATIN1 + b"\tnDCG@10\t1\n"),
            ["leaderboard", c.out],
        )[1],
        r"out/r1/perquery\.tsv:3: not UTF-8 text",
    ),
    (
        "compare-metrics-not-utf8",
        lambda c: ["compare", c.run_folder("r1"), c.run_folder("r2", metrics=b'\n{"name": "' + LATIN1 + b'"}')],
        r"out/r2/metrics\.json:2: not UTF-8 text",
    ),
    # --- suites
    (
        "suite-nevir-pairs-not-utf8",
        lambda c: _suite(
            c,
            "negation_pairs: {pairs: "
            + str(
                c.file(
                    "pairs.jsonl",
                    b'{"id": "1", "q1": "a", "q2": "b", "doc1": "c", "doc2": "' + LATIN1 + b'"}\n',
                )
            )
            + "}",
        ),
        r"pairs\.jsonl:1: not UTF-8 text",
    ),
    (
        "suite-nevir-pair-id-with-space",
        lambda c: _suite(
            c,
            "negation_pairs: {pairs: "
            + str(c.file("pairs.jsonl", b'{"id": "p 1", "q1": "a", "q2": "b", "doc1": "c", "doc2": "d"}\n'))
            + "}",
        ),
        r"pairs\.jsonl:1: pair id 'p 1' contains whitespace",
    ),
    (
        "suite-resttest-splits-not-utf8",
        lambda c: _suite(
            c,
            "resttest: {splits: "
            + str(c.file("splits.tsv", b"bucket\ttestset\tsplit\tquery-id\n1\ttrec19\tinterpolate\tq" + LATIN1 + b"\n"))
            + "}",
            dataset="msmarco-passage/dl19",
            data_dir=c.data_dir_dl19(),
        ),
        r"splits\.tsv:2: not UTF-8 text",
    ),
    (
        "suite-config-not-utf8",
        lambda c: [
            "suite",
            c.file("suite.yaml", b"suite: caf" + LATIN1 + b"\n"),
            "-p",
            c.config("sample"),
            "--out",
            c.out,
        ],
        r"suite\.yaml: not UTF-8 text",
    ),
    # --- training data
    (
        "train-triples-not-utf8",
        lambda c: _train(c, b"a query\ta positive\ta negative\nq\tp\t" + LATIN1 + b"\n"),
        r"triples\.tsv:2: not UTF-8 text",
    ),
    (
        "train-triples-binary",
        lambda c: _train(c, BINARY),
        r"triples\.tsv:1: binary data",
    ),
]


def leftovers(root: Path) -> list[Path]:
    """Temp files and folders of an interrupted write (`.NAME.tmp-*`), anywhere under `root`."""
    return [p for p in root.rglob(".*") if re.match(r"\..*\.tmp-", p.name)]


def outputs(c: Ctx) -> list[Path]:
    """What a failed command must not have produced: run folders, suite folders, reports, trained models."""
    made = [p for p in c.out.rglob("*") if p.is_dir() and (p / "run.trec").exists()] if c.out.exists() else []
    made += list(c.out.glob("leaderboard.*")) if c.out.exists() else []
    models = c.cache / "models"
    made += [p for p in models.iterdir() if not p.name.startswith(".")] if models.exists() else []
    return made


@pytest.mark.parametrize(("make", "pattern"), [pytest.param(m, p, id=i) for i, m, p in CASES])
def test_bad_file(tmp_path, make, pattern):
    c = Ctx(tmp_path)
    args = make(c)
    result = run_cascade(*args, env={"CASCADE_DATA": ""})
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stderr[-3000:]
    assert lines[0].startswith("cascade: error: "), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert str(tmp_path) in lines[0], f"the message must name the file by its path: {lines[0]}"
    assert outputs(c) == []
    assert leftovers(tmp_path) == []


def test_catalogue_is_large_enough():
    assert len(CASES) >= 20 and len({case[0] for case in CASES}) == len(CASES)


# --- damage that is not the user's input: the cache, the disk


def test_damaged_cache_entry_is_said_removed_and_rebuilt(tmp_path):
    """A truncated run.parquet in the stage cache: one warning line, the entry is rebuilt, the run succeeds with
    the bytes of a clean run."""
    import pandas as pd

    c = Ctx(tmp_path)
    args = c.run()
    first = run_cascade(*args, env={"CASCADE_DATA": ""})
    assert first.returncode == 0, first.stderr
    clean = (c.out / "bad" / "run.trec").read_bytes()
    [parquet] = list((c.cache / "runs").glob("*/run.parquet"))
    stored = pd.read_parquet(parquet)
    parquet.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])

    again = run_cascade(*args[:-4], "--out", tmp_path / "out2", "--cache", c.cache, env={"CASCADE_DATA": ""})
    assert again.returncode == 0, again.stderr
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr
    assert lines[0].startswith(f"cascade: warning: {parquet.parent}: damaged cache entry"), lines[0]
    assert "building it again" in lines[0]
    assert (tmp_path / "out2" / "bad" / "run.trec").read_bytes() == clean
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), stored)
    assert leftovers(tmp_path) == []


def test_full_disk_while_lucene_indexes_is_one_line(tmp_path):
    """Anserini's IndexCollection fails with an IOException when the cache's disk is full: one line naming the
    index folder, no traceback, nothing left behind. The disk is a small tmpfs mounted as the --cache."""
    import os
    import random
    import subprocess

    cache = tmp_path / "cache"
    cache.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the --cache needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(cache)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        rng = random.Random(1)
        words = [f"w{i}" for i in range(3000)]
        corpus = b"".join(
            json.dumps({"_id": f"d{i}", "text": " ".join(rng.choices(words, k=100))}).encode() + b"\n"
            for i in range(1, 1500)
        )
        c = Ctx(tmp_path)
        result = run_cascade(*c.run(corpus_jsonl=corpus), env={"CASCADE_DATA": ""})
        assert result.returncode == 2, result.stderr[-3000:]
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr[-3000:]
        assert lines[0].startswith(f"cascade: error: {cache / 'lucene'}"), lines[0]
        assert "no space left on device" in lines[0], lines[0]
        assert outputs(c) == []
        assert leftovers(cache) == []
        assert not [p for p in (cache / "lucene").iterdir() if not p.name.endswith(".lock")]
    finally:
        subprocess.run(["umount", str(cache)], check=False)


def test_store_rebuilds_an_entry_it_cannot_read_once(tmp_path, capsys):
    from cascade.core.store import ArtifactStore

    store = ArtifactStore(tmp_path)
    builds = []

    def build(tmp: Path) -> dict:
        builds.append(tmp)
        (tmp / "data.json").write_text('{"value": 1}')
        return {}

    def load(folder: Path) -> dict:
        return json.loads((folder / "data.json").read_text())

    assert store.get_or_load("k", "key", build, {}, load)[0] == {"value": 1}
    (store.path("k", "key") / "data.json").write_text('{"val')  # a cut write
    value, folder, built = store.get_or_load("k", "key", build, {}, load)
    assert (value, built, len(builds)) == ({"value": 1}, True, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cascade: warning: {folder}: damaged cache entry (JSONDecodeError")
    assert leftovers(tmp_path) == []

    def broken(tmp: Path) -> dict:
        (tmp / "data.json").write_text("not json")
        return {}

    with pytest.raises(ValueError):  # a fresh build that cannot be read is a bug to see, not a loop
        store.get_or_load("k", "other", broken, {}, load)
