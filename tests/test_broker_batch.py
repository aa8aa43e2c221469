"""Batch calls (``get_steps``, ``report_steps``) do exactly what the same calls one by one do.

A worker with prefetch takes several assignments and sends several reports at
once. The same workflow — a branch with an OR merge, a fan-out into an AND
join, a retried step and a failing one (whose join is cancelled) — is driven
through a real :class:`MemoryBroker` one call at a time, with the broker's
batch calls, with the default batch calls of the ABC (what HTTP and the
process channel inherit), through :class:`LocalBrokerClient` and inside
``deferred_events()`` blocks; the steps' records, the events and what a
listener received must be the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fuseline_nb import FunctionStep, RetryPolicy, Workflow
from fuseline_nb.broker import MemoryBroker, StepReport
from fuseline_nb.broker.base import Broker, StepAssignment
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.errors import StaleReportError, StorageClosedError, UnknownRunError, UnknownWorkerError
from fuseline_nb.workflow.status import Status


def _workflow() -> Workflow:
    root = FunctionStep(lambda: 0, name="root")
    gate = FunctionStep(lambda: "yes", name="gate")
    x = FunctionStep(lambda: 1, name="x")
    y = FunctionStep(lambda: 2, name="y")
    merge = FunctionStep(lambda: 3, name="merge")
    root >> gate
    (gate - "yes") >> x
    (gate - "no") >> y
    (x | y) >> merge
    fan = [FunctionStep(lambda: 4, name=f"f{i}") for i in range(5)]
    flaky = FunctionStep(lambda: 5, name="flaky", policies=[RetryPolicy(max_retries=2)])
    bad = FunctionStep(lambda: 6, name="bad")
    join_ok = FunctionStep(lambda: 7, name="join_ok")
    join_bad = FunctionStep(lambda: 8, name="join_bad")
    for f in fan:
        root >> f
        f >> join_ok
    root >> flaky >> join_ok
    root >> bad >> join_bad
    return Workflow(outputs=[merge, join_ok, join_bad], workflow_id="batch")


def _outcome(a: StepAssignment) -> StepReport:
    """What a worker would report: gate says yes, flaky fails its first attempt, bad always fails."""
    step = a.step_name
    if step == "bad" or (step == "flaky" and a.attempt == 1):
        return StepReport(a.workflow_id, a.instance_id, step, Status.FAILED, attempt=a.attempt,
                          error=f"RuntimeError: {step} failed", started_at=1.0, finished_at=1.0)
    result = "yes" if step == "gate" else len(step)
    return StepReport(a.workflow_id, a.instance_id, step, Status.SUCCEEDED, result, attempt=a.attempt,
                      started_at=1.0, finished_at=1.0)


Get = Callable[[Any, str, int], list[StepAssignment]]
Put = Callable[[Any, str, list[StepReport]], list[Exception | None]]


def _one_by_one_get(b: Any, wid: str, n: int) -> list[StepAssignment]:
    out = []
    while len(out) < n and (a := b.get_step(wid)) is not None:
        out.append(a)
    return out


def _one_by_one_put(b: Any, wid: str, reports: list[StepReport]) -> list[Exception | None]:
    out: list[Exception | None] = []
    for r in reports:
        try:
            b.report_step(wid, r)
            out.append(None)
        except Exception as exc:
            out.append(exc)
    return out


DRIVERS: dict[str, tuple[Get, Put, Callable[[MemoryBroker], Any]]] = {
    "one by one": (_one_by_one_get, _one_by_one_put, lambda b: b),
    "broker batch": (lambda b, w, n: b.get_steps(w, n), lambda b, w, r: b.report_steps(w, r), lambda b: b),
    "ABC default batch": (lambda b, w, n: Broker.get_steps(b, w, n), lambda b, w, r: Broker.report_steps(b, w, r),
                          lambda b: b),
    "LocalBrokerClient": (lambda c, w, n: c.get_steps(w, n), lambda c, w, r: c.report_steps(w, r),
                          LocalBrokerClient),
    "deferred batch": (lambda b, w, n: _deferred(b, b.get_steps, w, n),
                       lambda b, w, r: _deferred(b, b.report_steps, w, r), lambda b: b),
    "deferred LocalBrokerClient": (lambda c, w, n: _deferred(c, c.get_steps, w, n),
                                   lambda c, w, r: _deferred(c, c.report_steps, w, r), LocalBrokerClient),
}


def _deferred(side: Any, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` inside ``deferred_events()``: its events reach listeners at the block's end."""
    with side.deferred_events():
        return call(*args)


