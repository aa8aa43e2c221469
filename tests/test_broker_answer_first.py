"""Answer first: inside ``deferred_events()`` the broker writes the queue at once and the history after the block.

A channel server answers a worker inside a block; the broker then writes at
once only what decides the next hand-out (the queue) and holds the history
writes (step records, results, a run's end, the events' recording) until
the block ends. These tests drive a real broker (memory and DuckDB
histories) through a workflow with a fan-out, a branch, a skip, a failure
retried and a failure that cancels, once with every request inside a block
and once without, and check that the storage gets the same history calls in
the same order, the same rows and the same events; that a reader on another
thread, a listener and a closing broker see every write; and that a write
the storage refuses after the answer is named in the log.
"""

from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from fuseline_nb import FunctionStep, RetryPolicy, Status, Workflow
from fuseline_nb.broker import StepReport
from fuseline_nb.broker.core import StorageBroker
from fuseline_nb.broker.storage import DuckDBRuntimeStorage, MemoryRuntimeStorage
from fuseline_nb.workflow.value import Value

#: the storage calls that write the queue (made at once inside a block); every other write is history
_QUEUE = {"enqueue", "enqueue_steps", "fetch_steps", "fetch_next"}
_WRITES = ("create_run", "enqueue", "enqueue_steps", "fetch_steps", "save_step", "save_steps", "set_result",
           "set_results", "record_events", "finalize_run")


def _recording(base: type) -> type:
    """A subclass of storage class ``base`` that logs each write call (name and what it names) in ``calls``."""

    def wrap(name: str) -> Any:
        def call(self: Any, *args: Any) -> Any:
            self.calls.append((name, _said(name, args)))
            return getattr(base, name)(self, *args)
        return call

    return type(f"Recording{base.__name__}", (base,), {name: wrap(name) for name in _WRITES})


def _said(name: str, args: tuple[Any, ...]) -> Any:
    """What a write call names, run ids left out (each drive has its own).

    A record is named by its step: the storage keeps a step's latest record
    (its row), so what a record read when saved is checked on the rows at
    the end — a step queued again and handed out in the same block is saved
    PENDING then RUNNING in both drives, the held PENDING save reading the
    record as it is when the block ends (the row is the RUNNING one either way).
    """
    if name == "record_events":
        return [(e.kind, e.step, e.state, e.seq, e.attempt) for e in args[0]]
    if name == "save_steps":
        return [step for step, _ in args[1]]
    if name == "save_step":
        return args[1]
    if name == "set_results":
        return [step for step, _ in args[1]]
    if name == "finalize_run":
        return args[1]
    return args[1:2] if name != "create_run" else None


def _workflow() -> Workflow:
    """root -> 3 branches (one routes "left"/"right", one fails once then succeeds, one fails: cancels its child)."""
    root = FunctionStep(lambda: 0, name="root")
    route = FunctionStep(lambda: "left", name="route")
    left, right = FunctionStep(lambda: 1, name="left"), FunctionStep(lambda: 2, name="right")
    flaky = FunctionStep(lambda: 3, name="flaky", policies=[RetryPolicy(2)])
    bad, after_bad = FunctionStep(lambda: 4, name="bad"), FunctionStep(lambda: 5, name="after_bad")
    join = FunctionStep(lambda: 6, name="join")
    root >> route
    route - "left" >> left
    route - "right" >> right
    root >> flaky >> join
    root >> bad >> after_bad
    left >> join
    return Workflow(outputs=[join, right, after_bad], workflow_id="answer-first")


def _report(a: Any, tries: dict[str, int]) -> StepReport:
    step = a.step_name
    tries[step] = tries.get(step, 0) + 1
    if step == "bad" or (step == "flaky" and tries[step] == 1):
        return StepReport(a.workflow_id, a.instance_id, step, Status.FAILED, attempt=a.attempt,
                          error="ValueError: no", started_at=1.0, finished_at=2.0)
    value: Any = "left" if step == "route" else len(step)
    return StepReport(a.workflow_id, a.instance_id, step, Status.SUCCEEDED, Value.of(value), attempt=a.attempt,
                      action="left" if step == "route" else None, started_at=1.0, finished_at=2.0)


