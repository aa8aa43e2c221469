"""JupyterLab on 127.0.0.1 for the browser test and the screenshot script.

One place that knows how to give JupyterLab a kernel of this virtual
environment, quiet settings (no news pop-up) and a private port and token, and
how to stop it again. ``tests/test_browser.py`` and
``scripts/screenshot_notebooks.py`` both use it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lab_environment(root: Path, kernel: str, title: str, *, windowing: bool = True) -> dict[str, str]:
    """Write a kernelspec for this venv and quiet settings under ``root``; return the server's environment.

    ``windowing=False`` renders every cell (no virtual scrolling), so a screenshot
    of a scrolled notebook shows real outputs.
    """
    kernel_dir = root / "share" / "kernels" / kernel
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": title, "language": "python"}))
    settings = root / "settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false"}))
    if not windowing:
        (settings / "notebook-extension").mkdir(parents=True)
        (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
            json.dumps({"windowingMode": "none"}))
    (root / "notebooks").mkdir(exist_ok=True)
    return dict(os.environ, JUPYTER_PATH=str(root / "share"), JUPYTER_CONFIG_DIR=str(root / "config"))


@contextmanager
def jupyterlab(root: Path, env: dict[str, str], *, start_timeout: float = 60) -> Iterator[tuple[str, str]]:
    """Run JupyterLab over ``root / "notebooks"``; yield ``(base_url, token)``; shut it down after.

    Raises ``RuntimeError`` with the server's log when it does not answer within
    ``start_timeout`` seconds.
    """
    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root / 'notebooks'}",
           f"--LabApp.user_settings_dir={root / 'settings'}", f"--LabApp.workspaces_dir={root / 'workspaces'}"]
    log_path = root / "jupyter.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                    break
                except OSError as exc:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"JupyterLab did not start:\n{log_path.read_text()}") from exc
                    time.sleep(0.3)
            yield base, token
        finally:
            try:
                req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
                urllib.request.urlopen(req, timeout=5).read()
                server.wait(timeout=10)
            except Exception:
                pass
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=10)
