"""Running the cell that creates a Session again (a real kernel via nbclient).

A notebook user runs ``session = fl.Session("runs.duckdb", workers=1)`` again
while the earlier session holds the file and a run is still going. The new
session takes the file over: the earlier one is closed with a
``SessionReplacedWarning`` naming the file, and its unfinished run resumes and
finishes in the new session (its definition is stored in the file), recorded
once. Before, the second cell failed with "already open in this process".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import fuseline_nb as fl
from fuseline_nb import SessionReplacedWarning

pytestmark = pytest.mark.slow

DEFINE = '''
import json, os, time, warnings
import fuseline_nb as fl

def slow(marker: str) -> int:
    if not os.path.exists(marker):        # the first attempt: long enough to be cut short
        open(marker, "w").close()
        time.sleep(60)
    return 41

def plus_one(v: int = fl.Depends(slow)) -> int:
    return v + 1

wf = fl.Workflow(outputs=[fl.FunctionStep(plus_one)], workflow_id="rerun-cell")
'''

SESSION = '''
session = fl.Session("runs.duckdb", workers=1)
'''

SUBMIT = '''
run = session.submit(wf, {"marker": "marker"})
deadline = time.monotonic() + 60
while not os.path.exists("marker") and time.monotonic() < deadline:
    time.sleep(0.02)
first_id, first_session = run.id, session
print(json.dumps({"started": os.path.exists("marker")}))
'''

AFTER = '''
deadline = time.monotonic() + 60
while not session.broker.get_run(first_id).done and time.monotonic() < deadline:
    time.sleep(0.05)
info = session.broker.get_run(first_id)
rows = session.sql("SELECT step, state FROM steps WHERE run_id = ? ORDER BY step", [first_id]).fetchall()
print(json.dumps({"state": info.state.value, "result": info.steps["plus_one"].result,
                  "earlier_closed": first_session.closed, "rows": rows,
                  "again": session.submit(wf, {"marker": "marker"}).wait(timeout=60)}))
session.close()
'''


def _stdout(cell: dict) -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o.get("output_type") == "stream"
                   and o.get("name") == "stdout")


def _stderr(cell: dict) -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o.get("output_type") == "stream"
                   and o.get("name") == "stderr")


def test_running_the_session_cell_again_takes_the_file_over_and_resumes_its_run(tmp_path: Path) -> None:
    nb = new_notebook(cells=[new_code_cell(c) for c in (DEFINE, SESSION, SUBMIT, SESSION, AFTER)])
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert json.loads(_stdout(nb.cells[2])) == {"started": True}
    warning = _stderr(nb.cells[3])
    assert "SessionReplacedWarning" in warning and "closed the earlier Session on 'runs.duckdb'" in warning
    assert "resume here" in warning
    out = json.loads(_stdout(nb.cells[4]))
    assert out == {"state": "SUCCEEDED", "result": 42, "earlier_closed": True,
                   "rows": [["plus_one", "SUCCEEDED"], ["slow", "SUCCEEDED"]], "again": 42}


def test_a_new_session_on_the_same_file_closes_the_earlier_one(tmp_path: Path) -> None:
    path = tmp_path / "h.duckdb"
    first = fl.Session(path, workers=0)
    with pytest.warns(SessionReplacedWarning, match=r"closed the earlier Session on '.*h\.duckdb'"):
        second = fl.Session(str(path), workers=0)
    try:
        assert first.closed and not second.closed
        assert second.sql("SELECT count(*) FROM runs").fetchall() == [(0,)]
    finally:
        second.close()
    # A closed session is not replaced (no warning); other files are left alone.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SessionReplacedWarning)
        third = fl.Session(path, workers=0)
        other = fl.Session(tmp_path / "other.duckdb", workers=0)
        memory = fl.Session(workers=0), fl.Session(workers=0)
    for s in (third, other, *memory):
        s.close()