def _drive(driver: str, prefetch: int) -> tuple[Any, ...]:
    get, put, wrap = DRIVERS[driver]
    broker = MemoryBroker(clock=lambda: 100.0)
    delivered: list[Any] = []
    broker.subscribe(delivered.append)
    side = wrap(broker)
    schema = _workflow().to_schema()
    w1, w2 = side.register_worker([schema], "w1"), side.register_worker([schema], "w2")
    run_id = side.dispatch_workflow(schema)
    refused: list[str] = []
    handed: list[tuple[str, str, int]] = []
    for _ in range(50):
        got = {w: get(side, w, prefetch) for w in (w1, w2)}
        if not any(got.values()):
            break
        for w, batch in got.items():
            handed.extend(("w1" if w == w1 else "w2", a.step_name, a.attempt) for a in batch)
            reports = [_outcome(a) for a in batch]
            reports += reports[:1]  # the first report again: refused, in its place, the others recorded
            out = put(side, w, reports)
            assert out[:-1] == [None] * (len(reports) - 1)
            if reports:
                assert isinstance(out[-1], StaleReportError)
                refused.append(str(out[-1]).replace(run_id, "<run>").replace(w1, "<w1>").replace(w2, "<w2>"))
    info = broker.get_run(run_id)
    steps = {n: (s.state, s.attempts, s.result, s.error, s.worker) for n, s in info.steps.items()}
    events = [(e.kind, e.step, e.state, e.worker, e.attempt, e.seq, e.detail) for e in broker.events(run_id)]
    assert delivered == broker.events(run_id)  # every event reached the listener once, in order
    return info.state, steps, events, handed, refused


@pytest.mark.parametrize("prefetch", [1, 3])
@pytest.mark.parametrize("driver", ["broker batch", "ABC default batch", "LocalBrokerClient", "deferred batch",
                                    "deferred LocalBrokerClient"])
def test_batch_calls_leave_the_same_history_as_one_by_one(driver: str, prefetch: int) -> None:
    expected = _drive("one by one", prefetch)
    state, steps, _events, _handed, refused = expected
    # the workflow did what it says: OR merge on the taken branch, retry, failure cancels its join
    assert state is Status.FAILED
    assert steps["merge"][0] is Status.SUCCEEDED and steps["y"][0] is Status.SKIPPED
    assert steps["flaky"][:2] == (Status.SUCCEEDED, 2) and steps["join_ok"][0] is Status.SUCCEEDED
    assert steps["bad"][0] is Status.FAILED and steps["join_bad"][0] is Status.CANCELLED
    assert len(refused) >= 4 and all("refused" in r for r in refused)
    assert _drive(driver, prefetch) == expected


def test_get_steps_hands_out_at_most_n_in_queue_order_and_holds_each() -> None:
    broker = MemoryBroker()
    wf = Workflow(outputs=[FunctionStep(lambda i=i: i, name=f"s{i}") for i in range(4)])
    wid = broker.register_worker([wf.to_schema()])
    broker.dispatch_workflow(wf.to_schema())
    assert broker.get_steps(wid, 0) == []
    first = broker.get_steps(wid, 3)
    assert [a.step_name for a in first] == ["s0", "s1", "s2"]
    assert [(a.step, a.attempt) for a in broker.held_by(wid)] == [("s0", 1), ("s1", 1), ("s2", 1)]
    assert [a.step_name for a in broker.get_steps(wid, 3)] == ["s3"]
    assert broker.get_steps(wid, 3) == []


def test_batch_calls_name_an_unknown_worker_and_a_closed_broker() -> None:
    broker = MemoryBroker()
    wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")])
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    with pytest.raises(UnknownWorkerError, match="unknown worker: 'nobody'"):
        broker.get_steps("nobody", 2)
    (a,) = broker.get_steps(wid, 2)
    ok = StepReport(a.workflow_id, run_id, "one", Status.SUCCEEDED, 1, attempt=1)
    ghost = StepReport(a.workflow_id, "no-such-run", "one", Status.SUCCEEDED, 1, attempt=1)
    (unknown,) = broker.report_steps("nobody", [ok])
    assert isinstance(unknown, UnknownWorkerError)
    out = broker.report_steps(wid, [ghost, ok])
    assert isinstance(out[0], UnknownRunError) and "no-such-run" in str(out[0]) and out[1] is None
    assert broker.get_run(run_id).state is Status.SUCCEEDED
    broker.close()
    with pytest.raises(StorageClosedError, match="MemoryBroker is closed"):
        broker.get_steps(wid, 1)
    (closed,) = broker.report_steps(wid, [ok])
    assert isinstance(closed, StorageClosedError)
