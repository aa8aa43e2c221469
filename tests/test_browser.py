"""A real browser: JupyterLab on 127.0.0.1, Debian's chromium driven by Playwright.

The test opens a notebook, runs it, and watches the run view's graph in the
page: node fills must change while the run proceeds and end green. Then it
clicks a node and reads the step's details, opens the Timeline tab, and
presses Cancel on a long run and sees it end CANCELLED. It saves screenshots
under ``artifacts/`` (mid-run, final, details, timeline, cancelled).

Chromium cannot be downloaded here; ``scripts/setup.sh --browser`` installs
Debian's package. Without it this test fails and says so (it never skips).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from fuseline_nb.views.palette import FILL
from tests.lab import CHROMIUM, CHROMIUM_ARGS, lab_environment
from tests.lab import jupyterlab as lab

pytestmark = pytest.mark.needs_dot  # the views are checked on the SVG that dot lays out

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
KERNEL = "fuseline-browser-test"
KERNEL_TITLE = "fuseline (browser test)"

NOTEBOOK_CELLS = [
    '''import time
import fuseline_nb as fl
from fuseline_nb import FunctionStep, Workflow

def work(delay: float = 0.5) -> int:
    time.sleep(delay)
    return 1

steps = [FunctionStep(work, name=f"step_{i}") for i in range(8)]
for a, b in zip(steps, steps[1:]):
    _ = a >> b
wf = Workflow(outputs=[steps[-1]], workflow_id="browser_chain")
session = fl.Session(workers=1)
session.submit(wf, {"delay": 0.01}).wait()  # warm the worker up''',
    '''run = session.submit(wf, {"delay": 0.5})
run''',
    '''long = session.submit(wf, {"delay": 30.0})  # about 4 minutes unless cancelled
long''',
    # not long.wait(): a busy kernel would handle the clicks only after the cell
    '''group = session.map(wf, [{"delay": d} for d in (0.01, 0.02, 0.03)])
group''',
]

_FILLS_JS = """() => Array.from(document.querySelectorAll('.jp-OutputArea .fl-view')[0]?.querySelectorAll('svg g.node') ?? [])
    .filter(g => /^fl[0-9a-f]{8}_[0-9]+$/.test(g.id))
    .map(g => g.querySelector('path,polygon,ellipse').getAttribute('fill'))"""


def _write_setup(root: Path) -> dict[str, str]:
    """A notebook folder with the test notebook, a kernelspec for this venv, quiet settings."""
    env = lab_environment(root, KERNEL, KERNEL_TITLE)
    nb = new_notebook(cells=[new_code_cell(c) for c in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL_TITLE, "language": "python"}
    nbformat.write(nb, root / "notebooks" / "watch.ipynb")
    return env


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[str]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Debian's chromium is missing ({CHROMIUM}): run 'bash scripts/setup.sh --browser' "
                    "(it runs apt-get install chromium); no browser can be downloaded here")
    with lab(tmp_path, _write_setup(tmp_path)) as (base, token):
        yield f"{base}/lab/tree/watch.ipynb?token={token}"


@pytest.mark.slow
@pytest.mark.browser
def test_run_view_in_the_browser_colours_details_timeline_and_cancel(jupyterlab: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(jupyterlab)
            page.get_by_text(f"{KERNEL_TITLE} | Idle").wait_for(timeout=60_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            snapshots: list[tuple[str, ...]] = []
            mid_shot = False
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                fills = tuple(page.evaluate(_FILLS_JS))
                if fills and (not snapshots or fills != snapshots[-1]):
                    snapshots.append(fills)
                if not mid_shot and FILL["RUNNING"] in fills and fills.count(FILL["SUCCEEDED"]) >= 3:
                    page.screenshot(path=str(ARTIFACTS / "browser-runview-running.png"))
                    mid_shot = True
                if fills and all(f == FILL["SUCCEEDED"] for f in fills):
                    break
                time.sleep(0.1)
            page.wait_for_timeout(300)
            page.screenshot(path=str(ARTIFACTS / "browser-runview.png"))
            first, long_view = page.locator(".fl-view").nth(0), page.locator(".fl-view").nth(1)
            first.screenshot(path=str(ARTIFACTS / "browser-runview-final.png"))
            # click a node: its details appear below the graph
            first.locator("g.node", has_text="step_3").click()
            detail = first.locator(".fl-detail")
            detail.get_by_text("result").wait_for(timeout=20_000)
            detail_text = detail.inner_text()
            first.screenshot(path=str(ARTIFACTS / "browser-runview-details.png"))
            # the timeline tab: a Gantt chart drawn in the kernel
            first.get_by_role("button", name="Timeline").click()
            first.locator(".fl-timeline svg").wait_for(timeout=60_000)
            timeline_text = first.locator(".fl-timeline").inner_text()
            first.screenshot(path=str(ARTIFACTS / "browser-runview-timeline.png"))
            # cancel the long run once a step of it runs
            long_view.locator(".fl-header").get_by_text("running").wait_for(timeout=60_000)
            page.wait_for_function(
                "() => { const v = document.querySelectorAll('.fl-view')[1];"
                " return v && v.querySelector('.fl-table') &&"
                " v.querySelector('.fl-table').innerText.includes('so far'); }", timeout=60_000)
            long_view.get_by_role("button", name="Cancel run").click()
            long_view.locator(".fl-header").get_by_text("cancelled").wait_for(timeout=30_000)
            page.wait_for_timeout(300)
            long_view.screenshot(path=str(ARTIFACTS / "browser-runview-cancelled.png"))
            cancelled_header = long_view.locator(".fl-header").inner_text()
            cancel_visible = long_view.get_by_role("button", name="Cancel run").is_visible()
            # the group view: a row per run; a click opens that run's view below the table
            group = page.locator(".fl-view", has=page.locator("th", has_text="progress")).first
            group.get_by_text("3 runs: succeeded 3").wait_for(timeout=90_000)
            group.locator("tr.fl-row").nth(1).click()
            opened = page.locator(".fl-view").nth(3)
            opened.locator(".fl-header").get_by_text("succeeded").wait_for(timeout=30_000)
            page.wait_for_timeout(300)
            group.locator("xpath=..").locator("xpath=..").screenshot(path=str(ARTIFACTS / "browser-group.png"))
            group_text, opened_header = group.inner_text(), opened.locator(".fl-header").inner_text()
        finally:
            browser.close()
    assert snapshots, "the run view's graph never appeared in the page"
    assert all(len(s) == 8 for s in snapshots)
    assert all(f == FILL["SUCCEEDED"] for f in snapshots[-1]), snapshots[-1]
    assert any(FILL["RUNNING"] in s for s in snapshots), "no node was ever shown running"
    # the page saw the run proceed: several distinct colourings, with ever more green nodes
    greens = [s.count(FILL["SUCCEEDED"]) for s in snapshots]
    assert len(snapshots) >= 4, snapshots
    assert greens == sorted(greens) and greens[0] < 8
    assert "step_3" in detail_text and "on w1" in detail_text and "result" in detail_text
    assert "input delay" in detail_text and "from step_2" in detail_text
    assert "seconds since the run started" in timeline_text and "w1" in timeline_text
    assert "cancelled" in cancelled_header and not cancel_visible
    assert group_text.count("succeeded") >= 3 and "delay=0.02" in group_text
    assert "8/8 steps done" in opened_header
