"""The Ray executor (issue 13) on real Ray: a local instance (2 CPUs) started once for this module, a two-node
cluster on 127.0.0.1 started and stopped here, and a worker killed mid-job. Ray never runs inside the pytest
process: the clusters are `ray start --block` processes and the driver is a `cascade run` or a child Python, so
Ray's threads and signal handlers cannot reach the tests that run after these (a full run once segfaulted after
an in-process `ray.init`). In fp32 on CPU, results must equal the local executor's byte for byte: vectors, run
files (workers compute on the run's thread count, as the local run does)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_cascade

RAY = Path(sys.executable).parent / "ray"
# Ray's token authentication is turned off for this module's loopback test clusters only (RAY_AUTH_MODE=disabled):
# the processes are the tests' own, on 127.0.0.1. A real cluster keeps its own setting.
LOOPBACK = {"RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [RAY, "start", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block", *args],
        env={**os.environ, **LOOPBACK}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_nodes(port: int, *procs: subprocess.Popen | None) -> None:
    for proc in procs:  # `ray start --block` stops the processes it started on SIGTERM
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=120)
    current = Path("/tmp/ray/ray_current_cluster")  # `ray start --head` left its address there: ours, gone
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()


def wait_for_nodes(port: int, count: int, proc: subprocess.Popen) -> None:
    """Until `ray status` lists `count` active nodes (a condition, polled; the bound only stops a broken start)."""
    for _ in range(240):
        assert proc.poll() is None, "ray start exited"
        status = subprocess.run(
            [RAY, "status", f"--address=127.0.0.1:{port}"], env={**os.environ, **LOOPBACK},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        if status.returncode == 0 and active.count("node_") >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"the loopback cluster did not reach {count} nodes")


@pytest.fixture(scope="module")
def cluster() -> str:
    """A one-node Ray instance with 2 CPUs for the module; CLI runs join it by its address."""
    port = free_port()
    head = start_node("--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false")
    try:
        wait_for_nodes(port, 1, head)
        yield f"127.0.0.1:{port}"
    finally:
        stop_nodes(port, head)


DENSE = """name: ray-dense
dataset: sample
measures: [nDCG@10]
pipeline:
  - dense: {{k: 30, max_length: 64, batch_size: 16, shard_size: 60, precision: fp32}}
  - dense_rerank: {{k: 20, max_length: 64, batch_size: 8, precision: fp32}}
  - cross_encoder: {{model: "{head}", k: 10, max_length: 96, batch_size: 4, precision: fp32}}
"""
SPARSE = """name: ray-sparse
dataset: sample
measures: [nDCG@10]
pipeline:
  - sparse: {encoder: splade-tiny, index: exact, k: 50, shard_size: 80, max_length: 64, precision: fp32}
"""


def configs(folder: Path, head: Path) -> list[Path]:
    (folder / "dense.yaml").write_text(DENSE.format(head=head))
    (folder / "sparse.yaml").write_text(SPARSE)
    return [folder / "dense.yaml", folder / "sparse.yaml"]


def artifact_bytes(cache: Path) -> dict[str, bytes]:
    """Every file of the corpus embeddings and sparse vectors, by kind and name (cards differ: they hold times)."""
    out = {}
    for kind in ("dense-embeddings", "sparse_vectors"):
        for path in sorted((cache / kind).glob("*/*")):
            if path.name != "card.json":
                out[f"{kind}/{path.parent.name}/{path.name}"] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory, random_head):
    folder = tmp_path_factory.mktemp("local")
    paths = configs(folder, random_head)
    done = run_cascade("run", *paths, "--cache", folder / "cache", "--out", folder / "runs", "-q")
    assert done.returncode == 0, done.stderr
    return folder


def test_ray_encodes_and_reranks_the_sample_exactly_as_the_local_executor(tmp_path, cluster, local_runs, random_head):
    paths = configs(tmp_path, random_head)
    done = run_cascade(
        "run", *paths, "--cache", tmp_path / "cache", "--out", tmp_path / "runs", "-q",
        "--executor", "ray", "--ray-address", cluster, "--executor-batch-size", "24", env=LOOPBACK,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("ray-dense", "ray-sparse"):
        ours = (tmp_path / "runs" / name / "run.trec").read_bytes()
        assert ours == (local_runs / "runs" / name / "run.trec").read_bytes(), name
    ray_artifacts, local_artifacts = artifact_bytes(tmp_path / "cache"), artifact_bytes(local_runs / "cache")
    assert sorted(ray_artifacts) == sorted(local_artifacts) and len(ray_artifacts) == 6  # same content addresses
    assert ray_artifacts == local_artifacts
    manifest = json.loads((tmp_path / "runs" / "ray-dense" / "manifest.json").read_text())
    assert manifest["executor"]["kind"] == "ray" and manifest["executor"]["workers"] == 2
    workers = manifest["stages"][0]["stats"]["embeddings"]["shard_workers"]
    assert len(workers) == 6 and all(w.startswith(("w0@", "w1@")) for w in workers)
    local = json.loads((local_runs / "runs" / "ray-dense" / "manifest.json").read_text())
    assert local["executor"] == {"kind": "local"}


KILL_A_WORKER = """
import json, os, signal, sys
import numpy as np
from cascade.core.executor import ExecutorSettings, LocalExecutor, WorkerSpec
from cascade.core.ray_executor import RayExecutor
from cascade.eval.datasets import load_dataset
from cascade.indexes.dense import text_encoder
from cascade.indexes.models import resolve_model

