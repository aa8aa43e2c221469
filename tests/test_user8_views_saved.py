"""A saved notebook shows how a displayed run ended, also when the view's thread is slow.

A run shown while it runs (``run`` as a cell's last line) gets its static picture
(``text/plain``, ``text/html``: what GitHub, nbconvert and the docs site show)
replaced when it ends; a frontend applies that replacement only while a cell
executes. The view's thread is made slow here (as on a loaded machine, where the
saved tour notebook showed its failed run still "running, 3/8 steps done"), and
``run.wait()`` is the last cell: the replacement must land inside it.
Real kernel (nbclient), real worker process.
"""

from __future__ import annotations

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.needs_dot

CELLS = [
    '''import time
import fuseline_nb as fl
from fuseline_nb.views.widgets import RunView

shown = RunView._refresh_fallbacks
def slow_refresh(self):          # the view's thread on a busy machine
    time.sleep(0.8)
    shown(self)
RunView._refresh_fallbacks = slow_refresh

def slow(x: int) -> int:
    time.sleep(0.3)
    return x

wf = fl.workflow_from_functions(outputs=[slow], workflow_id="slow")
session = fl.Session(workers=1)
session.submit(wf, {"x": 0}).wait(timeout=60)   # the worker is up''',
    '''run = session.submit(wf, {"x": 1})
run''',
    "run.wait(timeout=60)",
]


@pytest.mark.slow
def test_the_saved_picture_of_a_displayed_run_shows_its_end(tmp_path) -> None:
    nb = new_notebook(cells=[new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    (shown,) = [o for o in nb.cells[1].outputs if "text/plain" in o.get("data", {})]
    head = shown["data"]["text/plain"].splitlines()[0]
    # before: "run … of slow: running, 0/1 steps done (running 1)" — wait() returned first
    assert ": succeeded, 1/1 steps done" in head, head
    assert "succeeded" in shown["data"]["text/html"] and "running" not in head
