"""Audit (session 6): the edit loop and a killed kernel in real Jupyter kernels (jupyter_client), with a
DuckDB history file and worker processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.slow


class Kernel:
    """A real python3 kernel; ``run(code)`` executes a cell and returns its stdout (raises on an error)."""

    def __init__(self, cwd: Path) -> None:
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def run(self, code: str, timeout: float = 120) -> str:
        out: list[str] = []
        errors: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        if errors:
            raise AssertionError(errors[0])
        return "".join(out)

    def last_json(self, code: str, timeout: float = 120) -> Any:
        return json.loads(self.run(code, timeout).strip().splitlines()[-1])

    def kill(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)  # SIGKILL: no atexit, no close, no flush


SETUP = """
import json, os, time, warnings
import fuseline_nb as fl
warnings.simplefilter("always")
"""

MODEL = """
class Model:
    def predict(self, x):
        return x * {k}
model = Model()
def predict(x):
    return model.predict(x)
def report(y=fl.Depends(predict)):
    return f"y={{y}}"
wf = fl.Workflow(outputs=[fl.FunctionStep(report)], workflow_id="audit6-kernel")
"""

SESSION = 'session = fl.Session("h.duckdb", workers=1, cache=True)'

RUN = """
run = session.submit(wf, {"x": 7})
out = run.wait(timeout=60)
print(json.dumps([out, sorted(n for n, s in run.info().steps.items() if not s.cached)]))
"""


def test_editing_a_cell_and_running_the_session_cell_again_in_a_real_kernel(tmp_path: Path) -> None:
    k = Kernel(tmp_path)
    try:
        k.run(SETUP)
        k.run(MODEL.format(k=2))
        k.run(SESSION)
        assert k.last_json(RUN) == ["y=14", ["predict", "report"]]
        assert k.last_json(RUN) == ["y=14", []]  # nothing changed: all from the cache
        k.run(MODEL.format(k=3))  # the class of the global object edited, the cell run again
        assert k.last_json(RUN) == ["y=21", ["predict", "report"]]
        # the cell creating the session run again: the earlier one is closed with a warning
        replaced = k.run("""
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    old = session
    """ + SESSION + """
print(json.dumps([str(w.message) for w in caught]))
""")
        assert "closed the earlier Session" in replaced
        assert k.last_json(RUN) == ["y=21", []]  # the history file's cache serves the new session
    finally:
        k.kill()


LONG = """
def tick(i: int = 0) -> int:
    time.sleep(0.02)
    return 1
steps = [fl.FunctionStep(tick, name=f"t{i}") for i in range(400)]
end = fl.FunctionStep(lambda: "end", name="end")
for s in steps:
    s >> end
long = fl.Workflow(outputs=[end], workflow_id="audit6-killed-kernel")
session = fl.Session("k.duckdb", workers=2)
seen = []
session.subscribe(lambda e: seen.append(e.kind))
run = session.submit(long)
while seen.count("step_finished") < 100:
    time.sleep(0.01)
print(json.dumps(run.id))
"""

REOPEN = """
session = fl.Session("k.duckdb", workers=2)
deadline = time.monotonic() + 120
while session.broker.get_run(RUN_ID).state is fl.Status.RUNNING and time.monotonic() < deadline:
    time.sleep(0.05)
info = session.broker.get_run(RUN_ID)
starts = session.sql("select step, attempt from events where run_id = ? and kind = 'step_started'", [RUN_ID]).fetchall()
ends = session.sql("select step, attempt from events where run_id = ? and kind = 'step_finished'", [RUN_ID]).fetchall()
states = dict(session.sql("select state, count(*) from steps where run_id = ? group by state", [RUN_ID]).fetchall())
print(json.dumps({"state": info.state.value, "states": states, "unended": sorted(set(starts) - set(ends)),
                  "ended_twice": len(ends) - len(set(ends))}))
session.close()
"""


def test_a_killed_kernel_s_run_resumes_in_a_new_kernel_with_every_attempt_ended(tmp_path: Path) -> None:
    first = Kernel(tmp_path)
    try:
        first.run(SETUP)
        run_id = first.last_json(LONG)
    finally:
        first.kill()
    second = Kernel(tmp_path)
    try:
        second.run(SETUP)
        result = second.last_json(f"RUN_ID = {run_id!r}\n" + REOPEN, timeout=180)
    finally:
        second.kill()
    assert result["state"] == "SUCCEEDED", result
    assert result["states"] == {"SUCCEEDED": 401}, result
    assert result["unended"] == [] and result["ended_twice"] == 0, result  # DESIGN §3: one end per attempt