def _broker(kind: str, tmp: Path) -> StorageBroker:
    if kind == "memory":
        storage = _recording(MemoryRuntimeStorage)()
    else:
        storage = _recording(DuckDBRuntimeStorage)(str(tmp / f"h{len(list(tmp.iterdir()))}.duckdb"))
    storage.calls = []
    clock = itertools.count(100.0)  # the same times in both drives
    return StorageBroker(storage, clock=lambda: float(next(clock)))


def _drive(broker: StorageBroker, deferred: bool, during: Any = None) -> tuple[str, list[Any]]:
    """Run the workflow to its end with two workers taking turns, as a channel server would (one call per turn)."""
    schema = _workflow().to_schema()
    wids = [broker.register_worker([schema], f"w{i}") for i in (1, 2)]
    run_id = broker.dispatch_workflow(schema)
    delivered: list[Any] = []
    broker.subscribe(delivered.append)
    held: dict[str, list[Any]] = {w: [] for w in wids}
    tries: dict[str, int] = {}
    for _ in range(100):
        progressed = False
        for wid in wids:
            reports = [_report(a, tries) for a in held[wid]]
            if deferred:
                with broker.deferred_events():
                    refused, held[wid] = broker.report_and_get(wid, reports, 2)
                    if during is not None:
                        during(broker, run_id, reports)
            else:
                refused, held[wid] = broker.report_and_get(wid, reports, 2)
            assert not any(refused), refused
            progressed = progressed or bool(reports) or bool(held[wid])
        if not progressed:
            break
    return run_id, delivered


def _history(broker: StorageBroker, run_id: str) -> tuple[Any, ...]:
    info = broker.get_run(run_id)
    steps = {n: (s.state, s.attempts, s.action, s.error, s.skip_reason, s.worker, s.recovered,
                 s.result.load() if isinstance(s.result, Value) else s.result)
             for n, s in info.steps.items()}
    events = [(e.kind, e.step, e.state, e.seq, e.attempt, e.worker) for e in broker.events(run_id)]
    return info.state, steps, events


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_a_block_writes_the_same_history_in_the_same_order(kind: str, tmp_path: Path) -> None:
    plain = _broker(kind, tmp_path)
    run_plain, seen_plain = _drive(plain, deferred=False)
    held = _broker(kind, tmp_path)
    run_held, seen_held = _drive(held, deferred=True)
    history = [c for c in held.storage.calls if c[0] not in _QUEUE]  # type: ignore[attr-defined]
    assert history == [c for c in plain.storage.calls if c[0] not in _QUEUE]  # type: ignore[attr-defined]
    queue = [c for c in held.storage.calls if c[0] in _QUEUE]  # type: ignore[attr-defined]
    assert queue == [c for c in plain.storage.calls if c[0] in _QUEUE]  # type: ignore[attr-defined]
    state, steps, events = _history(held, run_held)
    assert (state, steps, events) == _history(plain, run_plain)
    assert state is Status.FAILED and steps["right"][0] is Status.SKIPPED and steps["flaky"][:2] == \
        (Status.SUCCEEDED, 2) and steps["after_bad"][0] is Status.CANCELLED and steps["join"][0] is Status.SUCCEEDED
    assert [e.seq for e in seen_held] == list(range(3, len(events) + 1))  # subscribed after the dispatch
    assert [(e.kind, e.step, e.seq) for e in seen_held] == [(e.kind, e.step, e.seq) for e in seen_plain]
    plain.close()
    held.close()


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_inside_a_block_the_queue_is_written_at_once_and_the_history_when_it_ends(kind: str,
                                                                                  tmp_path: Path) -> None:
    broker = _broker(kind, tmp_path)
    calls: list[Any] = broker.storage.calls  # type: ignore[attr-defined]
    schema = _workflow().to_schema()
    wid = broker.register_worker([schema], "w1")
    run_id = broker.dispatch_workflow(schema)
    (root,) = broker.get_steps(wid, 5)
    with broker.deferred_events():
        start = len(calls)
        refused, got = broker.report_and_get(wid, [_report(root, {})], 5)
        inside = [name for name, _ in calls[start:]]
    assert refused == [None] and sorted(a.step_name for a in got) == ["bad", "flaky", "route"]
    assert inside == ["enqueue_steps", "fetch_steps"]  # answered: nothing of the history yet
    after = [name for name, _ in calls[start + 2:]]
    assert after[-1] == "record_events" and "save_steps" in after and "set_results" in after
    stored = [(e.kind, e.step) for e in broker.events(run_id)]
    assert stored[-7] == ("step_finished", "root")
    assert [k for k, _ in stored[-6:]] == ["step_queued"] * 3 + ["step_started"] * 3
    assert {s for _, s in stored[-6:-3]} == {s for _, s in stored[-3:]} == {"route", "flaky", "bad"}
    broker.close()


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_a_reader_on_another_thread_and_a_listener_see_every_write(kind: str, tmp_path: Path) -> None:
    """A read while a block holds writes gets them first; each listener finds its event in the history."""
    broker = _broker(kind, tmp_path)
    found: list[tuple[int, int]] = []

    def listener(event: Any) -> None:  # reads the history at delivery: its own event is there
        found.append((event.seq, max(e.seq for e in broker.events(event.run_id))))

    broker.subscribe(listener)
    read: list[Any] = []

    def during(b: StorageBroker, run_id: str, reports: list[StepReport]) -> None:
        if not reports:
            return
        t = threading.Thread(target=lambda: read.append((_history(b, run_id), [r.step_name for r in reports])))
        t.start()
        t.join(10)

    run_id, _ = _drive(broker, deferred=True, during=during)
    assert found and all(seq <= stored for seq, stored in found)
    assert read, "the other thread read nothing"
    for (_state, steps, events), reported in read:  # what the worker reported, read from the history
        finished = {e[1] for e in events if e[0] == "step_finished"}
        assert set(reported) <= finished, (reported, finished)
        assert all(steps[s][0] is not Status.RUNNING for s in reported if s not in ("flaky",))
        assert [e[3] for e in events] == list(range(1, len(events) + 1))
    final = _history(broker, run_id)
    assert [e[3] for e in final[2]] == list(range(1, len(final[2]) + 1))  # each event stored once
    broker.close()


