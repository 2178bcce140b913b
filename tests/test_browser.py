"""The HTML report in a real browser: headless Debian Chromium driven by Playwright's Python API.

Runs on the built-in sample plus a tiny BEIR folder whose one document is `<script>alert(1)</script>`, all made
by the real runner; the page is built by the real CLI and opened from disk, offline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cascade.eval.frames import write_beir_folder
from cascade.pipelines.config import load_config
from cascade.pipelines.runner import run_config

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCRIPT = "<script>alert(1)</script>"


def chromium() -> str:
    path = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    return str(path)


def tiny_dataset(folder: Path) -> Path:
    """The script 'document' wins the first query on BM25 but is not relevant; the relevant one comes second."""
    docs = [
        {"docno": "x1", "title": "", "text": SCRIPT},
        {"docno": "x2", "title": "Pager", "text": "The alert script on the monitoring server pages the operator."},
        {"docno": "x3", "title": "Pasta", "text": "Salt the pasta water generously before the pasta goes in."},
        {"docno": "x4", "title": "Bread", "text": "A sourdough starter needs flour, water and patience."},
        {"docno": "x5", "title": "Disks", "text": "When a disk fills up the monitoring server raises an alarm."},
    ]
    queries = pd.DataFrame({"qid": ["t1", "t2", "t3"], "query": ["script alert", "pasta water salt", "disk alarm"]})
    qrels = pd.DataFrame({"qid": ["t1", "t2", "t3"], "docno": ["x2", "x3", "x5"], "label": [2, 2, 2]})
    return write_beir_folder(folder, docs, queries, qrels)


@pytest.fixture(scope="module")
def site(tmp_path_factory, cache_dir) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    runs = tmp / "runs"
    for name in ("bm25.yaml", "bm25-rm3.yaml"):
        path = ROOT / "configs" / "sample" / name
        run_config(load_config(path), path, runs / "sample", cache_dir=cache_dir, progress=False)
    folder = tiny_dataset(tmp / "tiny")
    for name, k in (("tiny-top1", 1), ("tiny-top10", 10)):
        config = tmp / f"{name}.yaml"
        config.write_text(f"name: {name}\ndataset: {{path: {folder}}}\npipeline:\n  - bm25: {{k: {k}}}\n")
        result = run_config(load_config(config), config, runs / "tiny", cache_dir=cache_dir, progress=False)
        # Suites come with issue 5; until then a run's suite is its manifest's "suite" key.
        manifest = json.loads((result.folder / "manifest.json").read_text())
        (result.folder / "manifest.json").write_text(json.dumps({**manifest, "suite": "tiny <b>suite</b>"}))
    result = subprocess.run(
        [sys.executable, "-m", "cascade.pipelines.cli", "leaderboard", str(runs), "--html", str(tmp / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return tmp / "site" / "index.html"


def test_report_works_in_headless_chromium(site, tmp_path):
    executable = chromium()
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(site.as_uri())

            tabs = page.get_by_role("tab")
            assert tabs.count() == 2
            assert tabs.nth(0).inner_text() == "default" and tabs.nth(1).inner_text() == "tiny <b>suite</b>"
            default_panel, tiny_panel = page.locator("[role=tabpanel]").nth(0), page.locator("[role=tabpanel]").nth(1)
            assert default_panel.is_visible() and not tiny_panel.is_visible()

            # Sort the sample leaderboard by nDCG@10: ascending, then descending.
            table = default_panel.locator("table.leaderboard").first
            header = table.locator("th", has_text="nDCG@10").first
            column = [t.strip() for t in table.locator("thead th").all_inner_texts()].index("nDCG@10")

            def values() -> list[float]:
                cells = table.locator(f"tbody tr td:nth-child({column + 1})")
                return [float(v) for v in cells.evaluate_all("cells => cells.map(c => c.dataset.v)")]

            header.click()
            assert header.get_attribute("aria-sort") == "ascending"
            ascending = values()
            assert ascending == sorted(ascending) and len(ascending) == 2 and ascending[0] < ascending[1]
            header.click()
            assert header.get_attribute("aria-sort") == "descending"
            assert values() == sorted(ascending, reverse=True)
            names = table.locator("tbody tr td:first-child").all_inner_texts()
            assert names[0].startswith("sample-bm25-rm3")

            # The efficiency-effectiveness plot is drawn, with a point per run and a frontier.
            plot = default_panel.locator("svg.effplot").first
            assert plot.is_visible()
            box = plot.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 150
            assert plot.locator("g.point circle").count() == 2
            assert plot.locator("g.frontier circle").count() >= 1

            # Switch tabs; the script document shows as text in the drill-down and never runs.
            tabs.nth(1).click()
            assert tiny_panel.is_visible() and not default_panel.is_visible()
            assert tabs.nth(1).get_attribute("aria-selected") == "true"
            drill = tiny_panel.locator("details.drill").first
            drill.locator("summary").click()
            snippet = drill.locator(".snippet", has_text=SCRIPT).first
            assert snippet.is_visible()
            assert snippet.inner_text() == SCRIPT
            assert page.locator("script").count() == 1  # only the report's own
            assert page.evaluate("() => document.body.innerHTML.includes('<script>alert(1)')") is False

            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == [] and errors == []
    assert all(url.startswith("file://") for url in requests), requests  # offline: nothing but the page itself
    assert (tmp_path / "report.png").stat().st_size > 10_000
