"""Behaviour unchanged: the same configs run at an earlier commit and at the working tree give the same files.

    python bench/same_results.py --before d9bcb08            # every sample config and the sample suites
    python bench/same_results.py --before d9bcb08 --real     # plus the DL19 configs that need no training

Each side runs with its own empty cache (so nothing computed by one side is read by the other) in a git worktree
of its commit; the earlier commit's code is imported from that worktree, whatever its package layout. Then every
`run.trec` and `metrics.json` under the two output folders is compared byte for byte. The one exception is said
out loud: the `summary` figures that are wall-clock measurements (latency percentiles, build seconds) differ
between any two runs, even of one commit, so they are compared after removal and listed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PIPELINES = ["bm25", "bm25-rm3", "dense", "bm25-dense-rerank", "bm25-ltr"]
SUITES = ["sample-negation", "sample-instruction"]
REAL_DL19 = [
    "bm25",
    "bm25-rm3",
    "dense",
    "bm25-dense-rerank",
    "official-bm25-run",
    "official-bm25-dense-rerank",
    "official-rrf-bm25-dense",
    "splade-exact",
    "splade-seismic",
    "splade-lucene-impact",
]
# Wall-clock figures a stage reports about itself: they differ between two runs of one commit.
TIMED = ("p50 ms, 1 thread", "p99 ms, 1 thread", "build s")

# Runs the CLI of whichever layout the tree at sys.argv[1] has: `cascade.pipelines.cli` or the older top-level
# `pipelines.cli`. The tree goes first on sys.path so its modules win over the installed (editable) ones.
LAUNCH = """
import os, sys, tempfile
tree = sys.argv.pop(1)
if os.path.isdir(os.path.join(tree, 'cascade')) and os.path.isdir(os.path.join(tree, 'rankers')):
    # one package whose subpackages live at the top of the tree (setuptools package-dir): link the installed
    # layout together, so no subpackage is found through the editable install of another checkout
    root = tempfile.mkdtemp(prefix='cascade-layout-')
    package = os.path.join(root, 'cascade')
    os.mkdir(package)
    for name in os.listdir(os.path.join(tree, 'cascade')):
        os.symlink(os.path.join(tree, 'cascade', name), os.path.join(package, name))
    for name in ('eval', 'indexes', 'rankers', 'pipelines'):
        os.symlink(os.path.join(tree, name), os.path.join(package, name))
    sys.path.insert(0, root)
else:
    sys.path.insert(0, tree)
try:
    from cascade.pipelines.cli import main
    import cascade.rankers.base
    for module in (sys.modules['cascade'], cascade.rankers.base):
        assert os.path.realpath(module.__file__).startswith(os.path.realpath(tree))
except (ImportError, AssertionError):
    for name in [m for m in sys.modules if m == 'cascade' or m.startswith('cascade.')]:
        del sys.modules[name]
    from pipelines.cli import main
sys.argv[0] = 'cascade'
main()
"""


def commands(real: bool) -> list[list[str]]:
    """The CLI calls of one side, relative to its tree."""
    sample = [f"configs/sample/{p}.yaml" for p in SAMPLE_PIPELINES]
    out = [["run", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs/sample").glob("*.yaml"))]]
    for suite in SUITES:
        out.append(["suite", f"configs/suites/{suite}.yaml", *[a for p in sample for a in ("-p", p)]])
    if real:
        out.append(["run", *[f"configs/msmarco/dl19-{name}.yaml" for name in REAL_DL19]])
    return out


def run_side(tree: Path, out: Path, cache: Path, real: bool, data_dir: str | None) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if data_dir:
        env["CASCADE_DATA"] = data_dir
    for args in commands(real):
        cmd = [sys.executable, "-c", LAUNCH, str(tree), *args, "--out", str(out), "--cache", str(cache), "-q"]
        print("  $", " ".join(["cascade", *args[:2], "..."]), flush=True)
        subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)


def comparable(path: Path) -> tuple[bytes, list[str]]:
    """The file's bytes; for metrics.json, without the wall-clock summary figures (which it names)."""
    data = path.read_bytes()
    if path.name != "metrics.json":
        return data, []
    metrics = json.loads(data)
    dropped = [k for k in TIMED if k in metrics.get("summary", {})]
    for key in dropped:
        del metrics["summary"][key]
    return json.dumps(metrics, indent=2).encode(), dropped


def compare(before: Path, after: Path) -> int:
    names = ("run.trec", "metrics.json")
    files_b = {p.relative_to(before) for n in names for p in before.rglob(n)}
    files_a = {p.relative_to(after) for n in names for p in after.rglob(n)}
    failures = 0
    for rel in sorted(files_b ^ files_a):
        print(f"ONLY IN {'before' if rel in files_b else 'after'}: {rel}")
        failures += 1
    timed: set[str] = set()
    for rel in sorted(files_b & files_a):
        (b, dropped), (a, _) = comparable(before / rel), comparable(after / rel)
        timed.update(dropped)
        if b != a:
            print(f"DIFFERS: {rel}")
            failures += 1
    same = len(files_b & files_a) - failures
    print(f"{same} of {len(files_b | files_a)} files byte-identical ({len(files_b | files_a) // 2} run folders)")
    if timed:
        print(f"left out of metrics.json before comparing (wall-clock, differs run to run): {', '.join(sorted(timed))}")
    return 1 if failures else 0


@contextlib.contextmanager
def worktree(rev: str):
    with tempfile.TemporaryDirectory(prefix="cascade-before-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True, capture_output=True
        )
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--real", action="store_true", help="also the DL19 configs that need no training")
    parser.add_argument("--data-dir", default=os.environ.get("CASCADE_DATA"))
    parser.add_argument("--work", type=Path, default=ROOT / "bench/out/same-results")
    parser.add_argument("--reuse", action="store_true", help="keep a side whose outputs already exist")
    parser.add_argument("--only", choices=("before", "after"), help="run one side and stop (no comparison)")
    args = parser.parse_args()
    if args.real and not args.data_dir:
        parser.error("--real reads MS MARCO from the data dir: pass --data-dir or set CASCADE_DATA")
    work = args.work.resolve()
    for side in [args.only] if args.only else ("before", "after"):
        out, cache = work / side / "runs", work / side / "cache"
        if args.reuse and out.is_dir():
            print(f"{side}: reusing {out}")
            continue
        print(f"{side}: {'commit ' + args.before if side == 'before' else 'working tree'}", flush=True)
        if side == "before":
            with worktree(args.before) as tree:
                run_side(tree, out, cache, args.real, args.data_dir)
        else:
            run_side(ROOT, out, cache, args.real, args.data_dir)
    if args.only:
        return 0
    return compare(work / "before" / "runs", work / "after" / "runs")


if __name__ == "__main__":
    sys.exit(main())
