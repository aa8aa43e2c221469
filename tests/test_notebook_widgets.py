"""The live view through a real kernel: nbclient runs a notebook and saves the widget state.

Worker processes, the broker in the kernel and the view's thread are all
real; the saved widget state is what a frontend would have been sent.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from fuseline_nb.views.palette import FILL

pytestmark = pytest.mark.needs_dot  # the views are checked on the SVG that dot lays out

SETUP = '''
import time
import fuseline_nb as fl
from fuseline_nb import FunctionStep, Workflow

def start():
    time.sleep(0.5)  # the view is shown before the run ends
    return "ok"

def good():
    return 42

def never():
    return 0

def boom():
    raise ValueError("boom: bad input")

def after_boom():
    return 1

s, g, n, b, a = (FunctionStep(f) for f in (start, good, never, boom, after_boom))
_ = (s - "ok") >> g
_ = (s - "other") >> n
_ = b >> a
wf = Workflow(outputs=[g, a], workflow_id="four")
session = fl.Session(workers=1)
'''

WATCH = '''
run = session.submit(wf)
view = run.view()
print("done when shown:", view.state.done)
view
'''

FINISH = '''
run.wait()
assert view.join(timeout=20)
print(view.state.run_state, sorted(k for k, v in view.state.counts().items() if v))
'''

SHOW_RUN = "run"


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_code_cell(c) for c in (SETUP, WATCH, FINISH, SHOW_RUN, "session.close()")])
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True)
    client.execute()
    return nb


def run_views(nb: nbformat.NotebookNode) -> list[dict]:
    """The saved state of every run view (the anywidget models that carry a layout)."""
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [m["state"] for m in state.values() if "codes" in m["state"] and "svg" in m["state"]]


@pytest.mark.slow
def test_saved_widget_state_shows_all_four_outcomes(executed):
    stdout = "".join(o["text"] for o in executed.cells[2].outputs if o.get("name") == "stdout")
    assert stdout.strip() == (
        "FAILED ['CANCELLED', 'FAILED', 'SKIPPED', 'SUCCEEDED']"
    )
    views = run_views(executed)
    assert views, "no run view was saved"
    final = views[0]
    assert final["counts"] == {"S": 2, "K": 1, "F": 1, "C": 1}
    assert dict(zip(final["node_steps"], final["codes"], strict=True)) == {
        "start": "S", "good": "S", "never": "K", "boom": "F", "after_boom": "C"}
    assert "<svg" in final["svg"] and final["run_state"] == "FAILED" and final["done"] == 5
    assert final["palette"]["F"] == FILL["FAILED"]  # the browser colours from the saved state alone
    assert "ValueError: boom: bad input" in final["detail"] and "Traceback" in final["detail"]
    assert "export default" in final["_esm"]  # the front end is saved with the notebook


@pytest.mark.slow
def test_the_view_cell_shows_a_widget_with_html_and_text_fallbacks(executed):
    printed, out = executed.cells[1].outputs
    assert printed["text"] == "done when shown: False\n"
    data = out["data"]
    assert "application/vnd.jupyter.widget-view+json" in data
    # shown while the run was starting; the end of the run replaced the fallbacks
    assert "failed 1" in data["text/html"] and "cancelled 1" in data["text/html"]
    assert "<svg" in data["text/html"] and "ValueError: boom: bad input" in data["text/html"]
    assert "failed, 5/5 steps done" in data["text/plain"]


@pytest.mark.slow
def test_a_run_displays_as_its_run_view(executed):
    (out,) = executed.cells[3].outputs
    data = out["data"]
    model = data["application/vnd.jupyter.widget-view+json"]["model_id"]
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state[model]["model_name"] == "AnyModel" and state[model]["state"]["run_state"] == "FAILED"
    assert "failed 1" in data["text/html"] and "cancelled 1" in data["text/html"]
    assert "failed, 5/5 steps done" in data["text/plain"]
    json.dumps(executed)  # the saved notebook is plain JSON
