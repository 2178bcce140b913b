"""Leaderboard v0: one Markdown table of every run folder under a directory, rebuilt from the folders alone."""

from __future__ import annotations

import json
from pathlib import Path

from eval.atomic import write_text
from eval.errors import CascadeError


def collect_runs(root: Path) -> list[dict]:
    """Every `<run>/metrics.json` with its `manifest.json`, sorted by dataset then name."""
    if not root.is_dir():
        raise CascadeError(f"runs directory '{root}' does not exist")
    rows = []
    for metrics_path in sorted(root.rglob("metrics.json")):
        if any(part.startswith(".") for part in metrics_path.relative_to(root).parts):
            continue  # temp folders of runs in progress
        manifest_path = metrics_path.with_name("manifest.json")
        try:
            metrics = json.loads(metrics_path.read_text())
            manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        except json.JSONDecodeError as exc:
            raise CascadeError(f"not valid JSON ({exc.msg})", where=f"{metrics_path}:{exc.lineno}") from None
        rows.append({"folder": metrics_path.parent, "metrics": metrics, "manifest": manifest})
    return sorted(rows, key=lambda r: (r["metrics"].get("dataset", ""), r["metrics"].get("name", "")))


def leaderboard_markdown(rows: list[dict]) -> str:
    """Pipeline x dataset x measures, plus ms/query; one table per dataset so columns line up."""
    if not rows:
        return "No runs found.\n"
    out = ["# Leaderboard", ""]
    datasets: dict[str, list[dict]] = {}
    for row in rows:
        key = f"{row['metrics'].get('dataset', '?')} ({row['metrics'].get('qrels', 'default')} qrels)"
        datasets.setdefault(key, []).append(row)
    for dataset, group in datasets.items():
        measures: list[str] = []
        for row in group:
            measures += [m for m in row["metrics"]["measures"] if m not in measures]
        out += [f"## {dataset}", ""]
        out.append("| pipeline | stages | queries | " + " | ".join(measures) + " | ms/query |")
        out.append("|---|---|---:|" + "---:|" * len(measures) + "---:|")
        group = sorted(group, key=lambda r: -(r["metrics"]["measures"].get(measures[0]) or 0.0))
        for row in group:
            values = [row["metrics"]["measures"].get(m) for m in measures]
            cells = ["–" if v is None else f"{v:.4f}" for v in values]
            ms = row["manifest"].get("ms_per_query")
            stages = row["manifest"].get("pipeline", "").replace("|", "\\|")
            out.append(
                f"| {row['metrics'].get('name', row['folder'].name)} | `{stages}` | "
                f"{row['metrics'].get('queries', '')} | "
                + " | ".join(cells)
                + f" | {'–' if ms is None else f'{ms:.2f}'} |"
            )
        out.append("")
    return "\n".join(out)


def write_leaderboard(root: Path, out: Path | None = None) -> tuple[Path, str]:
    text = leaderboard_markdown(collect_runs(root))
    target = out or root / "leaderboard.md"
    write_text(target, text)
    return target, text
