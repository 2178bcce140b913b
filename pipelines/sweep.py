"""`cascade sweep CONFIG`: a grid over query-time knobs (or a list of configs), the efficiency-effectiveness
table and its Pareto frontier, as Markdown and as a plot.

    name: dl19-seismic-sweep
    base: ../msmarco/dl19-splade-seismic.yaml       # a pipeline config, relative to this file
    grid:                                          # stage.param[.param]: values (first stage of that name)
      sparse.seismic.heap_factor: [0.5, 0.7, 0.9, 1.0]
      sparse.seismic.query_cut: [5, 10, 20]
    target: {accuracy@10: 0.95}                    # optional: the fastest point that reaches it is named

or `configs: [a.yaml, b.yaml]` instead of `base` and `grid`. Every point is an ordinary run (cached by content
address): index-building knobs are the base's, so the index is built once and only search runs again.
Latency is the stage's single-threaded mean per query (`latency_1t_mean_ms`) when it reports one, else the
run's ms/query.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from cascade.core.atomic import atomic_file, write_text
from cascade.core.configfile import error_at, read_yaml, validate
from cascade.core.errors import CascadeError
from cascade.core.paths import resolve_data_dir
from cascade.eval.pareto import pareto_front
from cascade.pipelines.config import Config, load_config, preflight
from cascade.pipelines.runner import run_config
from cascade.rankers import STAGES

LATENCY = "latency_1t_mean_ms"


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # never coerced, finite

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    description: str = ""
    base: str | None = None
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    configs: list[str] = Field(default_factory=list)
    target: dict[str, float] = Field(default_factory=dict)
    _root: Any = PrivateAttr(default=None)  # the YAML node tree it was read from: errors name lines

    @model_validator(mode="after")
    def _one_source(self) -> SweepConfig:
        if (self.base is None) == (not self.configs):
            raise ValueError("give either 'base' with a 'grid', or a list of 'configs'")
        if self.base is not None and not self.grid:
            raise ValueError("'base' needs a 'grid' of knob: [values]")
        if any(not values for values in self.grid.values()):
            raise ValueError("every grid knob needs at least one value")
        return self


def load_sweep(path: Path) -> SweepConfig:
    """The sweep config; errors are `file:line: key: message` (cascade.core.configfile), grid errors included."""
    data, root = read_yaml(path, "sweep config")
    if not isinstance(data, dict):
        raise CascadeError("a sweep config is a YAML mapping with keys name, base, grid (or configs)", where=str(path))
    data.setdefault("name", path.stem)
    sweep = validate(SweepConfig, data, path, root)
    sweep._root = root
    return sweep


def _set_knob(config: Config, knob: str, value: Any, fail: Callable[[str, bool], CascadeError]) -> Config:
    """A copy of `config` with `stage.param[.param]` set on the first stage of that name.

    `fail(message, at_value)` makes the error at the knob's key (or at this value of it)."""
    stage, *path = knob.split(".")
    if not path:
        raise fail("a grid key is stage.param[.param], e.g. sparse.seismic.heap_factor", False)
    pipeline = copy.deepcopy(config.pipeline)
    for item in pipeline:
        if stage in item:
            node = item[stage] = dict(item[stage] or {})
            for part in path[:-1]:
                node[part] = dict(node.get(part) or {})
                node = node[part]
            node[path[-1]] = value
            try:
                STAGES[stage].Params(**item[stage])
            except ValidationError as exc:
                raise fail(f"value {value!r}: {exc.errors()[0]['msg']}", True) from None
            return config.model_copy(update={"pipeline": pipeline})
    raise fail(f"the base pipeline has no stage '{stage}'", False)


def _short(knob: str) -> str:
    return knob.split(".")[-1]


