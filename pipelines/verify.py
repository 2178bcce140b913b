"""`cascade verify CONFIG...`: the regression matrix, as Anserini's regressions (ReproduceFromDocumentCollection).

A config that carries an `expected:` block (`cascade.pipelines.config.Expected`) is run through the normal runner
(cached like any run: a fresh `--cache` reruns everything from nothing) and each expected figure becomes one row:

    config | measure | expected | actual | delta | tolerance | status

with status OK (|actual - expected| <= tolerance), OKISH (<= 1.5x the tolerance, Anserini's rule) or FAIL
(beyond that, or the figure is missing). Index facts (`expected.index`: documents, terms) are read from the Lucene
index the config's bm25/rm3 stages search and must match exactly.

A figure a suite reports (e.g. NevIR's paired accuracy) is checked with a small regression config under
`configs/regressions/` (`kind: suite`): one task of a suite config, run for one pipeline config through the suite's
own protocol, with its `expected:` block; its run folder is the suite's (`OUT/SUITE/TASK/PIPELINE`).

    kind: suite
    name: nevir-pairs-bm25
    suite: configs/suites/negation.yaml
    task: negation_pairs                 # the task's kind in that suite
    pipeline: configs/msmarco/dl19-bm25.yaml
    expected: {tolerance: 1.0e-4, why: "...", measures: {paired_accuracy: 0.0231}}

The `expected:` block is never part of a config hash or a cache key: changing an expectation reruns nothing.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cascade.core.configfile import error_at, read_yaml, validate
from cascade.core.env import Context
from cascade.core.errors import CascadeError
from cascade.eval.measures import parse_measures
from cascade.indexes import lucene
from cascade.pipelines.config import LUCENE_STAGES, Config, Expected, check_refs, load_config, preflight
from cascade.pipelines.runner import check_run_folder, open_dataset, run_config
from cascade.pipelines.suites import TaskError, load_pipelines, load_suite, run_task
from cascade.rankers.lucene import lucene_index

OK, OKISH, FAIL = "OK", "OKISH", "FAIL"
OKISH_FACTOR = 1.5  # Anserini's: within 1.5x the tolerance is OKISH


@dataclass(frozen=True)
class Row:
    config: str
    measure: str
    expected: float
    actual: float | None
    tolerance: float
    status: str

    @property
    def delta(self) -> float | None:
        return None if self.actual is None else self.actual - self.expected


def status_of(expected: float, actual: float | None, tolerance: float) -> str:
    """OK within the tolerance, OKISH within 1.5x of it, FAIL beyond (or no finite value at all)."""
    if actual is None or not math.isfinite(actual):
        return FAIL
    delta = abs(actual - expected)
    slack = 1e-12 * max(1.0, abs(expected))  # float noise, never a real difference
    if delta <= tolerance + slack:
        return OK
    if delta <= OKISH_FACTOR * tolerance + slack:
        return OKISH
    return FAIL


def compare(name: str, expected: Expected, measures: dict[str, float], index: dict[str, int] | None) -> list[Row]:
    """One row per expected measure, then one per expected index fact (exact: tolerance 0)."""
    rows = []
    for measure, want in expected.values().items():
        actual = measures.get(_measure_key(measure, measures))
        actual = None if actual is None else float(actual)
        rows.append(
            Row(name, measure, want.value, actual, want.tolerance, status_of(want.value, actual, want.tolerance))
        )
    facts = expected.index.given() if expected.index is not None else {}
    for fact, want in facts.items():
        value = (index or {}).get(fact)
        actual = None if value is None else float(value)
        rows.append(Row(name, f"index {fact}", float(want), actual, 0.0, status_of(float(want), actual, 0.0)))
    return rows


def _measure_key(name: str, measures: dict[str, float]) -> str:
    """The key a measure has in a run's measures: ir_measures' canonical name (`RR(rel=2)@10`), else as given."""
    if name in measures:
        return name
    try:
        return str(parse_measures([name])[0])
    except CascadeError:
        return name


# ----------------------------------------------------------------------------------------------- targets


class SuiteCheck(BaseModel):
    """A regression config for a figure a suite reports: one task of a suite, run for one pipeline."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["suite"]
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    description: str = ""
    suite: str = Field(..., description="the suite config (a path from the current folder)")
    task: str = Field(..., description="the kind of the suite's task to run, e.g. negation_pairs")
    pipeline: str = Field(..., description="the pipeline config (a path from the current folder)")
    pool: list[str] = Field(
        default_factory=list, description="pipeline configs the task pools with it (cv: dl20-X with dl19-X)"
    )
    expected: Expected


