"""Reading run folders: the report's only input, so it can be rebuilt from them with no hidden state."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cascade.core.errors import CascadeError
from cascade.eval.textfiles import reading

DEFAULT_SUITE = "default"
CROSS_VALIDATED, STRICT = "cross-validated", "strict"  # the two training protocols a row's numbers come from
TRAIN_REF = '"train:'  # a stage parameter naming a trained model, as config.json spells it


@dataclass
class RunInfo:
    """One run folder (or several made from the same config hash, grouped under the newest)."""

    name: str
    folder: Path
    metrics: dict
    manifest: dict
    config: dict
    perquery: pd.DataFrame
    copies: list[Path] = field(default_factory=list)  # other folders with the same config hash
    label: str = ""  # the name shown; unique within its dataset section
    members: list[RunInfo] = field(default_factory=list)  # a pooled run's runs, one per dataset (`pool`)

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    @property
    def suite(self) -> str:
        return str(self.manifest.get("suite") or DEFAULT_SUITE)

    @property
    def dataset(self) -> str:
        """The section a run belongs to: the dataset, and its qrels when they are not the dataset's own."""
        qrels = self.qrels
        name = str(self.metrics.get("dataset", "?"))
        return name if qrels in ("default", "-") else f"{name} ({qrels} qrels)"

    @property
    def qrels(self) -> str:
        return str(self.metrics.get("qrels") or "default")

    @property
    def dataset_name(self) -> str:
        """The dataset alone, as `--pool` names it: metrics.json's (what `dataset` shows), else the manifest's."""
        return str(self.metrics.get("dataset") or (self.manifest.get("dataset") or {}).get("name") or "?")

    @property
    def folders(self) -> list[Path]:
        """Where its files are: the run folder, or a pooled run's members' folders (it has none of its own)."""
        return [m.folder for m in self.members] or [self.folder]

    @property
    def config_hash(self) -> str | None:
        return self.manifest.get("config_hash")

    @property
    def expected_queries(self) -> int | None:
        value = (self.manifest.get("dataset") or {}).get("queries")
        return int(value) if isinstance(value, int | float) else None

    @property
    def ms_per_query(self) -> float | None:
        value = self.manifest.get("ms_per_query")
        return float(value) if isinstance(value, int | float) else None

    @property
    def stage_ms(self) -> list[tuple[str, float]]:
        return [
            (str(s.get("stage", "?")), float(s["ms_per_query"]))
            for s in self.manifest.get("stages", [])
            if isinstance(s.get("ms_per_query"), int | float)
        ]

    @property
    def protocol(self) -> str | None:
        """How its trained models learnt, shown beside its numbers: `cross-validated` (the `cv` suite: the test
        queries train the models, never the one that scores them) or `strict` (a `train:` model, which learns from
        other queries only); None when nothing in the run is trained."""
        if self.manifest.get("protocol") == CROSS_VALIDATED:
            return CROSS_VALIDATED
        return STRICT if TRAIN_REF in json.dumps(self.config.get("pipeline") or []) else None

    @property
    def summary(self) -> dict:
        """The training protocol (when anything is trained), then figures a suite reports besides per-query measures
        (e.g. the mean over ReSTTest buckets, or why a stage could not read instructions): shown as they are, with
        no test, since they have no per-query values. The stages' figures come from the manifest's `summary`, the
        only place of the wall-clock ones (a stage's latency, build time), so metrics.json stays the same on every
        rerun; then metrics.json's."""
        out: dict = {"protocol": self.protocol} if self.protocol else {}
        for value in (self.manifest.get("summary"), self.metrics.get("summary")):
            out.update(value if isinstance(value, dict) else {})
        return out

    @property
    def measures(self) -> list[str]:
        """In the config's order (metrics.json keeps it), then any other measure the per-query table has."""
        listed = [str(m) for m in (self.metrics.get("measures") or {})]
        present = [str(m) for m in pd.unique(self.perquery["measure"])]
        return [m for m in listed if m in present] + [m for m in present if m not in listed]


def _json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        with reading(path, "JSON"):
            value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CascadeError(f"not valid JSON ({exc.msg})", where=f"{path}:{exc.lineno}") from None
    if not isinstance(value, dict):
        raise CascadeError("expected a JSON object", where=str(path))
    return value


def read_run_folder(folder: str | Path) -> RunInfo:
    """A run folder as `cascade run` writes it; the per-query values are required, the rest is optional."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CascadeError(f"run folder '{folder}' does not exist")
    if not (folder / "perquery.tsv").exists():
        raise CascadeError(f"'{folder}' is not a run folder: it has no perquery.tsv")
    metrics = _json(folder / "metrics.json")
    manifest = _json(folder / "manifest.json")
    try:
        with reading(folder / "perquery.tsv", "per-query table"):
            perquery = pd.read_csv(
                folder / "perquery.tsv",
                sep="\t",
                dtype={"qid": str, "measure": str, "value": "float64"},
                keep_default_na=False,
                na_values={"value": ["nan", "NaN", ""]},
            )
    except (ValueError, pd.errors.ParserError) as exc:
        raise CascadeError(f"not a per-query table ({exc})", where=str(folder / "perquery.tsv")) from None
    if list(perquery.columns) != ["qid", "measure", "value"]:
        raise CascadeError("expected the columns qid, measure, value", where=str(folder / "perquery.tsv"))
    name = str(metrics.get("name") or manifest.get("name") or folder.name)
    return RunInfo(name, folder, metrics, manifest, _json(folder / "config.json"), perquery)


def collect_runs(root: str | Path) -> list[RunInfo]:
    """Every run folder under `root` (any depth); folders made from the same config hash become one run."""
    root = Path(root)
    if not root.is_dir():
        raise CascadeError(f"runs directory '{root}' does not exist")
    found = []
    for path in sorted(root.rglob("perquery.tsv")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # temp folders of runs in progress
        found.append(read_run_folder(path.parent))
    groups: dict[str, list[RunInfo]] = {}
    for run in found:
        key = f"{run.suite}:{run.config_hash}" if run.config_hash else f"folder:{run.folder}"
        groups.setdefault(key, []).append(run)
    runs = []
    for members in groups.values():
        members.sort(key=lambda r: (str(r.manifest.get("created", "")), str(r.folder)), reverse=True)
        newest = members[0]
        newest.copies = [m.folder for m in members[1:]]
        runs.append(newest)
    unique_labels(runs)
    return sorted(runs, key=lambda r: (r.suite, r.dataset, r.name))


def unique_labels(runs: list[RunInfo]) -> None:
    """Two different configs with one name on one dataset get the config hash's start appended."""
    seen: dict[tuple[str, str, str], int] = {}
    for run in runs:
        key = (run.suite, run.dataset, run.name)
        seen[key] = seen.get(key, 0) + 1
    for run in runs:
        if seen[(run.suite, run.dataset, run.name)] > 1:
            run.label = f"{run.name}@{(run.config_hash or run.folder.name)[:8]}"
