"""The DuckDB history across processes: read after close, lock, resume, crash.

Each test runs a real child Python process on a real file. The workflow is
defined in a small module written to tmp_path, imported by both processes,
and every step appends ``name pid`` to a log, so the tests can tell which
process ran which step, and how often.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from fuseline_nb import Status
from fuseline_nb.broker import DuckDBBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.errors import StorageLockedError
from fuseline_nb.worker import ProcessEngine

pytestmark = pytest.mark.slow

WORKFLOW_MODULE = '''
import os
from fuseline_nb import Depends, FunctionStep, Workflow

def _mark(name):
    with open(os.environ["FL_STEP_LOG"], "a") as f:
        f.write(f"{name} {os.getpid()}\\n")

def s0(x):
    _mark("s0"); return x + 1
S0 = FunctionStep(s0)
def s1(v=Depends(S0)):
    _mark("s1"); return v * 2
S1 = FunctionStep(s1)
def s2(v=Depends(S1)):
    _mark("s2"); return v + 3
S2 = FunctionStep(s2)
def s3(v=Depends(S2)):
    _mark("s3"); return v * 10
S3 = FunctionStep(s3)
def s4(v=Depends(S3)):
    _mark("s4"); return {"final": v}
WF = Workflow(outputs=[FunctionStep(s4)], workflow_id="restart-chain")
'''

CHILD = '''
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from wfdefs import WF
from fuseline_nb.broker import DuckDBBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker import ProcessEngine

path, mode, steps = sys.argv[2], sys.argv[3], int(sys.argv[4])
broker = DuckDBBroker(path, flush_interval=3600)  # only explicit flushes, run end and close
client = LocalBrokerClient(broker)
run_id = client.dispatch_workflow(WF.to_schema(), {"x": 4})
print(run_id, flush=True)
engine = ProcessEngine(client, [WF])
engine.work(max_steps=steps)
if mode == "close":
    broker.close()
elif mode == "kill":  # flush what ran so far, run one more step, die without a word
    broker.flush()
    engine.work(max_steps=1)
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "hold":  # keep the file open until stdin closes
    sys.stdin.read()
# mode "exit": leave without closing; the interpreter's exit writes the history
'''

EXPECTED_FINAL = {"final": ((4 + 1) * 2 + 3) * 10}


@pytest.fixture
def env(tmp_path, monkeypatch):
    (tmp_path / "wfdefs.py").write_text(WORKFLOW_MODULE)
    (tmp_path / "child.py").write_text(CHILD)
    monkeypatch.setenv("FL_STEP_LOG", str(tmp_path / "steps.log"))
    return tmp_path


def _wf(env: Path):
    spec = importlib.util.spec_from_file_location("wfdefs_parent", env / "wfdefs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WF


def _child(env: Path, mode: str, steps: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(env / "child.py"), str(env), str(env / "h.duckdb"), mode,
                           str(steps)], capture_output=True, text=True, timeout=60)


def _log(env: Path) -> list[tuple[str, int]]:
    lines = (env / "steps.log").read_text().split()
    return [(lines[i], int(lines[i + 1])) for i in range(0, len(lines), 2)]


def test_history_is_readable_by_another_process_after_close(env):
    done = _child(env, "close", 10)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    con = duckdb.connect(str(env / "h.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT state FROM runs WHERE run_id = ?", params=[run_id]).fetchall() == [("SUCCEEDED",)]
        steps = con.sql("SELECT step, state, attempts, result_preview FROM steps ORDER BY step").fetchall()
        assert steps[0] == ("s0", "SUCCEEDED", 1, "5")
        assert steps[-1] == ("s4", "SUCCEEDED", 1, repr(EXPECTED_FINAL))
        kinds = con.sql("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind").fetchall()
        assert dict(kinds) == {"run_dispatched": 1, "run_finished": 1, "step_finished": 5,
                               "step_queued": 5, "step_started": 5}
        received = con.sql("SELECT inputs_json FROM runs").fetchall()[0][0]
        assert json.loads(received) == {"x": 4}
    finally:
        con.close()


def test_dispatch_in_one_process_and_finish_in_another(env):
    done = _child(env, "close", 2)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    wf = _wf(env)
    with DuckDBBroker(env / "h.duckdb") as broker:
        before = broker.get_run(run_id)
        assert before.state is Status.RUNNING
        assert [before.steps[s].state for s in ("s0", "s1", "s2")] == [
            Status.SUCCEEDED, Status.SUCCEEDED, Status.PENDING]
        engine = ProcessEngine(LocalBrokerClient(broker), [wf])
        engine.work()
        after = broker.get_run(run_id)
    assert engine.steps_run == 3
    assert after.state is Status.SUCCEEDED
    assert after.steps["s4"].result == EXPECTED_FINAL
    child_pid = {pid for name, pid in _log(env) if name == "s0"}
    assert [n for n, pid in _log(env)] == ["s0", "s1", "s2", "s3", "s4"]  # each step ran once
    assert {pid for n, pid in _log(env) if n in ("s2", "s3", "s4")} == {os.getpid()}
    assert child_pid != {os.getpid()}


def test_leaving_the_interpreter_without_close_keeps_everything(env):
    done = _child(env, "exit", 2)  # nothing wakes the flusher (no run ended): only the exit writes
    assert done.returncode == 0, done.stderr
    con = duckdb.connect(str(env / "h.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT state FROM runs").fetchall() == [("RUNNING",)]
        steps = con.sql("SELECT step, state FROM steps WHERE state <> 'PENDING' ORDER BY step").fetchall()
        assert steps == [("s0", "SUCCEEDED"), ("s1", "SUCCEEDED")]
    finally:
        con.close()


def test_a_crash_loses_nothing_that_was_flushed(env):
    done = _child(env, "kill", 2)  # s0, s1 flushed; s2 ran but was never flushed
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_id = done.stdout.strip()
    wf = _wf(env)
    with DuckDBBroker(env / "h.duckdb") as broker:
        assert broker.get_run(run_id).steps["s1"].result == 10
        ProcessEngine(LocalBrokerClient(broker), [wf]).work()
        after = broker.get_run(run_id)
        events = broker.sql("SELECT seq FROM events WHERE run_id = ? ORDER BY seq", [run_id]).fetchall()
    assert after.state is Status.SUCCEEDED and after.steps["s4"].result == EXPECTED_FINAL
    runs = [n for n, _ in _log(env)]
    assert runs == ["s0", "s1", "s2", "s2", "s3", "s4"]  # only the unflushed step ran again
    seqs = [s for (s,) in events]
    assert seqs == sorted(set(seqs))  # the resumed run's events continue the flushed ones


def test_a_file_held_by_another_process_names_it(env):
    holder = subprocess.Popen([sys.executable, str(env / "child.py"), str(env), str(env / "h.duckdb"),
                               "hold", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline()  # the child has the file open and has dispatched
        with pytest.raises(StorageLockedError, match=(
                rf"h\.duckdb' is held by .*\(PID {holder.pid}\): close the session or broker "
                r"that has it open there \(or stop that process\), or use another file")):
            DuckDBBroker(env / "h.duckdb")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    DuckDBBroker(env / "h.duckdb").close()  # free again once the holder exits