# A target runs itself into an out folder with a session: (its measures, its index facts or None, its folder)
Runner = Callable[[Context, Path], tuple[dict[str, float], dict[str, int] | None, Path | None]]


@dataclass
class Target:
    path: Path
    name: str
    expected: Expected
    folder: Callable[[Path], Path]  # where its run folder goes under an out folder (checked before any work)
    run: Runner
    check: Callable[[Context], None]  # what it refers to (datasets, data: files, train: configs), before any work


def load_target(path: str | Path) -> Target:
    """A pipeline config with an `expected:` block, or a `kind: suite` regression config; bad input raises."""
    path = Path(path)
    data, root = read_yaml(path, "config file")
    if isinstance(data, dict) and data.get("kind") == "suite":
        return _suite_target(path, data, root)
    config = load_config(path)
    if config.expected is None:
        raise CascadeError(
            "no 'expected:' block: cascade verify checks configs that say what they should score", where=str(path)
        )
    return Target(
        path,
        config.name,
        config.expected,
        lambda out: out / config.name,
        _pipeline_runner(config, path),
        lambda session: preflight(config, path, session.data_dir),
    )


def _pipeline_runner(config: Config, path: Path) -> Runner:
    def run(session: Context, out: Path) -> tuple[dict[str, float], dict[str, int] | None, Path | None]:
        result = run_config(config, path, out, session=session)
        facts = None
        if config.expected is not None and config.expected.index is not None:
            facts = lucene_facts(config, session)
        return dict(result.measures), facts, result.folder

    return run


def lucene_facts(config: Config, session: Context) -> dict[str, int]:
    """Anserini's index statistics of the Lucene index of the config's corpus (built once, cached)."""
    dataset = open_dataset(config, session.data_dir)
    ctx = session.for_run(dataset.corpus, config.seed)
    return lucene.index_stats(lucene_index(ctx), ctx.log_dir / "lucene-stats.log")


def _suite_target(path: Path, data: dict, root) -> Target:
    check = validate(SuiteCheck, data, path, root)
    if check.expected.index is not None:
        raise error_at(path, root, ("expected", "index"), "index facts are checked for pipeline configs only")
    if not check.expected.measures:
        raise error_at(path, root, ("expected",), "give the expected 'measures' of the task")
    for key in ("suite", "pipeline"):
        if not Path(getattr(check, key)).is_file():
            raise error_at(
                path, root, (key,), f"no such file: {getattr(check, key)} (paths are from the current folder)"
            )
    for number, other in enumerate(check.pool):
        if not Path(other).is_file():
            raise error_at(path, root, ("pool", number), f"no such file: {other} (paths are from the current folder)")
    suite, tasks = load_suite(check.suite)
    chosen = [t for t in tasks if t.kind == check.task]
    if len(chosen) != 1:
        kinds = ", ".join(t.kind for t in tasks)
        problem = "has no task" if not chosen else f"has {len(chosen)} tasks"
        raise error_at(path, root, ("task",), f"the suite {problem} of kind {check.task!r}; its tasks: {kinds}")
    (task,) = chosen
    index = tasks.index(task)
    every, _ = load_pipelines([Path(check.pipeline), *map(Path, check.pool)])
    ref = every[0]

    def refs(session: Context) -> None:
        suite_root = read_yaml(check.suite, "suite config")[1]
        check_refs(suite.tasks[index], ("tasks", index), Path(check.suite), suite_root, session.data_dir)
        for member in every:
            preflight(member.config, member.path, session.data_dir, dataset=task.own_dataset)
        try:
            task.check(every, session)
        except TaskError as exc:
            raise error_at(check.suite, suite_root, ("tasks", index, task.kind, *exc.key), exc.detail) from None

    def folder(out: Path) -> Path:
        return out / suite.suite / task.folder(ref, task.label(ref))

    def run(session: Context, out: Path) -> tuple[dict[str, float], dict[str, int] | None, Path | None]:
        outcome = run_task(task, ref, suite.suite, out / suite.suite, session)
        if outcome.folder is None:  # the protocol cannot run this pipeline: every expected figure is missing
            return {}, None, None
        metrics = json.loads((outcome.folder / "metrics.json").read_text(encoding="utf-8"))
        return dict(metrics["measures"]), None, outcome.folder

    return Target(path, check.name, check.expected, folder, run, refs)


