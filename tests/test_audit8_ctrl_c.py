"""Audit (session 8): Ctrl-C (Jupyter's interrupt button) while the notebook's thread changes a run.

``run.cancel()`` of a 30,000-step run takes ~0.2 s (seconds when the DuckDB history makes the broker
wait for its flusher); a Ctrl-C landing in it raised ``KeyboardInterrupt`` half-way through the
transition: the live run said CANCELLED with thousands of steps still PENDING, the history kept them
PENDING (and RUNNING) under a CANCELLED run, and no step's end was recorded — without a word beyond the
``KeyboardInterrupt`` the user expected. Now the broker holds the Ctrl-C until the transition is whole,
then raises it.

The SIGINT is a real signal to this process, sent from inside the storage write the transition makes
(where a real Ctrl-C lands with a fair chance on a big run).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

import fuseline_nb as fl
from fuseline_nb.broker import DuckDBBroker


def fan_out(n: int) -> fl.Workflow:
    root = fl.FunctionStep(lambda: 1, name="root")
    total = fl.FunctionStep(lambda **kw: 1, name="total")
    for i in range(n):
        root >> fl.FunctionStep(lambda: 2, name=f"leaf{i}") >> total
    return fl.Workflow(outputs=[total], workflow_id="audit8-ctrl-c")


def _ctrl_c_in(storage: Any, method: str) -> None:
    """The next call of ``storage.<method>`` gets a Ctrl-C (SIGINT to this process) while it writes."""
    real = getattr(storage, method)

    def interrupted(*args: Any) -> Any:
        setattr(storage, method, real)
        os.kill(os.getpid(), signal.SIGINT)  # handled in this (the main) thread at its next instruction
        return real(*args)

    setattr(storage, method, interrupted)


def test_ctrl_c_during_a_cancel_leaves_no_step_of_the_cancelled_run_pending(tmp_path: Path) -> None:
    wf = fan_out(2000)
    broker = DuckDBBroker(tmp_path / "h.duckdb")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    assert broker.get_step(wid) is not None  # the root runs
    _ctrl_c_in(broker.storage, "save_steps")
    with pytest.raises(KeyboardInterrupt):
        broker.cancel_run(run_id)
    info = broker.get_run(run_id)
    assert info.state is fl.Status.CANCELLED
    assert {s.state for s in info.steps.values()} == {fl.Status.CANCELLED}  # before: thousands PENDING
    assert broker.sql("SELECT state, count(*) FROM steps WHERE run_id = ? GROUP BY state",
                      [run_id]).fetchall() == [("CANCELLED", 2002)]
    kinds = [e.kind for e in broker.events(run_id)]
    assert kinds.count("step_finished") == 2002 and kinds[-1] == "run_finished"
    broker.close()


def test_ctrl_c_during_a_dispatch_is_raised_once_the_run_is_dispatched_whole(tmp_path: Path) -> None:
    wf = fan_out(10)
    broker = DuckDBBroker(tmp_path / "h.duckdb")
    wid = broker.register_worker([wf.to_schema()])
    broker.dispatch_workflow(wf.to_schema())  # (known: the next one's writes are the run's own)
    _ctrl_c_in(broker.storage, "enqueue_steps")
    with pytest.raises(KeyboardInterrupt):
        broker.dispatch_workflow(wf.to_schema())
    first, run_id = [r.run_id for r in broker.list_runs()]
    assert [e.kind for e in broker.events(run_id)] == ["run_dispatched", "step_queued"]  # before: none
    assert broker.get_run(run_id).steps["root"].state is fl.Status.PENDING
    taken = [broker.get_step(wid), broker.get_step(wid)]
    assert sorted(a.instance_id for a in taken if a is not None) == sorted([first, run_id])
    broker.close()


@pytest.mark.slow
def test_ctrl_c_during_a_submit_cancels_the_run_it_dispatched(tmp_path: Path) -> None:
    wf = fan_out(10)
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        assert session.submit(wf).wait(timeout=60) == 1
        _ctrl_c_in(session.broker.storage, "enqueue_steps")
        with pytest.raises(KeyboardInterrupt):
            session.submit(wf)
        runs = session.sql("SELECT state FROM runs ORDER BY created_at").fetchall()
        assert runs == [("SUCCEEDED",), ("CANCELLED",)]  # before: RUNNING on, with no handle to stop it
        assert session.broker.unfinished_runs() == []
        assert session.submit(wf).wait(timeout=60) == 1


def test_ctrl_c_during_a_map_cancels_the_runs_it_started(tmp_path: Path) -> None:
    wf = fan_out(3)
    with fl.Session(None, workers=0) as session:
        storage: Any = session.broker.storage  # type: ignore[attr-defined]
        real, calls = storage.enqueue_steps, [0]

        def third_run_interrupted(*args: Any) -> Any:  # Ctrl-C while the 3rd run is dispatched
            calls[0] += 1
            if calls[0] == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return real(*args)

        storage.enqueue_steps = third_run_interrupted
        with pytest.raises(KeyboardInterrupt) as caught:
            session.map(wf, [{}] * 10)
        assert caught.value.__notes__ == [
            "session.map was interrupted after 2 run(s) had started: they were cancelled"]
        runs = session.broker.list_runs()
        assert [r.state for r in runs] == [fl.Status.CANCELLED] * 3  # before: 2 RUNNING on, with no handle
        assert session.broker.unfinished_runs() == []