def sweep_points(sweep: SweepConfig, path: Path) -> list[tuple[Config, Path | None, dict]]:
    """(config, its file, the knob values) for every point of the sweep, validated before any work."""
    root = sweep._root

    def existing(name: str, loc: tuple) -> Path:
        file = (path.parent / name).resolve()
        if not file.is_file():
            raise error_at(path, root, loc, f"pipeline config '{file}' not found")
        return file

    if sweep.configs:
        out = []
        for index, name in enumerate(sweep.configs):
            file = existing(name, ("configs", index))
            out.append((load_config(file), file, {}))
        return out
    base_path = existing(sweep.base, ("base",))  # type: ignore[arg-type]
    base = load_config(base_path)
    knobs = list(sweep.grid)

    def fail(knob: str, index: int) -> Callable[[str, bool], CascadeError]:
        """Errors at `grid.<knob>` or, for a refused value, at `grid.<knob>[index]`."""
        return lambda message, at_value: error_at(
            path, root, ("grid", knob, index) if at_value else ("grid", knob), message
        )

    points = []
    for combination in itertools.product(*(list(enumerate(sweep.grid[k])) for k in knobs)):
        config = base
        for knob, (index, value) in zip(knobs, combination, strict=True):
            config = _set_knob(config, knob, value, fail(knob, index))
        values = [value for _, value in combination]
        label = ",".join(f"{_short(k)}={v}" for k, v in zip(knobs, values, strict=True))
        config = config.model_copy(update={"name": f"{base.name}--{label}"[:200].replace("/", "_")})
        points.append((config, base_path, dict(zip(knobs, values, strict=True))))
    return points


def _stats(manifest: dict) -> dict:
    """The stats of the run's stages merged (first stage first: a first stage's latency is the search's)."""
    merged: dict = {}
    for stage in reversed(manifest.get("stages", [])):
        merged.update(stage.get("stats") or {})
    return merged


