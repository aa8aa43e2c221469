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

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "artifacts" / "notebooks"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KERNEL, TITLE = "fuseline-shots", "fuseline (screenshots)"
VIEWPORT = {"width": 1360, "height": 1000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prepare(root: Path, notebooks: list[Path]) -> dict[str, str]:
    """Cleared copies of the notebooks, a kernelspec for this venv, quiet settings."""
    (root / "notebooks").mkdir()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": TITLE, "language": "python"}
        nbformat.write(nb, root / "notebooks" / path.name)
    kernel_dir = root / "share" / "kernels" / KERNEL
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": TITLE, "language": "python"}))
    settings = root / "settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false"}))
    (settings / "notebook-extension").mkdir(parents=True)
    # render every cell (no windowing), so scrolling shows real outputs
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    return {**os.environ, "JUPYTER_PATH": str(root / "share")}


def _start_lab(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, str]:
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root / 'notebooks'}",
           f"--LabApp.user_settings_dir={root / 'settings'}", f"--LabApp.workspaces_dir={root / 'ws'}"]
    log = open(root / "jupyter.log", "w")  # lives as long as the server; closed when it ends
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
            return server, base, token
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" + (root / "jupyter.log").read_text()) from None
            time.sleep(0.3)


def _stop_lab(server: subprocess.Popen[bytes], base: str, token: str) -> None:
    try:
        req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
        urllib.request.urlopen(req, timeout=5).read()
        server.wait(timeout=10)
    except Exception:
        pass
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)


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
        server, base, token = _start_lab(root, env)
        try:
            with sync_playwright() as pw:
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
        finally:
            _stop_lab(server, base, token)
    for p in problems:
        print("problem:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
