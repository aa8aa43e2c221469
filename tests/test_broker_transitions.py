"""The broker's live-state transitions as pure functions: state in, state + writes + events out.

No broker, no storage: each test builds a :class:`LiveState`, calls one
transition and asserts the whole resulting record, the storage calls it asks
for and the events it publishes. The last test checks the real parts: a
worker pool stops the process the broker names, and nothing else.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from fuseline_nb import FunctionStep, RetryPolicy, StepTimeoutPolicy, Workflow
from fuseline_nb.broker.base import StepReport, WorkerInfo
from fuseline_nb.broker.leases import assign, cancel, expire, keep_alive, overdue, report, unregister
from fuseline_nb.broker.resume import resume
from fuseline_nb.broker.state import Compiled, LiveState, Worker
from fuseline_nb.broker.transitions import Effects, dispatch
from fuseline_nb.errors import StaleReportError
from fuseline_nb.workflow.runinfo import RunInfo, StepInfo
from fuseline_nb.workflow.status import Status
from fuseline_nb.workflow.value import Value

S, F, P, R, C = Status.SUCCEEDED, Status.FAILED, Status.PENDING, Status.RUNNING, Status.CANCELLED


def _chain(*policies: Any) -> Compiled:
    a = FunctionStep(lambda: 1, name="a", policies=list(policies))
    b = FunctionStep(lambda: 2, name="b")
    a >> b
    return Compiled(Workflow(outputs=[b], workflow_id="chain").to_schema())


def _state(compiled: Compiled, *workers: str) -> LiveState:
    st = LiveState(lease_seconds=10.0)
    st.compiled[compiled.key] = compiled
    for wid in workers:
        st.workers[wid] = Worker(WorkerInfo(wid, 0.0, 0.0, name=wid.upper()), {compiled.key})
    return st


def _writes(fx: Effects) -> list[tuple[Any, ...]]:
    """The writes as (operation, step) — enough to read the order at a glance."""
    out = []
    for op, args in fx.writes:
        out.append((op, args[1]) if op in ("enqueue", "save_step", "set_result") else (op,))
    return out


def _events(fx: Effects) -> list[tuple[Any, ...]]:
    return [(e.kind, e.step, e.state, e.worker, e.attempt, e.seq) for e in fx.events]


def _report(a: Any, state: Status = S, result: Any = None, **kw: Any) -> StepReport:
    return StepReport(a.workflow_id, a.instance_id, a.step_name, state, result, attempt=a.attempt, **kw)


def test_dispatch_creates_the_run_and_queues_its_roots() -> None:
    c = _chain()
    st = _state(c)
    run, fx = dispatch(st, c, "r1", {"x": Value.of(1)}, now=5.0)
    assert st.runs == {"r1": run} and st.active == {c.key: {"r1": None}}
    assert (run.infos["a"].queued_at, "b" in run.infos, run.info("b").queued_at, run.seq) == (5.0, False, None, 2)
    assert _writes(fx) == [("create_run",), ("enqueue", "a"), ("save_step", "a")]
    assert fx.writes[0][1] == ("r1", "chain", "1", {"x": Value.of(1)}, ["a", "b"], 5.0)
    assert _events(fx) == [("run_dispatched", None, None, None, 0, 1), ("step_queued", "a", P, None, 0, 2)]


def test_assign_records_one_assignment_with_its_lease() -> None:
    c = _chain()
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    w = st.workers["w1"]
    a, fx = assign(st, run, "a", w, now=1.0)
    (held,) = w.held.values()
    assert (held.run_id, held.step, held.worker_id, held.attempt, held.deadline, held.due, held.cancelled) == (
        "r1", "a", "w1", 1, 11.0, None, False)
    assert (a.attempt, a.assigned_at, a.expires_at, a.timeout) == (1, 1.0, 11.0, None)
    info = run.infos["a"]
    assert (info.state, info.attempts, info.worker, info.started_at) == (R, 1, "W1", 1.0)
    assert st.next_expiry == 11.0
    assert _writes(fx) == [("save_step", "a")]
    assert _events(fx) == [("step_started", "a", R, "W1", 1, 3)]


def test_a_report_releases_the_assignment_and_queues_what_became_ready() -> None:
    c = _chain()
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    w = st.workers["w1"]
    a, _ = assign(st, run, "a", w, now=1.0)
    fx = report(st, w, run, _report(a, result=Value.of(1), started_at=1.0, finished_at=2.0), now=2.5)
    assert w.held == {}
    assert (w.listed().last_task.step_name, w.listed().last_task.success) == ("a", True)
    assert run.results == {"a": Value.of(1)} and run.infos["a"].state is S
    assert _writes(fx) == [("set_result", "a"), ("save_step", "a"), ("enqueue", "b"), ("save_step", "b")]
    assert _events(fx) == [("step_finished", "a", S, "W1", 1, 4), ("step_queued", "b", P, None, 0, 5)]
    assert fx.events[0].detail == {"action": "default", "error": None, "skip_reason": None, "result_preview": "1"}


def test_the_last_report_finishes_the_run_and_forgets_it() -> None:
    c = _chain()
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    w = st.workers["w1"]
    for step in ("a", "b"):
        a, _ = assign(st, run, step, w, now=1.0)
        fx = report(st, w, run, _report(a), now=2.0)
    assert st.runs == {} and st.active == {c.key: {}}
    assert _writes(fx)[-1] == ("finalize_run",) and fx.writes[-1][1] == ("r1", S, 2.0)
    assert [e.kind for e in fx.events] == ["step_finished", "run_finished"]


def test_a_report_from_a_worker_that_does_not_hold_the_attempt_is_refused_and_changes_nothing() -> None:
    c = _chain()
    st = _state(c, "w1", "w2")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    a, _ = assign(st, run, "a", st.workers["w1"], now=1.0)
    with pytest.raises(StaleReportError, match="no longer assigned to worker 'w2'"):
        report(st, st.workers["w2"], run, _report(a), now=2.0)
    stale = StepReport("chain", "r1", "a", S, attempt=7)
    with pytest.raises(StaleReportError, match="attempt 7"):
        report(st, st.workers["w1"], run, stale, now=2.0)
    assert list(st.workers["w1"].held) == [("r1", "a")] and run.infos["a"].state is R


def test_a_failed_attempt_is_queued_again_while_the_retry_policy_allows() -> None:
    c = _chain(RetryPolicy(max_retries=2))
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    w = st.workers["w1"]
    a, _ = assign(st, run, "a", w, now=1.0)
    fx = report(st, w, run, _report(a, F, error="ValueError: no"), now=2.0)
    assert (run.failures, run.infos["a"].state, run.infos["a"].error) == ({"a": 1}, P, "ValueError: no")
    assert _writes(fx) == [("save_step", "a"), ("enqueue", "a"), ("save_step", "a")]
    assert [(e.kind, e.state, (e.detail or {}).get("retry")) for e in fx.events] == [
        ("step_finished", F, 1), ("step_queued", P, None)]
    a2, _ = assign(st, run, "a", w, now=3.0)
    fx = report(st, w, run, _report(a2, F, error="ValueError: again"), now=4.0)
    assert run.infos["a"].state is F and run.infos["b"].state is C
    assert [e.kind for e in fx.events] == ["step_finished", "step_finished", "run_finished"]
    assert fx.writes[-1] == ("finalize_run", ("r1", F, 4.0))


def test_a_passed_lease_queues_the_step_again_then_fails_it() -> None:
    c = _chain()
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    w = st.workers["w1"]
    assign(st, run, "a", w, now=0.0)
    assert _writes(expire(st, now=9.0)) == []  # not yet
    fx = expire(st, now=10.0)
    assert w.held == {} and run.infos["a"].state is P and run.expired == {"a": 1}
    assert _writes(fx) == [("enqueue", "a"), ("save_step", "a")]
    assert [(e.kind, e.state, e.detail) for e in fx.events] == [
        ("step_finished", F, {"error": "lease expired", "retry": 1, "lost": True}),
        ("step_queued", P, {"reason": "lease expired"})]
    for n in (2, 3):
        assign(st, run, "a", w, now=10.0 * n)
        fx = expire(st, now=10.0 * n + 10)
    assert run.infos["a"].state is F and "went 3 leases of 10 s in a row" in run.infos["a"].error
    assert st.runs == {}


def test_keep_alive_extends_every_lease_and_the_next_sweep_finds_nothing_passed() -> None:
    c = _chain()
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    w = st.workers["w1"]
    assign(st, run, "a", w, now=0.0)
    assert keep_alive(st, w, now=8.0) == []
    assert w.held[("r1", "a")].deadline == 18.0
    assert st.next_expiry == 10.0  # a lower bound: the sweep at 12 finds the lease extended
    fx = expire(st, now=12.0)
    assert _writes(fx) == [] and run.infos["a"].state is R and st.next_expiry == 18.0


def test_cancel_marks_the_held_assignment_and_the_worker_learns_it_at_its_keep_alive() -> None:
    c = _chain()
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    w = st.workers["w1"]
    assign(st, run, "a", w, now=0.0)
    fx = cancel(st, run, "stop", now=3.0)
    (held,) = w.held.values()
    assert held.cancelled and st.runs == {}
    assert _writes(fx) == [("save_step", "a"), ("save_step", "b"), ("finalize_run",)]
    assert [(e.kind, e.step, e.state, e.worker) for e in fx.events] == [
        ("step_finished", "a", C, "w1"), ("step_finished", "b", C, None), ("run_finished", None, C, None)]
    assert fx.events[0].detail == {"cause": "run cancelled", "reason": "stop"}
    assert overdue([w], now=3.0) == ([], None)
    assert keep_alive(st, w, now=4.0) == [("r1", "a")]
    assert w.held == {}  # told once: released


def test_a_worker_that_goes_hands_its_steps_back() -> None:
    c = _chain()
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    assign(st, run, "a", st.workers["w1"], now=0.0)
    fx = unregister(st, "w1", now=1.0)
    assert st.workers == {} and run.infos["a"].state is P and run.infos["a"].worker is None
    assert _writes(fx) == [("enqueue", "a"), ("save_step", "a")]
    assert [e.detail["reason"] for e in fx.events if e.kind == "step_queued"] == ["worker gone"]


def test_a_step_timeout_counts_from_when_the_step_becomes_its_worker_s_first() -> None:
    a_ = FunctionStep(lambda: 1, name="a", policies=[StepTimeoutPolicy(5)])
    b_ = FunctionStep(lambda: 2, name="b", policies=[StepTimeoutPolicy(7)])
    c = Compiled(Workflow(outputs=[a_, b_], workflow_id="two-roots").to_schema())
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    w = st.workers["w1"]
    first, _ = assign(st, run, "a", w, now=1.0)
    assign(st, run, "b", w, now=1.0)  # prefetched: it waits behind "a"
    assert [(h.step, h.timeout, h.due) for h in w.held.values()] == [("a", 5.0, 6.0), ("b", 7.0, None)]
    late, wait = overdue([w], now=2.0)
    assert (late, wait) == ([], 4.0)
    assert [h.step for h in overdue([w], now=6.0)[0]] == ["a"]
    report(st, w, run, _report(first), now=3.0)
    assert [(h.step, h.due) for h in w.held.values()] == [("b", 10.0)]


def test_resume_queues_what_was_queued_or_running_and_keeps_what_finished() -> None:
    c = _chain()
    st = _state(c)
    steps = {"a": StepInfo(S, attempts=1, result=Value.of(1), action="default", finished_at=1.0),
             "b": StepInfo(R, attempts=1, worker="W9")}
    fx = resume(st, c, RunInfo("r1", "chain", R, steps, "1", {}, 0.0), last_seq=6, now=9.0)
    run = st.runs["r1"]
    assert run.results == {"a": Value.of(1)} and (run.infos["b"].state, run.infos["b"].worker) == (P, None)
    assert _writes(fx) == [("enqueue", "b"), ("save_step", "b")]
    # the attempt that ran when the broker stopped ends as a lost one (one step_finished per attempt)
    assert _events(fx) == [("step_finished", "b", F, "W9", 1, 7), ("step_queued", "b", P, None, 0, 8)]


# -- the real parts: the broker alone names the process to stop ------------------------------------


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


def _sleeper(folder: Path, name: str) -> Workflow:
    def step() -> int:
        (folder / name).write_text(str(os.getpid()))
        time.sleep(30)
        return 1

    return Workflow(outputs=[FunctionStep(step, name=name)], workflow_id=f"sleeper-{name}")


@pytest.mark.slow
def test_the_pool_stops_exactly_the_process_the_broker_says_holds_the_cancelled_step(tmp_path) -> None:
    from fuseline_nb import Session

    with Session(None, workers=2) as session:
        left = session.submit(_sleeper(tmp_path, "left"))
        right = session.submit(_sleeper(tmp_path, "right"))
        _wait_for(lambda: len(list(tmp_path.iterdir())) == 2, 30, "both sleepers to start")
        pids = {p.name: int(p.read_text()) for p in tmp_path.iterdir()}
        # the broker's record names the holder of each step; its process is the one the step runs in
        by_worker = {ep.worker_id: ep.pid for ep in session.pool._server.endpoints.values()}
        holders = {h.step: wid for wid in by_worker for h in session.broker.held_by(wid)}
        assert {step: by_worker[wid] for step, wid in holders.items()} == pids
        assert left.cancel() is True
        _wait_for(lambda: _pid_gone(pids["left"]), 5.0, "the process holding 'left' to be killed")
        assert not _pid_gone(pids["right"])  # the process the broker did not name runs on
        assert session.broker.held_by(holders["right"])[0].step == "right"
        assert right.cancel() is True
        _wait_for(lambda: _pid_gone(pids["right"]), 5.0, "the process holding 'right' to be killed")


def test_a_held_step_with_a_timeout_behind_one_without_keeps_the_deadline_watch_alive() -> None:
    # The channel server stops asking overdue() when it answers "nothing to wait for": a batch whose
    # timed step waits behind untimed ones must still name a time to look again, or its timeout is
    # never enforced (audit, session 5: a hung step 20th in a batch ran to its end unchecked).
    a_ = FunctionStep(lambda: 1, name="a")
    b_ = FunctionStep(lambda: 2, name="b", policies=[StepTimeoutPolicy(7)])
    c = Compiled(Workflow(outputs=[a_, b_], workflow_id="timed-second").to_schema())
    st = _state(c, "w1")
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    w = st.workers["w1"]
    first, _ = assign(st, run, "a", w, now=1.0)
    assign(st, run, "b", w, now=1.0)  # in the same batch, behind "a"
    late, wait = overdue([w], now=2.0)
    assert late == [] and wait is not None and 0 < wait <= 7.0
    report(st, w, run, _report(first), now=3.0)  # "b" starts: its clock runs from now
    assert overdue([w], now=4.0) == ([], 6.0)
    assert [h.step for h in overdue([w], now=10.0)[0]] == ["b"]


def test_an_edited_step_timeout_applies_to_new_runs_and_a_running_run_keeps_its_own() -> None:
    from fuseline_nb.broker.transitions import register

    def schema(seconds: float):  # the cell, its StepTimeoutPolicy edited between two submits
        return _chain(StepTimeoutPolicy(seconds)).schema

    st = _state(_chain(), "w1")
    del st.compiled[("chain", "1")]
    first_def, fx = register(st, schema(5.0))
    assert [op for op, _ in fx.ops] == ["register_workflow"]
    old_run, _ = dispatch(st, first_def, "old", {}, now=0.0)
    newer, fx = register(st, schema(1.0))  # the same structure: no SchemaMismatchError, written again
    assert [op for op, _ in fx.ops] == ["register_workflow"] and newer is not first_def
    new_run, _ = dispatch(st, newer, "new", {}, now=0.0)
    # a worker registering its older copy: nothing changes, nothing is written
    kept, fx = register(st, schema(5.0), replace=False)
    assert kept is newer and st.compiled[("chain", "1")] is newer and not fx.ops
    assert not register(st, schema(1.0))[1].ops  # an equal rebuild: nothing written
    a_old, _ = assign(st, old_run, "a", st.workers["w1"], 1.0)
    a_new, _ = assign(st, new_run, "a", st.workers["w1"], 1.0)
    assert (a_old.timeout, a_new.timeout) == (5.0, 1.0)
