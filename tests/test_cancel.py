"""Cancelling a run: the broker's transition, then the real parts (worker processes, HTTP, CLI)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from fuseline_nb import Depends, FunctionStep, RunNotFoundError, Session, Status, Workflow
from fuseline_nb.broker import StepReport
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.errors import StaleReportError, UnknownRunError

C, S = Status.CANCELLED, Status.SUCCEEDED


def _chain() -> Workflow:
    a, b, c = (FunctionStep(lambda: 1, name=n) for n in ("a", "b", "c"))
    a >> b >> c
    return Workflow(outputs=[c, FunctionStep(lambda: 2, name="solo")], workflow_id="cancel-chain")


def test_cancel_ends_the_run_and_every_unfinished_step(make_broker):
    broker = make_broker()
    wf = _chain()
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    held = broker.get_step(wid)  # one root is running, the other queued; b and c are pending
    assert held is not None and held.step_name in ("a", "solo")
    name = held.step_name
    assert broker.cancel_run(run_id, "not needed") is True
    info = broker.get_run(run_id)
    assert info.state is C
    assert {n: s.state for n, s in info.steps.items()} == {"a": C, "b": C, "c": C, "solo": C}
    finished = {e.step: e for e in broker.events(run_id) if e.kind == "step_finished"}
    assert finished[name].detail == {"cause": "run cancelled", "reason": "not needed"}
    assert finished[name].worker == wid and finished[name].attempt == 1
    assert finished["b"].detail == {"cause": "run cancelled", "reason": "not needed"}
    assert [e.state for e in broker.events(run_id) if e.kind == "run_finished"] == [C]
    # the worker learns it at its next keep-alive; its late report is refused
    assert broker.keep_alive(wid) == [(run_id, name)]
    assert broker.keep_alive(wid) == []
    with pytest.raises(StaleReportError, match=f"run {run_id!r} has ended"):
        broker.report_step(wid, StepReport(held.workflow_id, run_id, name, S, 1, attempt=held.attempt))
    assert broker.get_step(wid) is None  # nothing else of the run starts


def test_cancelling_an_ended_run_changes_nothing_and_says_so(make_broker, caplog):
    broker = make_broker()
    wf = _chain()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    from fuseline_nb.worker import ProcessEngine

    ProcessEngine(client, [wf]).work()
    with caplog.at_level(logging.WARNING, logger="fuseline_nb.broker.core"):
        assert client.cancel_run(run_id) is False
    assert f"run {run_id} already ended (SUCCEEDED): nothing to cancel" in caplog.text
    assert broker.get_run(run_id).state is S
    assert broker.cancel_run(run_id) is False  # and again


def test_unknown_run_ids_raise_run_not_found(make_broker):
    broker = make_broker()
    with pytest.raises(RunNotFoundError, match="unknown run: 'nope'") as err:
        broker.cancel_run("nope")
    assert isinstance(err.value, KeyError) and isinstance(err.value, UnknownRunError)
    assert err.value.run_id == "nope"
    with pytest.raises(KeyError, match="unknown run: 'nope'"):
        broker.get_run("nope")


def test_a_cancelled_run_keeps_a_failure_that_already_happened(make_broker):
    broker = make_broker()
    bad, slow = FunctionStep(lambda: 1 / 0, name="bad"), FunctionStep(lambda: 1, name="slow")
    after = FunctionStep(lambda: 1, name="after")
    bad >> after
    wf = Workflow(outputs=[after, slow], workflow_id="cancel-after-failure")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    got = {x.step_name: x for x in (broker.get_step(wid), broker.get_step(wid)) if x is not None}
    a = got["bad"]  # "slow" stays running
    broker.report_step(wid, StepReport(a.workflow_id, run_id, "bad", Status.FAILED, attempt=a.attempt,
                                       error="ZeroDivisionError: division by zero"))
    assert broker.cancel_run(run_id) is True
    info = broker.get_run(run_id)
    assert info.state is Status.FAILED  # a failure is not hidden by the cancel
    causes = {e.step: (e.detail or {}).get("cause") for e in broker.events(run_id) if e.kind == "step_finished"}
    assert causes == {"bad": None, "after": "step 'bad' failed", "slow": "run cancelled"}


def test_run_cancel_in_a_session_without_workers():
    with Session(workers=0) as session:
        run = session.submit(_chain())
        assert run.cancel() is True
        assert run.wait(timeout=5) == [None, None]
        assert run.state is C
        assert run.cancel() is False
        with pytest.raises(RunNotFoundError):
            session.cancel("no-such-run")


# -- the real parts ------------------------------------------------------------------------


def _pid_gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _sleepy(marker: str) -> Workflow:
    def long_step(marker: str) -> int:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(30)
        return 1

    first = FunctionStep(long_step, name="long_step")

    def after(v: int = Depends(first)) -> int:
        return v

    return Workflow(outputs=[FunctionStep(after, name="after")], workflow_id=f"cancel-sleepy-{Path(marker).stem}")


@pytest.mark.slow
def test_cancel_kills_the_running_step_s_process_and_the_session_goes_on(tmp_path):
    marker = tmp_path / "pid.txt"
    with Session(tmp_path / "history.duckdb", workers=2) as session:
        started: list[str] = []
        session.subscribe(lambda e: started.append(e.step) if e.kind == "step_started" else None)
        run = session.submit(_sleepy(str(marker)), {"marker": str(marker)})
        _wait_for(marker.exists, 30, "the long step to start")
        pid = int(marker.read_text())
        before = set(session.pool.pids())
        assert pid in before
        t0 = time.monotonic()
        assert run.cancel("changed my mind") is True
        _wait_for(lambda: _pid_gone(pid), 2.0, f"worker process {pid} to be killed")
        assert time.monotonic() - t0 < 2.0
        assert run.wait(timeout=5) is None
        assert run.state is C
        _wait_for(lambda: len(session.pool.pids()) == 2 and pid not in session.pool.pids(), 20,
                  "a replacement worker")
        assert started == ["long_step"]  # nothing else started
        rows = session.sql("SELECT step, state FROM steps WHERE run_id = ? ORDER BY step", [run.id]).fetchall()
        assert rows == [("after", "CANCELLED"), ("long_step", "CANCELLED")]
        assert session.sql("SELECT state FROM runs WHERE run_id = ?", [run.id]).fetchall() == [("CANCELLED",)]
        details = session.sql(
            "SELECT step, detail_json FROM events WHERE run_id = ? AND kind = 'step_finished' ORDER BY step",
            [run.id]).fetchall()
        assert [(s, '"run cancelled"' in d and '"changed my mind"' in d) for s, d in details] == [
            ("after", True), ("long_step", True)]
        # the session keeps working
        nxt = session.submit(Workflow(outputs=[FunctionStep(lambda: 41 + 1, name="answer")],
                                      workflow_id="cancel-next"))
        assert nxt.wait(timeout=60) == 42
        assert nxt.state is S
