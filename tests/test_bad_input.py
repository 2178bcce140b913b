"""The catalogue of bad input: every case runs the real CLI (a fresh process) and must fail the same way.

Exit code 2; exactly one non-empty line on stderr that names the file, line and key (or the option, or the
path); no traceback; and nothing written: no run folder under --out, no `.*.tmp-*` leftover anywhere.

Bad values are refused when the config is read, never coerced (`k: "10"`, `k: 10.0`, `k: true`) and never
found after an index is built (`k: 2147483648`, `k1: .inf`); several configs on one command line are all checked
before any runs; `data:` paths stay inside the data dir; a file where a folder goes, a read-only folder and a
full disk are one line each. Corrupt, non-UTF-8, compressed or binary files are `tests/test_bad_files.py`'s.

Cases are rows of `CASES`; each builds its files under the test's temp folder (`{tmp}` in arguments and file
texts) and nearly all fail before any index is built, so the catalogue stays fast.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cascade

SAMPLE = ROOT / "configs" / "sample"
TRAIN = ROOT / "configs" / "train" / "ltr-sample.yaml"
NEGATION = ROOT / "configs" / "suites" / "sample-negation.yaml"


def config(stages: str, head: str = "", name: str = "bad", dataset: str = "sample") -> str:
    """A small pipeline config: lines 1-3 are name, dataset and measures, then `head`, then the pipeline."""
    return f"name: {name}\ndataset: {dataset}\nmeasures: [nDCG@10]\n{head}pipeline:\n{stages}\n"


GOOD = config("  - bm25: {k: 10}", name="good")  # stage on line 5
TRAINING = TRAIN.read_text()
OUT = ["--out", "{tmp}/out", "--cache", "{tmp}/cache"]


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]  # after `cascade`; `{tmp}` is the test's temp folder
    pattern: str  # searched in the one stderr line
    files: dict[str, str] = field(default_factory=dict)  # name -> text, under {tmp}
    env: dict[str, str] = field(default_factory=dict)
    fault: tuple[str, str, str] | None = None  # (errno name, Path method, name it fails on): see FAULTY_CLI
    read_only: str | None = None  # a folder under {tmp} made read-only first


def run_case(stages: str, pattern: str, id: str, head: str = "", **kw) -> Case:
    """`cascade run bad.yaml` of a config with these stages."""
    return Case(id, ["run", "{tmp}/bad.yaml", *OUT], pattern, {"bad.yaml": config(stages, head)}, **kw)


def train_case(id: str, old: str, new: str, pattern: str) -> Case:
    """`cascade train ltr` of the sample training config with one line changed."""
    assert old in TRAINING, old
    text = TRAINING.replace(old, new)
    return Case(id, ["train", "ltr", "{tmp}/train.yaml", "--cache", "{tmp}/cache"], pattern, {"train.yaml": text})


SWEEP = f"name: sw\nbase: {SAMPLE / 'bm25.yaml'}\ngrid:\n  bm25.k: [10, 20]\n"
SUITE = "suite: s\ntasks:\n  - own: {}\n"


def suite_case(id: str, text: str, pattern: str, pipelines: tuple[str, ...] = ("good.yaml",), **kw) -> Case:
    args = ["suite", "{tmp}/suite.yaml", *(a for p in pipelines for a in ("-p", "{tmp}/" + p)), *OUT]
    return Case(id, args, pattern, {"suite.yaml": text, "good.yaml": GOOD, **kw.pop("files", {})}, **kw)


def sweep_case(id: str, text: str, pattern: str, **kw) -> Case:
    return Case(id, ["sweep", "{tmp}/sweep.yaml", *OUT], pattern, {"sweep.yaml": text, **kw.pop("files", {})}, **kw)


QRELS = {"q.txt": "1 0 a 1\n", "r.trec": "1 Q0 a 1 2.0 t\n"}
EVAL = ["eval", "{tmp}/q.txt", "{tmp}/r.trec"]

CASES = [
    # --- run: config keys and values (never coerced; bounds checked before any index is built)
    run_case("  - bm25: {k: 10}", r"bad\.yaml:4: measurez: unknown key", "unknown-key", head="measurez: [x]\n"),
    run_case("  - bm25: {k: ten}", r"bad\.yaml:5: pipeline\[0\]\.bm25\.k: .*integer", "k-word"),
    run_case('  - bm25: {k: "10"}', r"bad\.yaml:5: pipeline\[0\]\.bm25\.k: .*integer", "k-string"),
    run_case("  - bm25: {k: 10.0}", r"bad\.yaml:5: pipeline\[0\]\.bm25\.k: .*integer", "k-float"),
    run_case("  - bm25: {k: true}", r"bad\.yaml:5: pipeline\[0\]\.bm25\.k: .*integer", "k-bool"),
    run_case("  - bm25: {k: 2147483648}", r"bad\.yaml:5: pipeline\[0\]\.bm25\.k: .*2147483647", "k-over-int32"),
    run_case("  - bm25: {k: 0}", r"bad\.yaml:5: pipeline\[0\]\.bm25\.k: .*greater than 0", "k-zero"),
    run_case("  - bm25: {k1: .inf}", r"bad\.yaml:5: pipeline\[0\]\.bm25\.k1: .*finite", "k1-inf"),
    run_case("  - bm25: {b: .nan}", r"bad\.yaml:5: pipeline\[0\]\.bm25\.b: .*finite", "b-nan"),
    run_case("  - rm3: {fb_terms: 10.5}", r"bad\.yaml:5: pipeline\[0\]\.rm3\.fb_terms: .*integer", "rm3-float"),
    run_case("  - bm25: {k: 10}", r"bad\.yaml:4: seed: .*greater than or equal to 0", "seed-negative", "seed: -1\n"),
    run_case("  - bm25: {k: 10}", r"bad\.yaml:4: seed: .*4294967295", "seed-over-uint32", "seed: 4294967296\n"),
    run_case("  - bm25: {k: 10}", r"bad\.yaml:4: seed: .*integer", "seed-string", 'seed: "42"\n'),
    run_case("  - bm25: {k: 10}", r"bad\.yaml:4: seed: .*integer", "seed-bool", "seed: true\n"),
    run_case("  - bm25: {k: 10, k: 20}", r"bad\.yaml:5: .*duplicate key 'k'", "duplicate-stage-key"),
    run_case("  - bm25: {k: 10}", r"bad\.yaml:4: .*duplicate key 'name'", "duplicate-top-key", "name: again\n"),
    run_case("  - bm42: {k: 10}", r"bad\.yaml:5: pipeline\[0\]\.bm42: unknown stage", "unknown-stage"),
    Case(
        "unknown-measure",
        ["run", "{tmp}/bad.yaml", *OUT],
        r"bad\.yaml:3: .*unknown measure 'nDCG@x'",
        {"bad.yaml": config("  - bm25: {k: 10}").replace("[nDCG@10]", "[nDCG@x]")},
    ),
    # --- run: a reranker first, fusion and learning-to-rank wiring
    run_case(
        "  - cross_encoder: {model: minilm-ce, k: 10}",
        r"bad\.yaml:5: pipeline\[0\]\.cross_encoder: reranks an upstream run",
        "cross-encoder-first",
    ),
    run_case(
        "  - dense_rerank: {model: minilm-l6, k: 10}",
        r"bad\.yaml:5: pipeline\[0\]\.dense_rerank: reranks an upstream run",
        "dense-rerank-first",
    ),
    run_case("  - ltr: {model: x, k: 10}", r"bad\.yaml:5: pipeline\[0\]\.ltr: reranks an upstream run", "ltr-first"),
    run_case(
        "  - rrf: {inputs: [[bm25: {k: 10}], [rm3: {k: 10}]], weights: [1.0]}",
        r"bad\.yaml:5: pipeline\[0\]\.rrf.*: 1 weights? for 2 inputs",
        "fusion-weights-count",
    ),
    run_case(
        "  - combsum: {inputs: [[bm25: {k: 10}], [rm3: {k: 10}]], weights: [.nan, 1.0]}",
        r"bad\.yaml:5: pipeline\[0\]\.combsum\.weights\[0\]: .*finite",
        "fusion-weight-nan",
    ),
    run_case(
        "  - rrf: {inputs: [[bm25: {k: 10}], [rm3: {k: 10}]], weights: [1.0, .inf]}",
        r"bad\.yaml:5: pipeline\[0\]\.rrf\.weights\[1\]: .*finite",
        "fusion-weight-inf",
    ),
    run_case(
        "  - rrf: {inputs: [[bm25: {k: 10}], [rm3: {k: 10}]], weights: [1, -1]}",
        r"bad\.yaml:5: pipeline\[0\]\.rrf\.weights: .*>= 0",
        "fusion-weight-negative",
    ),
    run_case(
        "  - rrf: {inputs: [[bm25: {k: 10}]]}", r"bad\.yaml:5: pipeline\[0\]\.rrf\.inputs: .*at least 2", "fusion-one"
    ),
    run_case(
        "  - combsum: {inputs: [[bm25: {k: 10}], [rm3: {k: 10}]], weights: tune}",
        r"bad\.yaml:5: pipeline\[0\]\.combsum: weights: tune needs a dev set",
        "fusion-tune-without-dev-set",
    ),
    run_case(
        "  - rrf: {inputs: [[bm25: {k: 10}], [rm3: {k: 10}]], weights: tune, tune: {dataset: sample}}",
        r"bad\.yaml:5: pipeline\[0\]\.rrf\.tune: 99 dev queries are queries being ranked .*refused",
        "fusion-tune-on-evaluated-queries",
    ),
    run_case(
        "  - rrf: {inputs: [[bm25: {k: 10}], [dense_rerank: {model: minilm-l6}]]}",
        r"bad\.yaml:5: pipeline\[0\]\.rrf\.inputs\[1\]\[0\]\.dense_rerank: reranks an upstream run",
        "fusion-input-reranker-first",
    ),
    run_case(
        f'  - rm3: {{k: 30}}\n  - ltr: {{model: "train:{TRAIN}", k: 30}}',
        r"bad\.yaml:6: pipeline\[1\]\.ltr: needs the scores of 'bm25', which no upstream stage provides",
        "ltr-feature-not-upstream",
    ),
    run_case(
        '  - bm25: {k: 10}\n  - ltr: {model: "train:{tmp}/nope.yaml"}',
        r"bad\.yaml:6: pipeline\[1\]\.ltr\.model: training config '.*nope\.yaml' not found",
        "train-ref-missing",
    ),
    # --- run: datasets and `data:` paths, checked for every config before any runs
    Case(
        "second-config-unknown-dataset",
        ["run", "{tmp}/good.yaml", "{tmp}/bad.yaml", *OUT],
        r"bad\.yaml:2: dataset: unknown dataset 'msmarco-pasage/dl19'; did you mean 'msmarco-passage/dl19'",
        {"good.yaml": GOOD, "bad.yaml": config("  - bm25: {k: 10}", dataset="msmarco-pasage/dl19")},
    ),
    Case(
        "second-config-missing-data-file",
        ["run", "{tmp}/good.yaml", "{tmp}/bad.yaml", *OUT, "--data-dir", "{tmp}/data"],
        r"bad\.yaml:5: pipeline\[0\]\.run_file\.path: '.*data/missing\.trec' does not exist",
        {"good.yaml": GOOD, "bad.yaml": config('  - run_file: {path: "data:missing.trec"}'), "data/x": ""},
    ),
    Case(
        "second-config-bad-value",
        ["run", "{tmp}/good.yaml", "{tmp}/bad.yaml", *OUT],
        r"bad\.yaml:5: pipeline\[0\]\.bm25\.k: ",
        {"good.yaml": GOOD, "bad.yaml": config('  - bm25: {k: "10"}')},
    ),
    Case(
        "two-configs-one-name",
        ["run", "{tmp}/good.yaml", "{tmp}/again.yaml", *OUT],
        r"again\.yaml: name: 'good' is also the name of .*good\.yaml",
        {"good.yaml": GOOD, "again.yaml": GOOD.replace("k: 10", "k: 20")},
    ),
    Case(
        "dataset-folder-missing",
        ["run", "{tmp}/bad.yaml", *OUT],
        r"bad\.yaml:2: dataset: dataset folder '.*nowhere' does not exist",
        {"bad.yaml": config("  - bm25: {k: 10}", dataset="{path: {tmp}/nowhere}")},
    ),
    Case(
        "data-dir-missing",
        ["run", "{tmp}/bad.yaml", *OUT, "--data-dir", "{tmp}/nowhere"],
        r"data dir '.*nowhere' does not exist \(from --data-dir\)",
        {"bad.yaml": config("  - bm25: {k: 10}", dataset="msmarco-passage/dl19")},
    ),
    Case(
        "data-dir-unset",
        ["run", "{tmp}/bad.yaml", *OUT],
        r"bad\.yaml:2: dataset: .*reads the data dir: pass --data-dir or set CASCADE_DATA",
        {"bad.yaml": config("  - bm25: {k: 10}", dataset="msmarco-passage/dl19")},
        env={"CASCADE_DATA": ""},
    ),
    Case(
        "data-path-dotdot",
        ["run", "{tmp}/bad.yaml", *OUT, "--data-dir", "{tmp}/data"],
        r"bad\.yaml:5: pipeline\[0\]\.run_file\.path: 'data:\.\./outside\.trec' leaves the data dir",
        {"bad.yaml": config('  - run_file: {path: "data:../outside.trec"}'), "outside.trec": "", "data/x": ""},
    ),
    Case(
        "data-path-absolute",
        ["run", "{tmp}/bad.yaml", *OUT, "--data-dir", "{tmp}/data"],
        r"bad\.yaml:5: pipeline\[0\]\.run_file\.path: 'data:/.*outside\.trec' leaves the data dir",
        {"bad.yaml": config('  - run_file: {path: "data:{tmp}/outside.trec"}'), "outside.trec": "", "data/x": ""},
    ),
    Case(
        "data-path-symlink",
        ["run", "{tmp}/bad.yaml", *OUT, "--data-dir", "{tmp}/data"],
        r"bad\.yaml:5: pipeline\[0\]\.run_file\.path: 'data:link\.trec' leaves the data dir",
        {"bad.yaml": config('  - run_file: {path: "data:link.trec"}'), "outside.trec": "", "data/link.trec": "->"},
    ),
    # --- run: options, output and cache folders, the disk
    Case(
        "threads-negative", ["run", "{tmp}/good.yaml", *OUT, "--threads", "-1"], r"--threads: .*-1", {"good.yaml": GOOD}
    ),
    Case("threads-zero", ["run", "{tmp}/good.yaml", *OUT, "--threads", "0"], r"--threads: .*0", {"good.yaml": GOOD}),
    Case(
        "out-is-a-file",
        ["run", "{tmp}/good.yaml", "--out", "{tmp}/taken", "--cache", "{tmp}/cache"],
        r"--out: '.*taken' is a file",
        {"good.yaml": GOOD, "taken": "mine\n"},
    ),
    Case(
        "cache-is-a-file",
        ["run", "{tmp}/good.yaml", "--out", "{tmp}/out", "--cache", "{tmp}/taken"],
        r"--cache: '.*taken' is a file",
        {"good.yaml": GOOD, "taken": "mine\n"},
    ),
    Case(
        "out-read-only",
        ["run", "{tmp}/good.yaml", "--out", "{tmp}/locked/out", "--cache", "{tmp}/cache"],
        r"--out: cannot write into '.*locked'",
        {"good.yaml": GOOD, "locked/x": ""},
        read_only="locked",
    ),
    Case(
        "cache-read-only",
        ["run", "{tmp}/good.yaml", "--out", "{tmp}/out", "--cache", "{tmp}/locked"],
        r"--cache: cannot write into '.*locked'",
        {"good.yaml": GOOD, "locked/x": ""},
        read_only="locked",
    ),
    Case(
        "disk-full",
        ["run", "{tmp}/good.yaml", *OUT],
        r"^cascade: error: .*metrics\.json: No space left on device$",
        {"good.yaml": GOOD},
        fault=("ENOSPC", "write_text", "metrics.json"),
    ),
    Case(
        "disk-read-only",
        ["run", "{tmp}/good.yaml", *OUT],
        r"^cascade: error: .*cache/runs: Read-only file system$",
        {"good.yaml": GOOD},
        fault=("EROFS", "mkdir", "runs"),
    ),
    # --- eval
    Case("eval-qrels-missing", ["eval", "{tmp}/nope.txt", "{tmp}/r.trec"], r"nope\.txt: file not found", QRELS),
    Case("eval-run-is-a-folder", ["eval", "{tmp}/q.txt", "{tmp}/d"], r"/d: not a file", {**QRELS, "d/x": ""}),
    Case("eval-unknown-measure", [*EVAL, "-m", "nDCG@x"], r"--measure: unknown measure 'nDCG@x'", QRELS),
    Case(
        "eval-run-too-few-columns",
        EVAL,
        r"r\.trec:2: expected 6 columns",
        {**QRELS, "r.trec": "1 Q0 a 1 2.0 t\n1 Q0 b 2\n"},
    ),
    Case(
        "eval-score-not-a-number",
        EVAL,
        r"r\.trec:2: score 'NaNx' is not a number",
        {**QRELS, "r.trec": "1 Q0 a 1 2.0 t\n1 Q0 b 2 NaNx t\n"},
    ),
    Case(
        "eval-conflicting-qrels",
        EVAL,
        r"q\.txt:3: conflicting judgments for query '1', document 'a'",
        {**QRELS, "q.txt": "1 0 a 1\n1 0 b 0\n1 0 a 3\n"},
    ),
    # --- leaderboard and compare (the options are checked before any run folder is read)
    Case(
        "leaderboard-html-is-a-file",
        ["leaderboard", "{tmp}/d", "--html", "{tmp}/taken"],
        r"--html: '.*taken' is a file",
        {"d/x": "", "taken": ""},
    ),
    Case(
        "leaderboard-out-is-a-folder",
        ["leaderboard", "{tmp}/d", "--out", "{tmp}/d"],
        r"--out: '.*d' is a folder",
        {"d/x": ""},
    ),
    Case("leaderboard-seed-negative", ["leaderboard", "{tmp}/d", "--seed", "-1"], r"--seed .*not -1", {"d/x": ""}),
    Case(
        "leaderboard-seed-too-big",
        ["leaderboard", "{tmp}/d", "--seed", "4294967296"],
        r"--seed .*4294967296",
        {"d/x": ""},
    ),
    Case(
        "leaderboard-correction",
        ["leaderboard", "{tmp}/d", "--correction", "bogus"],
        r"--correction must be one of",
        {"d/x": ""},
    ),
    Case("leaderboard-no-runs-dir", ["leaderboard", "{tmp}/nowhere"], r"runs directory '.*nowhere' does not exist"),
    Case("compare-seed-negative", ["compare", "{tmp}/d", "--seed", "-1"], r"--seed .*not -1", {"d/x": ""}),
    # --- suite
    suite_case(
        "suite-duplicate-key", "suite: s\nsuite: t\ntasks:\n  - own: {}\n", r"suite\.yaml:2: .*duplicate key 'suite'"
    ),
    suite_case("suite-unknown-kind", "suite: s\ntasks:\n  - bogus: {}\n", r"suite\.yaml:3: tasks\[0\]\.bogus: unknown"),
    suite_case(
        "suite-cv-one-fold",
        "suite: s\ntasks:\n  - cv: {folds: 1}\n",
        r"suite\.yaml:3: tasks\[0\]\.cv\.folds: Input should be greater than or equal to 2",
    ),
    suite_case(
        "suite-cv-more-folds-than-queries",
        "suite: s\ntasks:\n  - cv: {folds: 500}\n",
        r"suite\.yaml:3: tasks\[0\]\.cv\.folds: 500 folds for 99 queries \(sample\): at most one fold per query",
    ),
    suite_case(
        "suite-cv-unknown-feature",
        "suite: s\ntasks:\n  - cv: {features: [bm25, dense]}\n",
        r"suite\.yaml:3: tasks\[0\]\.cv\.features\[1\]: feature 'dense' is not provided by any stage of good",
    ),
    suite_case(
        "suite-int-as-float", "suite: s\ntasks:\n  - restrain: {k: 2.0}\n", r"suite\.yaml:3: tasks\[0\]\.restrain\.k: "
    ),
    suite_case(
        "suite-nan",
        "suite: s\ntasks:\n  - restrain: {test_fraction: .nan}\n",
        r"tasks\[0\]\.restrain\.test_fraction: .*finite",
    ),
    suite_case(
        "suite-resample-rule-string",
        "suite: s\ntasks:\n  - resample: {rule: {rule: quantile, fraction: '0.5'}}\n",
        r"suite\.yaml:3: tasks\[0\]\.resample\.rule: fraction: .*number",
    ),
    suite_case(
        "suite-unknown-dataset",
        "suite: s\ntasks:\n  - retrieval: {dataset: cranfeld}\n",
        r"suite\.yaml:3: tasks\[0\]\.retrieval\.dataset: unknown dataset 'cranfeld'; did you mean 'cranfield'",
    ),
    suite_case(
        "suite-data-escape",
        "suite: s\ntasks:\n  - negation_pairs: {pairs: 'data:../x.jsonl'}\n",
        r"suite\.yaml:3: tasks\[0\]\.negation_pairs\.pairs: 'data:\.\./x\.jsonl' leaves the data dir",
        env={"CASCADE_DATA": "{tmp}/data"},
        files={"data/x": ""},
    ),
    suite_case(
        "suite-sample-escape",
        "suite: s\ntasks:\n  - negation_pairs: {pairs: 'sample:../../../../x.jsonl'}\n",
        r"suite\.yaml:3: tasks\[0\]\.negation_pairs\.pairs: 'sample:\.\./\.\./\.\./\.\./x\.jsonl' leaves the built-in "
        r"sample",
    ),
    suite_case(
        "suite-pipeline-bad-value",
        SUITE,
        r"bad\.yaml:5: pipeline\[0\]\.bm25\.k: ",
        ("good.yaml", "bad.yaml"),
        files={"bad.yaml": config("  - bm25: {k: 10.0}")},
    ),
    suite_case(
        "suite-pipeline-unknown-dataset",
        SUITE,
        r"bad\.yaml:2: dataset: unknown dataset 'nosuch'",
        ("good.yaml", "bad.yaml"),
        files={"bad.yaml": config("  - bm25: {k: 10}", dataset="nosuch")},
    ),
    Case(
        "suite-threads",
        ["suite", str(NEGATION), "-p", "{tmp}/good.yaml", *OUT, "--threads", "0"],
        r"--threads: .*0",
        {"good.yaml": GOOD},
    ),
    Case(
        "suite-out-is-a-file",
        ["suite", str(NEGATION), "-p", "{tmp}/good.yaml", "--out", "{tmp}/taken"],
        r"--out: '.*taken' is a file",
        {"good.yaml": GOOD, "taken": ""},
    ),
    # --- sweep
    sweep_case("sweep-duplicate-knob", SWEEP + "  bm25.k: [5]\n", r"sweep\.yaml:5: .*duplicate key 'bm25\.k'"),
    sweep_case("sweep-value-string", SWEEP.replace("[10, 20]", '[10, "20"]'), r"sweep\.yaml:4: grid\.bm25\.k\[1\]: "),
    sweep_case("sweep-value-float", SWEEP.replace("[10, 20]", "[10, 20.0]"), r"sweep\.yaml:4: grid\.bm25\.k\[1\]: "),
    sweep_case(
        "sweep-value-over-int32", SWEEP.replace("[10, 20]", "[10, 2147483648]"), r"sweep\.yaml:4: grid\.bm25\.k\[1\]: "
    ),
    sweep_case(
        "sweep-target-inf", SWEEP + "target: {accuracy@10: .inf}\n", r"sweep\.yaml:5: target\.accuracy@10: .*finite"
    ),
    sweep_case("sweep-base-missing", SWEEP.replace(str(SAMPLE / "bm25.yaml"), "nope.yaml"), r"sweep\.yaml:2: base: "),
    Case(
        "sweep-threads", ["sweep", "{tmp}/sweep.yaml", *OUT, "--threads", "-1"], r"--threads: ", {"sweep.yaml": SWEEP}
    ),
    # --- train
    train_case("train-duplicate-key", "seed: 42\n", "seed: 42\nseed: 7\n", r"train\.yaml:\d+: .*duplicate key 'seed'"),
    train_case("train-seed-negative", "seed: 42\n", "seed: -1\n", r"train\.yaml:\d+: seed: "),
    train_case("train-int-as-float", "num_leaves: 7,", "num_leaves: 7.0,", r"train\.yaml:\d+: lightgbm\.num_leaves: "),
    train_case(
        "train-nan", "learning_rate: 0.1,", "learning_rate: .nan,", r"train\.yaml:\d+: lightgbm\.learning_rate: "
    ),
    train_case(
        "train-string-number", "dev_fraction: 0.3", 'dev_fraction: "0.3"', r"train\.yaml:\d+: train\.dev_fraction: "
    ),
    train_case(
        "train-candidate-bad-value", "bm25: {k: 30}", "bm25: {k: true}", r"train\.yaml:\d+: candidates\[0\]\.bm25\.k: "
    ),
    Case(
        "train-threads",
        ["train", "ltr", str(TRAIN), "--cache", "{tmp}/cache", "--threads", "-1"],
        r"--threads: .*-1",
    ),
    Case(
        "train-cache-is-a-file",
        ["train", "ltr", str(TRAIN), "--cache", "{tmp}/taken"],
        r"--cache: '.*taken' is a file",
        {"taken": ""},
    ),
    Case(
        "train-wrong-kind",
        ["train", "cross-encoder", str(TRAIN), "--cache", "{tmp}/cache"],
        r"ltr-sample\.yaml: kind: the config trains 'ltr', not 'cross-encoder'",
    ),
]


# The CLI with one Path method failing with an OSError, as a full or read-only disk makes it fail: argv is
# errno name, method, the file name it fails on, then the CLI's arguments.
FAULTY_CLI = """
import errno, os, pathlib, sys
name, method, target = sys.argv[1:4]
del sys.argv[1:4]
code = getattr(errno, name)
original = getattr(pathlib.Path, method)
def failing(self, *args, **kwargs):
    if self.name == target:
        raise OSError(code, os.strerror(code), str(self))
    return original(self, *args, **kwargs)
