"""Re-running a cell that rebinds ``session`` ends the old session's workers (a real kernel via nbclient).

IPython keeps the displayed ``Run`` (and its live view) in ``Out`` and ``_``;
neither may keep the old session's worker processes alive.
"""

from __future__ import annotations

import json

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = pytest.mark.slow

SETUP = '''
import json, time
import psutil
import fuseline_nb as fl

def double(x: int) -> int:
    return 2 * x

wf = fl.Workflow(outputs=[fl.FunctionStep(double)], workflow_id="leak")
seen = []   # pids of every pool this kernel started (plain ints: they keep nothing alive)
'''

# The cell a user re-runs: rebinds session and run, displays the run (its live view).
CELL = '''
session = fl.Session(workers=2)
run = session.submit(wf, {"x": 21})
run.wait(timeout=60)
seen.extend(session.pool.pids())
run
'''

VIEW = '''
view = run.view()
view
'''

COUNT = '''
def alive(pids):
    return sorted(p for p in pids if psutil.pid_exists(p)
                  and psutil.Process(p).status() != psutil.STATUS_ZOMBIE)

deadline = time.monotonic() + 20
while set(alive(seen)) != set(session.pool.pids()) and time.monotonic() < deadline:
    time.sleep(0.05)
children = [c.pid for c in psutil.Process().children(recursive=True)
            if c.status() != psutil.STATUS_ZOMBIE and c.pid in seen]
print(json.dumps({"seen": len(seen), "alive": alive(seen), "current": sorted(session.pool.pids()),
                  "children": sorted(children), "out_has_run": any(v is run for v in Out.values())}))
'''


def _stdout(cell: dict) -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o.get("output_type") == "stream")


def test_rerun_cell_rebinding_session_ends_old_workers(tmp_path) -> None:
    nb = new_notebook(cells=[new_code_cell(SETUP), new_code_cell(CELL), new_code_cell(VIEW),
                             new_code_cell(CELL), new_code_cell(VIEW), new_code_cell(COUNT),
                             new_code_cell("session.close()")])
    client = NotebookClient(nb, kernel_name="python3", timeout=180,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    result = json.loads(_stdout(nb.cells[5]).strip().splitlines()[-1])
    assert result["seen"] == 4  # two sessions of two workers ran
    assert result["out_has_run"]  # IPython does keep the displayed run
    assert result["alive"] == result["current"]  # ... but only one session's workers live
    assert result["children"] == result["current"]
    assert len(result["current"]) == 2
