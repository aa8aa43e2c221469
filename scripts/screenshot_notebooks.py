"""Open each notebook in JupyterLab (Debian's chromium via Playwright), run it, screenshot it.

Usage (after ``bash scripts/setup.sh --browser``)::

    .venv/bin/python scripts/screenshot_notebooks.py [NOTEBOOK ...]

Writes ``artifacts/notebooks/<name>-<k>.png``: the notebook after "Run All Cells",
one picture per screenful from top to bottom, so a person can check that nothing
is clipped, unreadable or overlapping. The notebooks run in copies with their saved
outputs cleared, in a kernel of this virtual environment; the originals are not
touched. Exits non-zero when a notebook shows an error output or does not finish.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.lab import CHROMIUM, CHROMIUM_ARGS, jupyterlab, lab_environment  # noqa: E402

OUT = ROOT / "artifacts" / "notebooks"
KERNEL, TITLE = "fuseline-shots", "fuseline (screenshots)"
VIEWPORT = {"width": 1360, "height": 1000}


def _prepare(root: Path, notebooks: list[Path]) -> dict[str, str]:
    """Cleared copies of the notebooks, a kernelspec for this venv, quiet settings."""
    env = lab_environment(root, KERNEL, TITLE, windowing=False)
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": TITLE, "language": "python"}
        nbformat.write(nb, root / "notebooks" / path.name)
    return env


def _shoot(page, base: str, token: str, name: str, timeout_s: float) -> list[str]:
    """Run one notebook in the page and screenshot it; return problems found."""
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.get_by_text(f"{TITLE} | Idle").wait_for(timeout=90_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    deadline = time.monotonic() + timeout_s
    page.wait_for_timeout(1500)
    while time.monotonic() < deadline:
        busy = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt'))
            .filter(p => p.textContent.includes('[*]')).length""")
        if busy == 0:
            break
        time.sleep(0.5)
    else:
        return [f"{name}: still running after {timeout_s:.0f} s"]
    page.wait_for_timeout(1500)  # last widget messages and chart renders
    problems = []
    errors = page.evaluate("""() => Array.from(document.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"] pre'))
        .map(e => e.textContent).filter(t => /Traceback/.test(t)).map(t => t.slice(0, 300))""")
    problems += [f"{name}: error output: {e}" for e in errors]
    stem = Path(name).stem
    for old in OUT.glob(f"{stem}-*.png"):
        old.unlink()
    # the notebook on show (JupyterLab restores earlier notebooks as hidden tabs)
    scroller = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"
    height = page.evaluate(f"() => document.querySelector('{scroller}').scrollHeight")
    step, k, y = VIEWPORT["height"] - 160, 0, 0
    while y < height and k < 40:
        page.evaluate(f"(y) => document.querySelector('{scroller}').scrollTo(0, y)", y)
        page.wait_for_timeout(250)
        k += 1
        page.screenshot(path=str(OUT / f"{stem}-{k:02d}.png"))
        y += step
    print(f"{name}: {k} screenshot(s) in {OUT.relative_to(ROOT)}")
    return problems


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        print(f"Debian's chromium is missing ({CHROMIUM}): run 'bash scripts/setup.sh --browser'", file=sys.stderr)
        return 2
    notebooks = [Path(a).resolve() for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    OUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = _prepare(root, notebooks)
        with jupyterlab(root, env) as (base, token), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for path in notebooks:
                    page = browser.new_page(viewport=VIEWPORT)
                    try:
                        problems += _shoot(page, base, token, path.name, timeout_s=300)
                    finally:
                        page.close()
            finally:
                browser.close()
    for p in problems:
        print("problem:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