setattr(pathlib.Path, method, failing)
from cascade.pipelines.cli import main
sys.argv[0] = "cascade"
main()
"""


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` unwritable: mode 0555, or for root (whom modes do not stop) the immutable attribute."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and this file system cannot make a folder immutable")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


def make_files(case: Case, tmp: Path) -> None:
    for name, text in case.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if text == "->":  # a symlink out of its folder, to the file `outside.trec`
            path.symlink_to(tmp / "outside.trec")
        else:
            path.write_text(fill(text, tmp))


def leftovers(tmp: Path) -> list[Path]:
    return [p for p in tmp.rglob(".*") if ".tmp-" in p.name]


def run(case: Case, tmp: Path) -> subprocess.CompletedProcess:
    args = [fill(a, tmp) for a in case.args]
    env = {k: fill(v, tmp) for k, v in case.env.items()}
    if case.fault is None:
        return run_cascade(*args, env=env)
    command = [sys.executable, "-c", FAULTY_CLI, *case.fault, *args]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    make_files(case, tmp_path)
    with read_only(tmp_path / case.read_only) if case.read_only else contextlib.nullcontext():
        result = run(case, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cascade: error: "), lines[0]
    assert re.search(fill(case.pattern, tmp_path), lines[0]), lines[0]
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))
    assert not leftovers(tmp_path), leftovers(tmp_path)


def test_catalogue_size() -> None:
    """The catalogue covers every command that reads user input, with distinct case names."""
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.args[0] for c in CASES}
    assert {"run", "eval", "suite", "leaderboard", "sweep", "train"} <= commands


# --- in-process checks behind the catalogue: shipped configs, every config kind's loader, data: confinement

# What strict parameters must not change: the config hashes (cache keys and run folders' identities) of the
# shipped sample configs, as they were before values became strict.
# Changed on purpose only: issue 12 added `shard_size` to the encoding stages (dense, dense_rerank, sparse,
# sparse_rerank), a parameter every spec spells out with its default; issue 15 added sparse_rerank's
# `corpus_vectors` (the corpus vectors are read when asked, not whenever the store holds them).
SAMPLE_HASHES = {
    "bm25-dense-rerank.yaml": "18af582ec1f7319d908b8696",  # shard_size (issue 12) is a parameter of the encoders
    "bm25-ltr.yaml": "a03f1cc2e0b6915cfe583e5b",
    "bm25-rm3.yaml": "23b6c116f21af634d6f7c5a7",
    "bm25-sparse-rerank.yaml": "09d492a1fd122decc240e65b",  # shard_size (issue 12), corpus_vectors (issue 15)
    "bm25.yaml": "e2964a8a64b31b7f417a3bea",
    "dense.yaml": "cc491ccd06107cf77acad9c7",  # shard_size (issue 12) is a parameter of the encoders
    "rrf-bm25-dense.yaml": "049ec086ccabe8d80d5b4c07",  # shard_size (issue 12) is a parameter of the encoders
    "splade-exact.yaml": "4ba4c1a0508f38a3a811924b",  # shard_size (issue 12) is a parameter of the encoders
    "splade-lucene-impact.yaml": "44730ae33c76b4e0ec760d0b",  # shard_size (issue 12) is a parameter of the encoders
    "splade-seismic.yaml": "fd880d7d0071e7429f15ebc8",  # shard_size (issue 12) is a parameter of the encoders
}


def load_any(path: Path) -> object:
    """A shipped config read by the loader of its kind (pipeline, suite, sweep or training)."""
    from cascade.pipelines.config import load_config
    from cascade.pipelines.suites import load_suite
    from cascade.pipelines.sweep import load_sweep, sweep_points
    from cascade.pipelines.train import read_training_config

    kind = path.parent.name
    if kind == "suites":
        return load_suite(path)
    if kind == "sweeps":
        return sweep_points(load_sweep(path), path)
    if kind == "train":
        return read_training_config(path)  # validates with the trainer's own model
    return load_config(path)


SHIPPED = sorted(
    p for kind in ("sample", "msmarco", "suites", "sweeps", "train") for p in (ROOT / "configs" / kind).glob("*.yaml")
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_shipped_configs_stay_valid(path: Path) -> None:
    load_any(path)


def test_shipped_config_hashes_unchanged() -> None:
    from cascade.pipelines.config import load_config

    assert {name: load_config(SAMPLE / name).config_hash for name in SAMPLE_HASHES} == SAMPLE_HASHES


@pytest.mark.parametrize(
    ("kind", "text", "line"),
    [
        ("pipeline", GOOD.replace("measures:", "dataset: sample\nmeasures:"), 3),
        ("suite", "suite: s\ntasks:\n  - own: {}\ntasks: []\n", 4),
        ("sweep", SWEEP.replace("grid:", "name: again\ngrid:"), 3),
        ("training", TRAINING + "seed: 7\n", TRAINING.count("\n") + 1),
    ],
)
def test_every_config_kind_refuses_duplicate_keys(tmp_path: Path, kind: str, text: str, line: int) -> None:
    """Every kind reads through the one loader (cascade.core.configfile): the second key is refused at its line."""
    from cascade.core.errors import CascadeError

    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    folder = {"suite": "suites", "sweep": "sweeps", "training": "train"}.get(kind, "sample")
    target = tmp_path / folder / path.name
    target.parent.mkdir()
    path.rename(target)
    with pytest.raises(CascadeError, match=rf"{kind}\.yaml:{line}: .*duplicate key"):
        load_any(target)


def test_data_paths_stay_inside_the_data_dir(tmp_path: Path) -> None:
    from cascade.core.errors import CascadeError
    from cascade.core.paths import resolve_path

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "in.tsv").write_text("x")
    (tmp_path / "out.tsv").write_text("x")
    (data / "link.tsv").symlink_to(tmp_path / "out.tsv")
    (data / "inner.tsv").symlink_to(data / "sub" / "in.tsv")
    assert resolve_path("data:sub/in.tsv", data, "k") == data / "sub" / "in.tsv"
    assert resolve_path("data:sub/../sub/in.tsv", data, "k").resolve() == data / "sub" / "in.tsv"
    assert resolve_path("data:inner.tsv", data, "k") == data / "inner.tsv"  # a link that stays inside is fine
    for value in ("data:../out.tsv", "data:sub/../../out.tsv", "data:link.tsv", f"data:{tmp_path}/out.tsv"):
        with pytest.raises(CascadeError, match=rf"^key\.x: '{re.escape(value)}' leaves the data dir"):
            resolve_path(value, data, "key.x")


@pytest.mark.parametrize("threads", [0, -1])
def test_context_refuses_thread_counts_below_one(tmp_path: Path, threads: int) -> None:
    """The Python API refuses what --threads refuses: 0 is not 'all cores'."""
    from cascade.core.env import Context
    from cascade.core.errors import CascadeError

    with pytest.raises(CascadeError, match=rf"threads: must be at least 1, not {threads}"):
        Context.open(None, tmp_path / "cache", threads)