def test_a_broker_closed_inside_a_block_writes_what_the_block_holds(tmp_path: Path) -> None:
    path = tmp_path / "closed.duckdb"
    broker = StorageBroker(DuckDBRuntimeStorage(str(path)))
    schema = _workflow().to_schema()
    wid = broker.register_worker([schema], "w1")
    run_id = broker.dispatch_workflow(schema)
    (root,) = broker.get_steps(wid, 5)
    with broker.deferred_events():
        broker.report_and_get(wid, [_report(root, {})], 5)
        broker.close()
    reopened = StorageBroker(DuckDBRuntimeStorage(str(path)))
    kinds = [(e.kind, e.step) for e in reopened.events(run_id)]
    assert ("step_finished", "root") in kinds and kinds.count(("step_started", "route")) >= 1
    assert reopened.get_run(run_id).steps["root"].state is Status.SUCCEEDED
    reopened.close()


class _Refusing(MemoryRuntimeStorage):
    """Refuses to write results once told to (a full disk, say)."""

    refuse = False

    def set_results(self, run_id: str, results: list[tuple[str, Any]]) -> None:
        if self.refuse:
            raise OSError("disk full")
        super().set_results(run_id, results)


def test_a_history_write_refused_after_the_answer_is_logged_with_its_run(caplog: pytest.LogCaptureFixture) -> None:
    storage = _Refusing()
    broker = StorageBroker(storage)
    seen: list[Any] = []
    broker.subscribe(seen.append)
    schema = _workflow().to_schema()
    wid = broker.register_worker([schema], "w1")
    run_id = broker.dispatch_workflow(schema)
    (root,) = broker.get_steps(wid, 5)
    storage.refuse = True
    with caplog.at_level(logging.ERROR, logger="fuseline_nb.broker._applying"):
        with broker.deferred_events():
            refused, got = broker.report_and_get(wid, [_report(root, {})], 5)
    assert refused == [None] and len(got) == 3  # answered before the write was tried
    assert f"the history of run {run_id} lost a write (steps)" in caplog.text and "disk full" in caplog.text
    assert ("step_finished", "root") in [(e.kind, e.step) for e in seen]  # the views still see the transition
    assert ("step_finished", "root") in [(e.kind, e.step) for e in broker.events(run_id)]
    broker.close()