texts = [d["text"] for d in load_dataset("sample").corpus.docs()][:160]
items = [texts[i : i + 16] for i in range(0, len(texts), 16)]
worker = WorkerSpec("dense", text_encoder, (resolve_model("minilm-l6"), "cpu", "auto", 8, 64, 2, "float32"))
expected = [result for result, _ in LocalExecutor().map(worker, items)]
executor = RayExecutor(ExecutorSettings("ray", address=sys.argv[1], workers=2))
results = executor.map(worker, items)
got = [next(results)[0]]
for pid in executor.pids:  # one worker is busy with an item now; the other waits for its next one
    os.kill(pid, signal.SIGKILL)
got += [result for result, _ in results]
same = len(got) == len(expected) and all(a.tobytes() == b.tobytes() for a, b in zip(got, expected))
print("OUTCOME " + json.dumps({"retried": executor.retried, "items": len(got), "identical": same}))
"""


def test_a_worker_killed_mid_job_is_replaced_and_the_result_is_unchanged(cluster):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_A_WORKER), cluster],
        env={**os.environ, **LOOPBACK}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("OUTCOME ")]  # Ray may print lines of its own
    outcome = json.loads(line.removeprefix("OUTCOME "))
    assert outcome["retried"] >= 1 and outcome["items"] == 10
    assert outcome["identical"]


def test_a_two_node_cluster_on_loopback_encodes_the_same_vectors(tmp_path, local_runs, random_head):
    port = free_port()
    head = start_node("--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false")
    second = None
    try:
        wait_for_nodes(port, 1, head)
        second = start_node(f"--address=127.0.0.1:{port}", "--num-cpus=1")
        wait_for_nodes(port, 2, second)
        config = configs(tmp_path, random_head)[0]
        done = run_cascade(
            "run", config, "--cache", tmp_path / "cache", "--out", tmp_path / "runs", "-q",
            "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", env=LOOPBACK,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        stop_nodes(port, second, head)
    manifest = json.loads((tmp_path / "runs" / "ray-dense" / "manifest.json").read_text())
    assert manifest["executor"]["nodes"] == 2
    workers = manifest["stages"][0]["stats"]["embeddings"]["shard_workers"]
    assert len({w.split("@")[1] for w in workers}) == 2  # both nodes encoded shards
    ours = {k: v for k, v in artifact_bytes(tmp_path / "cache").items() if k.startswith("dense")}
    assert ours == {k: v for k, v in artifact_bytes(local_runs / "cache").items() if k.startswith("dense")}
    assert (tmp_path / "runs/ray-dense/run.trec").read_bytes() == (local_runs / "runs/ray-dense/run.trec").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "spark"], "--executor: unknown executor 'spark'; choose one of local, ray"),
        (["--executor", "ray", "--workers", "-1"], "--workers: must be at least 1, not -1"),
        (["--executor", "ray", "--workers", "0"], "--workers: must be at least 1, not 0"),
        (["--ray-address", "127.0.0.1:1"], "--ray-address: given with --executor local; add --executor ray"),
        (["--executor", "ray", "--ray-address", "nowhere"], "--ray-address: 'nowhere' is not host:port (or auto)"),
    ],
)
def test_bad_executor_options_are_one_line_before_any_work(tmp_path, args, message):
    done = run_cascade("run", "configs/sample/bm25.yaml", "--out", tmp_path / "o", "--cache", tmp_path / "c", *args)
    assert done.returncode == 2
    assert done.stderr == f"cascade: error: {message}\n"
    assert not (tmp_path / "o").exists()


def test_an_address_that_does_not_answer_is_one_line_without_a_hang(tmp_path):
    port = free_port()  # nothing listens there now
    done = run_cascade(
        "run", "configs/sample/bm25.yaml", "--out", tmp_path / "o", "--cache", tmp_path / "c",
        "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--ray-timeout", "3",
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"cascade: error: --ray-address: the Ray head at 127.0.0.1:{port} did not answer")
    assert done.stderr.count("\n") == 1


def test_more_gpus_than_the_cluster_has_says_what_was_asked_and_what_exists(tmp_path, cluster):
    done = run_cascade(
        "run", "configs/sample/bm25.yaml", "--out", tmp_path / "o", "--cache", tmp_path / "c",
        "--executor", "ray", "--ray-address", cluster, "--workers", "2", "--gpus-per-worker", "1", env=LOOPBACK,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "cascade: error: --gpus-per-worker: asked for 2 GPUs (2 workers x 1), and the Ray cluster has 0\n"
    )


def test_ray_not_installed_names_the_install_command(tmp_path):
    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    done = run_cascade(
        "run", "configs/sample/bm25.yaml", "--out", tmp_path / "o", "--cache", tmp_path / "c", "--executor", "ray",
        env={"PYTHONPATH": str(tmp_path / "shadow")},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "cascade: error: --executor ray: Ray is not installed; install it with: pip install 'cascade-ir[ray]'\n"
    )
