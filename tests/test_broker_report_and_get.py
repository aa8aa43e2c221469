"""``report_and_get`` does exactly what ``report_steps`` then ``get_steps`` do, as one call.

A worker process sends its reports and asks for its next batch in one
request; the broker answers both under one lock with one application of
their effects. The workflow of ``test_broker_batch`` (an OR merge, a fan-out
into an AND join, a retried step, a failing one whose join is cancelled) is
driven both ways, with memory and DuckDB histories, through the broker,
through ``LocalBrokerClient``, with the ABC's default and inside
``deferred_events()``: the steps' records, the stored events, what a
listener received, what was handed out and what was refused must be the
same. Then the paths where something comes between the two calls: a lease
that passed, a storage that refuses the writes, a closed broker.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_broker_batch import _outcome, _workflow

from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.broker import DuckDBBroker, MemoryBroker, StepReport
from fuseline_nb.broker.base import Broker, StepAssignment
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.broker.core import StorageBroker
from fuseline_nb.broker.storage import MemoryRuntimeStorage
from fuseline_nb.errors import StaleReportError, StorageClosedError, UnknownWorkerError
from fuseline_nb.workflow.status import Status

Both = Callable[[Any, str, list[StepReport], int], tuple[list[Exception | None], list[StepAssignment]]]


def _two_calls(side: Any, wid: str, reports: list[StepReport], n: int) -> Any:
    return side.report_steps(wid, reports), side.get_steps(wid, n)


def _deferred(side: Any, wid: str, reports: list[StepReport], n: int) -> Any:
    with side.deferred_events():
        return side.report_and_get(wid, reports, n)


DRIVERS: dict[str, tuple[Both, Callable[[Any], Any]]] = {
    "two calls": (_two_calls, lambda b: b),
    "broker": (lambda b, w, r, n: b.report_and_get(w, r, n), lambda b: b),
    "ABC default": (lambda b, w, r, n: Broker.report_and_get(b, w, r, n), lambda b: b),
    "LocalBrokerClient": (lambda c, w, r, n: c.report_and_get(w, r, n), LocalBrokerClient),
    "deferred": (_deferred, lambda b: b),
    "deferred LocalBrokerClient": (_deferred, LocalBrokerClient),
}


def _drive(driver: str, prefetch: int, history: str, tmp_path: Path) -> tuple[Any, ...]:
    both, wrap = DRIVERS[driver]
    if history == "duckdb":
        broker: StorageBroker = DuckDBBroker(tmp_path / f"{driver}-{prefetch}.duckdb", clock=lambda: 100.0)
    else:
        broker = MemoryBroker(clock=lambda: 100.0)
    try:
        delivered: list[Any] = []
        broker.subscribe(delivered.append)
        side = wrap(broker)
        schema = _workflow().to_schema()
        w1, w2 = side.register_worker([schema], "w1"), side.register_worker([schema], "w2")
        run_id = side.dispatch_workflow(schema)
        names = {w1: "w1", w2: "w2"}
        held: dict[str, list[StepAssignment]] = {w1: [], w2: []}
        handed: list[tuple[str, str, int]] = []
        refused: list[str] = []
        for _ in range(50):
            moved = False
            for w in (w1, w2):
                reports = [_outcome(a) for a in held[w]]
                reports += reports[:1]  # the first report again: refused, in its place
                out, got = both(side, w, reports, prefetch)
                assert out[:-1] == [None] * (len(reports) - 1)
                if reports:
                    assert isinstance(out[-1], StaleReportError)
                    refused.append(str(out[-1]).replace(run_id, "<run>").replace(w, "<w>"))
                handed.extend((names[w], a.step_name, a.attempt) for a in got)
                held[w] = got
                moved = moved or bool(reports) or bool(got)
            if not moved:
                break
        info = broker.get_run(run_id)
        steps = {n: (s.state, s.attempts, s.result, s.error, s.worker, s.queued_at, s.started_at, s.finished_at)
                 for n, s in info.steps.items()}
        events = [(e.kind, e.step, e.state, e.worker, e.attempt, e.seq, e.detail) for e in broker.events(run_id)]
        assert [(e.kind, e.step, e.seq) for e in delivered] == [(e[0], e[1], e[5]) for e in events]
        return info.state, steps, events, handed, refused
    finally:
        broker.close()


@pytest.mark.parametrize("history", ["memory", "duckdb"])
@pytest.mark.parametrize("prefetch", [1, 3])
@pytest.mark.parametrize("driver", ["broker", "ABC default", "LocalBrokerClient", "deferred",
                                    "deferred LocalBrokerClient"])
def test_report_and_get_leaves_the_history_of_report_steps_then_get_steps(
        driver: str, prefetch: int, history: str, tmp_path: Path) -> None:
    expected = _drive("two calls", prefetch, history, tmp_path)
    state, steps, _events, handed, refused = expected
    assert state is Status.FAILED  # the workflow did what it says (see test_broker_batch)
    assert steps["merge"][0] is Status.SUCCEEDED and steps["y"][0] is Status.SKIPPED
    assert steps["flaky"][:2] == (Status.SUCCEEDED, 2) and steps["join_bad"][0] is Status.CANCELLED
    assert len(handed) == 13 and len(refused) >= 4
    assert _drive(driver, prefetch, history, tmp_path) == expected


def _chain_broker(clock: Callable[[], float], storage: Any = None) -> tuple[StorageBroker, str, str, list[Any]]:
    a, b, c = (FunctionStep(lambda: 1, name=n) for n in "abc")
    a >> b >> c
    schema = Workflow(outputs=[c], workflow_id="chain").to_schema()
    broker = StorageBroker(storage if storage is not None else MemoryRuntimeStorage(), clock=clock,
                           lease_seconds=10.0)
    seen: list[Any] = []
    broker.subscribe(seen.append)
    wid = broker.register_worker([schema], "w1")
    return broker, wid, broker.dispatch_workflow(schema), seen


def _done(a: StepAssignment) -> StepReport:
    return StepReport(a.workflow_id, a.instance_id, a.step_name, Status.SUCCEEDED, 1, attempt=a.attempt)


def test_a_lease_that_passed_meanwhile_is_swept_between_the_reports_and_the_hand_out() -> None:
    now = itertools.count(0.0, 0.0)
    t = [0.0]
    broker, wid, run_id, seen = _chain_broker(lambda: t[0] + next(now))
    other = broker.register_worker([broker.list_workflows()[0]], "w2")
    (a,) = broker.get_steps(wid, 1)
    t[0] = 50.0  # a's lease (10 s) passed: the sweep queues it again before the hand-out
    out, got = broker.report_and_get(other, [], 1)
    assert out == [] and [(g.step_name, g.attempt) for g in got] == [("a", 2)]
    out, got = broker.report_and_get(other, [_done(got[0])], 1)
    assert out == [None] and [g.step_name for g in got] == ["b"]
    (late,) = broker.report_steps(wid, [_done(a)])
    assert isinstance(late, StaleReportError)
    kinds = [(e.kind, e.step) for e in seen]
    assert kinds[:6] == [("run_dispatched", None), ("step_queued", "a"), ("step_started", "a"),
                         ("step_finished", "a"), ("step_queued", "a"), ("step_started", "a")]
    assert seen[3].detail is not None and seen[3].detail["lost"] is True
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    assert [(e.kind, e.step) for e in broker.events(run_id)] == kinds


class _Refusing(MemoryRuntimeStorage):
    """Refuses to save the records of step ``b`` once told to (a full disk, say)."""

    refuse = False

    def set_results(self, run_id: str, results: list[tuple[str, Any]]) -> None:
        if self.refuse:
            raise OSError("disk full")
        super().set_results(run_id, results)


def test_a_storage_that_refuses_the_reports_writes_refuses_every_report_and_hands_out_still() -> None:
    storage = _Refusing()
    broker, wid, _run_id, seen = _chain_broker(lambda: 1.0, storage)
    (a,) = broker.get_steps(wid, 1)
    storage.refuse = True
    out, got = broker.report_and_get(wid, [_done(a)], 1)
    assert len(out) == 1 and isinstance(out[0], OSError) and "disk full" in str(out[0])
    assert got == []  # the report's effects were not written: nothing new in the queue
    assert [e.kind for e in seen] == ["run_dispatched", "step_queued", "step_started"]  # none published


def test_report_and_get_names_an_unknown_worker_and_a_closed_broker() -> None:
    broker, wid, _run_id, _ = _chain_broker(lambda: 1.0)
    (a,) = broker.get_steps(wid, 1)
    with pytest.raises(UnknownWorkerError, match="unknown worker: 'nobody'"):
        broker.report_and_get("nobody", [_done(a)], 1)
    out, got = broker.report_and_get(wid, [_done(a)], 0)  # n = 0: the reports only
    assert out == [None] and got == []
    (b,) = broker.get_steps(wid, 1)
    broker.close()
    with pytest.raises(StorageClosedError, match="StorageBroker is closed"):
        broker.report_and_get(wid, [_done(b)], 1)