# ----------------------------------------------------------------------------------------------- the matrix


@dataclass
class Checked:
    target: Target
    rows: list[Row]
    folder: Path | None


def verify(
    paths: list[Path],
    out: Path | None,
    session: Context,
    on_checked: Callable[[Checked], None] = lambda c: None,
) -> list[Checked]:
    """Load every config first (bad input raises before any work), run each, compare; `out=None`: the run folders
    go to a temp folder that is removed afterwards."""
    targets = [load_target(p) for p in paths]
    names: dict[str, Path] = {}
    for target in targets:
        if target.name in names and names[target.name] != target.path:
            raise CascadeError(f"two configs are named {target.name!r} ({names[target.name]} and {target.path})")
        names[target.name] = target.path
    for target in targets:  # datasets, data: files, train: configs, upstream scores: all before any run
        target.check(session)
    if out is not None:
        for target in targets:
            check_run_folder(target.folder(out))
        return _verify(targets, out, session, on_checked)
    with tempfile.TemporaryDirectory(prefix="cascade-verify-") as tmp:
        return _verify(targets, Path(tmp), session, on_checked)


def _verify(targets: list[Target], out: Path, session: Context, on_checked: Callable[[Checked], None]) -> list:
    done = []
    for target in targets:
        measures, facts, folder = target.run(session, out)
        checked = Checked(target, compare(target.name, target.expected, measures, facts), folder)
        on_checked(checked)
        done.append(checked)
    return done


def failed(checked: list[Checked]) -> bool:
    return any(row.status == FAIL for c in checked for row in c.rows)


def _number(value: float | None, integer: bool) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if integer else f"{value:.4f}"


def matrix_text(checked: list[Checked]) -> str:
    """The OK / OKISH / FAIL table, a count of each status, and why each config's tolerance is what it is."""
    header = ("config", "measure", "expected", "actual", "delta", "tolerance", "status")
    lines = [header]
    for c in checked:
        for row in c.rows:
            integer = row.measure.startswith("index ")
            delta = row.delta
            lines.append(
                (
                    row.config,
                    row.measure,
                    _number(row.expected, integer),
                    _number(row.actual, integer),
                    "–" if delta is None else (f"{delta:+.0f}" if integer else f"{delta:+.5f}"),
                    f"{row.tolerance:g}",
                    row.status,
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3, 4, 5}
    text = []
    for number, line in enumerate(lines):
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        text.append("  ".join(cells).rstrip())
        if number == 0:
            text.append("  ".join("-" * w for w in widths))
    counts = {s: sum(row.status == s for c in checked for row in c.rows) for s in (OK, OKISH, FAIL)}
    text.append("")
    configs = f"{len(checked)} config{'s' if len(checked) != 1 else ''}"
    text.append(f"verify: {counts[OK]} OK, {counts[OKISH]} OKISH, {counts[FAIL]} FAIL ({configs})")
    text.append("why the tolerances are what they are:")
    notes: dict[tuple[str, str], list[str]] = {}  # (measure or "", why) -> configs: each reason printed once
    for c in checked:
        notes.setdefault(("", c.target.expected.why), []).append(c.target.name)
        for measure, value in c.target.expected.values().items():
            if value.why:
                notes.setdefault((measure, value.why), []).append(c.target.name)
    for (measure, why), names in notes.items():
        text.append(f"  {', '.join(names)}{f' ({measure})' if measure else ''}: {why}")
    return "\n".join(text) + "\n"


__all__ = ["FAIL", "LUCENE_STAGES", "OK", "OKISH", "Checked", "Row", "compare", "failed", "matrix_text", "verify"]
