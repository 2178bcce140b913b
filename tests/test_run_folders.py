"""A user's files are sacred: what `cascade run` may replace at OUT/NAME, and how it replaces a run folder.

Every case runs in a temp folder. Interruptions happen at points the writer is made to wait at, never by racing
a timer.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cascade.core.atomic import TMP_MARK, replace_dir
from cascade.pipelines.runner import is_run_folder
from tests.conftest import ROOT, run_cascade

SAMPLE_BM25 = ROOT / "configs" / "sample" / "bm25.yaml"


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TMP_MARK in p.name)


def test_a_users_folder_at_the_run_path_survives(tmp_path, cache_dir):
    out = tmp_path / "home"
    documents = out / "sample-bm25"  # a config named like a user's folder, run with --out at its parent
    documents.mkdir(parents=True)
    (documents / "thesis.tex").write_text("years of work")
    result = run_cascade("run", SAMPLE_BM25, "--out", out, "--cache", cache_dir, "-q")
    one_line_error(result, str(documents), "refusing")
    assert (documents / "thesis.tex").read_text() == "years of work"
    assert sorted(os.listdir(documents)) == ["thesis.tex"]
    assert leftovers(out) == []


def test_a_users_file_at_the_run_path_survives(tmp_path, cache_dir):
    out = tmp_path / "home"
    out.mkdir()
    (out / "sample-bm25").write_text("notes")
    result = run_cascade("run", SAMPLE_BM25, "--out", out, "--cache", cache_dir, "-q")
    one_line_error(result, str(out / "sample-bm25"), "refusing")
    assert (out / "sample-bm25").read_text() == "notes"


def test_a_run_folder_is_replaced_and_keeps_the_users_umask(tmp_path, cache_dir):
    out = tmp_path / "runs"
    first = run_cascade("run", SAMPLE_BM25, "--out", out, "--cache", cache_dir, "-q", env={})
    assert first.returncode == 0, first.stderr
    assert is_run_folder(out / "sample-bm25")
    again = run_cascade("run", SAMPLE_BM25, "--out", out, "--cache", cache_dir, "-q")
    assert again.returncode == 0, again.stderr
    assert leftovers(out) == []
    umask = os.umask(0)
    os.umask(umask)
    folder = out / "sample-bm25"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((folder / "run.trec").stat().st_mode) == 0o666 & ~umask


WRITER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from cascade.core.atomic import replace_dir
    from cascade.pipelines.runner import is_run_folder
    folder, writer, times = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for i in range(times):
        with replace_dir(folder, is_run_folder) as tmp:
            (tmp / "run.trec").write_text(f"{writer} {i}\\n" * 50)
            (tmp / "manifest.json").write_text(json.dumps({"config_hash": writer, "run_key": str(i)}))
    """
)


def test_six_concurrent_writers_of_one_run_folder(tmp_path):
    folder = tmp_path / "out" / "run"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), f"w{n}", "100"], cwd=ROOT, stderr=subprocess.PIPE)
        for n in range(6)
    ]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 6, b"\n".join(errors).decode()
    assert leftovers(folder.parent) == []
    assert sorted(os.listdir(folder)) == ["manifest.json", "run.trec"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["run_key"] == "99"
    assert (folder / "run.trec").read_text() == f"{manifest['config_hash']} 99\n" * 50


# The writer stops at one point (printing 'here' and waiting on stdin) and is SIGKILLed there.
KILLED = textwrap.dedent(
    """
    import json, shutil, sys
    from pathlib import Path
    import cascade.core.atomic as atomic
    from cascade.pipelines.runner import is_run_folder
    folder, point = Path(sys.argv[1]), sys.argv[2]

    def stop():
        print("here", flush=True)
        sys.stdin.read()

    if point == "swapped":
        original = atomic._exchange_or_move
        def swapped(tmp, path):
            original(tmp, path)
            stop()
        atomic._exchange_or_move = swapped
    with atomic.replace_dir(folder, is_run_folder) as tmp:
        (tmp / "run.trec").write_text("new\\n")
        if point == "half-written":
            stop()
        (tmp / "manifest.json").write_text(json.dumps({"config_hash": "new", "run_key": "k"}))
        if point == "filled":
            stop()
    """
)


@pytest.mark.parametrize("point", ["half-written", "filled", "swapped"])
def test_sigkill_while_writing_then_rerun(tmp_path, point):
    folder = tmp_path / "out" / "run"
    with replace_dir(folder, is_run_folder) as tmp:
        (tmp / "run.trec").write_text("old\n")
        (tmp / "manifest.json").write_text(json.dumps({"config_hash": "old", "run_key": "k"}))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(folder), point],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "here"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Killed anywhere: the folder is a complete one, old or new, never missing or mixed.
    text = (folder / "run.trec").read_text()
    assert text == ("new\n" if point == "swapped" else "old\n")
    assert json.loads((folder / "manifest.json").read_text())["config_hash"] == text.strip()
    assert leftovers(folder.parent), "the killed writer left its temp folder"
    # The next write sweeps what the killed one left.
    with replace_dir(folder, is_run_folder) as tmp:
        (tmp / "run.trec").write_text("rerun\n")
        (tmp / "manifest.json").write_text(json.dumps({"config_hash": "rerun", "run_key": "k"}))
    assert leftovers(folder.parent) == []
    assert (folder / "run.trec").read_text() == "rerun\n"


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, cache_dir):
    """A 1 MiB tmpfs as --out: ENOSPC while the run folder is written."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and mount(8); this machine has neither")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (disk / "filler").write_bytes(b"x" * (60 * 1024))
        result = run_cascade("run", SAMPLE_BM25, "--out", disk, "--cache", cache_dir, "-q")
        one_line_error(result, "space left")
        assert sorted(os.listdir(disk)) == ["filler"]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
