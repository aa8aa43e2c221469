"""Steps defined in notebook cells run in spawned worker processes (a real kernel via nbclient)."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

DEFINE = '''
import os
import fuseline_nb as fl

class Scale(fl.Step):                 # defined in __main__: only cloudpickle can ship it
    factor = 3
    def run_step(self, x: int) -> dict:
        return {"value": x * self.factor, "pid": os.getpid()}

def label(scaled: dict = fl.Depends(Scale)) -> str:
    return f"{scaled['value']} from pid {scaled['pid']}"

scale = Scale()
wf = fl.Workflow(outputs=[scale, fl.FunctionStep(label)], workflow_id="in-notebook")
session = fl.Session(workers=2)
'''

SUBMIT = '''
run = session.submit(wf, {"x": 14})
print("returned at once:", run.info().state.value in ("RUNNING", "SUCCEEDED"))
'''

WAIT = '''
scaled, text = run.wait(timeout=60)
kernel_pid = os.getpid()
print(json.dumps({"value": scaled["value"], "worker_pid": scaled["pid"], "kernel_pid": kernel_pid,
                  "pool_pids": session.pool.pids(), "text": text, "state": run.info().state.value}))
'''

REDEFINE = '''
class Scale(fl.Step):                 # the cell edited and run again: the new code must run
    def run_step(self, x: int) -> dict:
        return {"value": x * 10, "pid": os.getpid()}

wf2 = fl.Workflow(outputs=[Scale()], workflow_id="in-notebook-2")
print(json.dumps(session.submit(wf2, {"x": 4}).wait(timeout=60)["value"]))
pids = session.pool.pids()
session.close()
import psutil
print(json.dumps({"alive": [p for p in pids if psutil.pid_exists(p)
                            and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]}))
'''


def _stdout(cell: dict) -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o.get("output_type") == "stream")


def test_steps_defined_in_cells_run_in_worker_processes(tmp_path) -> None:
    nb = new_notebook(cells=[new_code_cell("import json"), new_code_cell(DEFINE), new_code_cell(SUBMIT),
                             new_code_cell(WAIT), new_code_cell(REDEFINE)])
    client = NotebookClient(nb, kernel_name="python3", timeout=180,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    nbformat.validate(nb)
    assert "returned at once: True" in _stdout(nb.cells[2])
    result = json.loads(_stdout(nb.cells[3]).strip().splitlines()[-1])
    assert result["state"] == "SUCCEEDED"
    assert result["value"] == 42
    assert result["worker_pid"] != result["kernel_pid"]
    assert result["worker_pid"] in result["pool_pids"]
    assert result["text"] == f"42 from pid {result['worker_pid']}"
    lines = _stdout(nb.cells[4]).strip().splitlines()
    assert json.loads(lines[0]) == 40
    assert json.loads(lines[1]) == {"alive": []}
