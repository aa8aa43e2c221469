"""A step that fails on a worker shows its notebook cell's source line, as in-process (a real kernel)."""

from __future__ import annotations

import json

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

DEFINE = '''
import json
import fuseline_nb as fl

def boom(y: int) -> float:
    scale = 0
    return 1 / (y * scale)   # the line both tracebacks must show
'''

RUN = '''
wf = fl.workflow_from_functions([boom], workflow_id="tb")
local = None
try:
    wf.run({"y": 2}, raise_on_failure=True)
except fl.StepFailedError as exc:
    local = exc.tracebacks["boom"]
session = fl.Session("history.duckdb", workers=1)
run = session.submit(wf, {"y": 2})
try:
    run.wait(timeout=60, raise_on_failure=True)
except fl.StepFailedError as exc:
    raised = str(exc)
pid = session.pool.pids()[0]
((stored,),) = session.sql("SELECT traceback FROM steps WHERE step = 'boom'").fetchall()
session.close()
print(json.dumps({"local": local, "stored": stored, "raised": raised}))
'''


def test_a_worker_traceback_shows_the_cells_file_and_source_line(tmp_path) -> None:
    nb = new_notebook(cells=[new_code_cell(DEFINE), new_code_cell(RUN)])
    client = NotebookClient(nb, kernel_name="python3", timeout=180,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    out = "".join(o.get("text", "") for o in nb.cells[1]["outputs"] if o.get("output_type") == "stream")
    got = json.loads(out.strip().splitlines()[-1])
    source = "return 1 / (y * scale)   # the line both tracebacks must show"
    cell_frame = [ln for ln in got["local"].splitlines() if ln.strip().startswith("File ") and "in boom" in ln]
    assert cell_frame and "<dynamic-code>" not in cell_frame[0], got["local"]
    for where in ("local", "stored", "raised"):
        text = got[where]
        assert cell_frame[0] in text, f"{where}: {text}"  # same file name and line number as in-process
        assert source in text, f"{where}: {text}"
        assert "<dynamic-code>" not in text
    assert got["stored"].rstrip().endswith("ZeroDivisionError: division by zero")