def point_row(name: str, knobs: dict, folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    stats = _stats(manifest)
    latency = stats.get(LATENCY)
    return {
        "name": name,
        "knobs": knobs,
        "measures": metrics["measures"],
        "accuracy@10": stats.get("accuracy@10", 1.0 if stats.get("index") == "exact" else None),
        "latency_ms": latency if latency is not None else manifest.get("ms_per_query"),
        "latency_kind": LATENCY if latency is not None else "ms_per_query",
        "p50_ms": stats.get("latency_1t_p50_ms"),
        "p99_ms": stats.get("latency_1t_p99_ms"),
        "mt_mean_ms": stats.get("latency_mt_mean_ms"),
        "qps_mt": stats.get("qps_mt"),
        "folder": str(folder),
    }


def pareto(rows: list[dict], quality: str) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and `quality` (higher), fastest first.

    The tie rule is `cascade.eval.pareto`'s (the report's plot uses the same function).
    """
    return pareto_front([(row["latency_ms"], _quality(row, quality)) for row in rows])


def _fmt(value: Any, digits: int = 4) -> str:
    return "–" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def sweep_markdown(sweep: SweepConfig, rows: list[dict], measure: str, fronts: dict[str, list[int]]) -> str:
    knobs = list(sweep.grid) or ["config"]
    head = [
        *map(_short, knobs),
        measure,
        "accuracy@10",
        "latency ms (1t mean)",
        "p50",
        "p99",
        "mt mean",
        "q/s (mt)",
        f"Pareto ({measure})",
        "Pareto (acc@10)",
    ]
    out = [f"# Sweep: {sweep.name}", "", sweep.description or "", ""]
    out += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for i, row in enumerate(rows):
        values = [row["knobs"].get(k, row["name"]) for k in knobs]
        cells = [
            *map(str, values),
            _fmt(row["measures"].get(measure)),
            _fmt(row["accuracy@10"]),
            _fmt(row["latency_ms"], 3),
            _fmt(row["p50_ms"], 3),
            _fmt(row["p99_ms"], 3),
            _fmt(row["mt_mean_ms"], 3),
            _fmt(row["qps_mt"], 1),
            "★" if i in fronts[measure] else "",
            "★" if i in fronts["accuracy@10"] else "",
        ]
        out.append("| " + " | ".join(cells) + " |")
    for quality, front in fronts.items():
        out += [
            "",
            f"## Pareto frontier: latency vs {quality}",
            "",
            f"| point | latency ms | {quality} |",
            "|---|---:|---:|",
        ]
        for i in front:
            value = _quality(rows[i], quality)
            out.append(f"| {rows[i]['name']} | {_fmt(rows[i]['latency_ms'], 3)} | {_fmt(value)} |")
    for key, goal in sweep.target.items():
        ok = [r for r in rows if _quality(r, key) is not None and _quality(r, key) >= goal and r["latency_ms"]]
        best = min(ok, key=lambda r: r["latency_ms"]) if ok else None
        out += [
            "",
            f"**Target {key} >= {goal}:** "
            + (
                f"fastest point `{best['name']}` at {best['latency_ms']:.3f} ms/query "
                f"({key} {_quality(best, key):.4f}, "
                f"{measure} {_fmt(best['measures'].get(measure))})"
                if best
                else "no point reaches it"
            ),
        ]
    out += [
        "",
        f"Latency: {rows[0]['latency_kind'] if rows else LATENCY}; every point's run folder is under `points/`.",
        "",
    ]
    return "\n".join(out)


def _quality(row: dict, key: str) -> float | None:
    return row["accuracy@10"] if key == "accuracy@10" else row["measures"].get(key)


def sweep_plot(rows: list[dict], fronts: dict[str, list[int]], target: Path, title: str) -> None:
    """Latency against each quality, all points and the frontier, one panel per quality."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qualities = list(fronts)
    fig, axes = plt.subplots(1, len(qualities), figsize=(6 * len(qualities), 4.5), squeeze=False)
    for ax, quality in zip(axes[0], qualities, strict=True):
        points = [(r["latency_ms"], _quality(r, quality)) for r in rows]
        xs = [x for x, y in points if x is not None and y is not None]
        ys = [y for x, y in points if x is not None and y is not None]
        ax.scatter(xs, ys, color="tab:gray", label="points", zorder=2)
        front = fronts[quality]
        ax.plot(
            [rows[i]["latency_ms"] for i in front],
            [_quality(rows[i], quality) for i in front],
            "o-",
            color="tab:red",
            label="Pareto frontier",
            zorder=3,
        )
        ax.set_xlabel("latency per query, ms (single-threaded mean)")
        ax.set_ylabel(quality)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_file(target, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def run_sweep(
    path: Path,
    out_dir: Path,
    *,
    data_dir: str | Path | None = None,
    cache_dir: str | Path = ".cascade",
    threads: int | None = None,
    progress: bool = True,
    on_point: Any = None,
) -> tuple[Path, list[dict]]:
    """Run every point, then write sweep.md, sweep.json and sweep.png into `<out_dir>/<name>/`."""
    sweep = load_sweep(path)
    points = sweep_points(sweep, path)
    resolved = resolve_data_dir(data_dir)
    for config, file, _ in points:  # every point's dataset, data: files and trained models, before any run
        preflight(config, file or path, resolved)
    folder = out_dir / sweep.name
    rows = []
    for config, file, knobs in points:
        result = run_config(
            config, file, folder / "points", data_dir=data_dir, cache_dir=cache_dir, threads=threads, progress=progress
        )
        rows.append(point_row(config.name, knobs or {"config": config.name}, result.folder))
        if on_point:
            on_point(rows[-1])
    measure = next(iter(points[0][0].measures))
    fronts = {measure: pareto(rows, measure), "accuracy@10": pareto(rows, "accuracy@10")}
    write_text(folder / "sweep.md", sweep_markdown(sweep, rows, measure, fronts))
    write_text(
        folder / "sweep.json",
        json.dumps({"sweep": sweep.model_dump(), "points": rows, "pareto": fronts}, indent=2, default=str) + "\n",
    )
    sweep_plot(rows, fronts, folder / "sweep.png", f"{sweep.name}: efficiency vs effectiveness")
    return folder, rows
