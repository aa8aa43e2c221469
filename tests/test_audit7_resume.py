"""Audit (session 7): a workflow edited and edited back, then the kernel dies mid-run, in real Jupyter kernels.

A history keeps the latest definition of each workflow id (and those of unfinished runs). Trying a step
out and taking it away again gives the workflow another version and then its first one back; the workers
still had the first one, so it was not shipped — nor stored — again, while storing the second had pruned
it from the file. Before: when the kernel died during the run of the first version again, the reopened
file could not resume it ("cannot resume yet: the history file holds no definition of it (it was not run
from a Session's workers)"): the run stayed RUNNING until the user happened to submit that workflow again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_audit6_kernel import SETUP, Kernel

pytestmark = pytest.mark.slow

EDIT_AND_BACK = """
ONE = '''
def load(go: str) -> int:
    while not os.path.exists(go):
        time.sleep(0.01)
    return 1
wf = fl.Workflow(outputs=[fl.FunctionStep(load)], workflow_id="audit7-edited-back")
'''
TWO = ONE + '''
def more(v=fl.Depends(load)) -> int:
    return v + 1
wf = fl.Workflow(outputs=[fl.FunctionStep(more)], workflow_id="audit7-edited-back")
'''
session = fl.Session("k.duckdb", workers=1)
open("go", "w").close()
exec(ONE); assert session.submit(wf, {"go": "go"}).wait(timeout=60) == 1
exec(TWO); assert session.submit(wf, {"go": "go"}).wait(timeout=60) == 2
os.remove("go")
exec(ONE); run = session.submit(wf, {"go": "go"})
while session.sql("select count(*) from steps where run_id = ? and state = 'RUNNING'", [run.id]).fetchall() != [(1,)]:
    time.sleep(0.01)
print(json.dumps(run.id))
"""

REOPEN = """
with warnings.catch_warnings(record=True) as said:
    session = fl.Session("k.duckdb", workers=1)
open("go", "w").close()
deadline = time.monotonic() + 60
while session.broker.get_run(RUN_ID).state is fl.Status.RUNNING and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"state": session.broker.get_run(RUN_ID).state.value, "said": [str(w.message) for w in said],
                  "result": session.broker.get_run(RUN_ID).steps["load"].result}))
session.close()
"""


def test_a_run_of_a_workflow_edited_and_edited_back_resumes_after_the_kernel_died(tmp_path: Path) -> None:
    first = Kernel(tmp_path)
    try:
        first.run(SETUP)
        run_id = first.last_json(EDIT_AND_BACK)
    finally:
        first.kill()
    second = Kernel(tmp_path)
    try:
        second.run(SETUP)
        result = second.last_json(f"RUN_ID = {run_id!r}\n" + REOPEN, timeout=120)
    finally:
        second.kill()
    assert result == {"state": "SUCCEEDED", "said": [], "result": 1}


TOGGLE_ONE = """
    def double(x):
        return x * 2
    wf = fl.Workflow(outputs=[fl.FunctionStep(double)], workflow_id="audit7-toggle")
"""
TOGGLE_TWO = TOGGLE_ONE + """
    def plus(v=fl.Depends(double)):
        return v + 1
    wf = fl.Workflow(outputs=[fl.FunctionStep(plus)], workflow_id="audit7-toggle")
"""


def test_a_worker_replaced_after_a_workflow_was_edited_back_is_served_without_a_false_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Before: "workflow 'audit7-toggle' version '1' is no longer in the history: pickled again" — a warning
    # for what the history does by design (it keeps the latest version of a workflow id).
    import os
    import signal

    import fuseline_nb as fl
    from tests.cells import notebook

    with notebook("import fuseline_nb as fl\n") as cells, fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        for cell, want in ((TOGGLE_ONE, 20), (TOGGLE_TWO, 21), (TOGGLE_ONE, 20), (TOGGLE_TWO, 21)):
            cells.run(cell)
            assert session.submit(cells["wf"], {"x": 10}).wait(timeout=60) == want
            (pid,) = session.pool.pids()
            os.kill(pid, signal.SIGKILL)
            assert session.submit(cells["wf"], {"x": 10}).wait(timeout=60) == want
    assert [r.getMessage() for r in caplog.records if "no longer in the history" in r.getMessage()] == []
