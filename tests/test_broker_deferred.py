"""``deferred_events()``: listeners get a block's events when it ends, in order, once — and nothing else changes.

A channel server answers its worker inside the block and lets the views and
the session see the events after the answer. These tests drive a real
:class:`MemoryBroker` (and a DuckDB one) and check the promise: nothing is
delivered inside the block, everything is delivered at its end (also when
the body raises), in the order the broker made the events, each once; calls
of other threads keep the order; a ``run_finished`` listener still reads
the ended run; a new subscriber gets nothing older than itself.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.broker import MemoryBroker, StepReport
from fuseline_nb.broker.clients import HttpBrokerClient, LocalBrokerClient
from fuseline_nb.broker.core import StorageBroker
from fuseline_nb.workflow.events import Event
from fuseline_nb.workflow.status import Status


def _fan(n: int = 4) -> Workflow:
    root = FunctionStep(lambda: 0, name="root")
    join = FunctionStep(lambda: 1, name="join")
    for i in range(n):
        f = FunctionStep(lambda i=i: i, name=f"f{i}")
        root >> f >> join
    return Workflow(outputs=[join], workflow_id="fan")


def _ok(a: Any) -> StepReport:
    return StepReport(a.workflow_id, a.instance_id, a.step_name, Status.SUCCEEDED, 1, attempt=a.attempt)


def _run_deferred(broker: StorageBroker, seen: list[Event], inside: list[int]) -> str:
    """Drive one run to its end, every call inside a block; ``inside``: what listeners had at each block's end."""
    schema = _fan().to_schema()
    wid = broker.register_worker([schema], "w1")
    run_id = broker.dispatch_workflow(schema)
    while True:
        with broker.deferred_events():
            got = broker.get_steps(wid, 3)
            broker.report_steps(wid, [_ok(a) for a in got])
            inside.append(len(seen))
        if not got:
            return run_id


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_a_block_delivers_its_events_at_its_end_in_order_once(kind: str, tmp_path: Path) -> None:
    if kind == "memory":
        broker: StorageBroker = MemoryBroker()
    else:
        from fuseline_nb.broker import DuckDBBroker

        broker = DuckDBBroker(tmp_path / "h.duckdb")
    seen: list[Event] = []
    broker.subscribe(seen.append)
    inside: list[int] = []
    counts: list[int] = []
    schema = _fan().to_schema()
    wid = broker.register_worker([schema], "w1")
    run_id = broker.dispatch_workflow(schema)
    while True:
        with broker.deferred_events():
            before = len(seen)
            got = broker.get_steps(wid, 3)
            broker.report_steps(wid, [_ok(a) for a in got])
            inside.append(len(seen) - before)
        counts.append(len(seen))
        if not got:
            break
    assert inside == [0] * len(inside)  # nothing reached the listener inside a block
    stored = broker.events(run_id)
    assert seen == stored and [e.seq for e in seen] == list(range(1, len(stored) + 1))
    assert seen[-1].kind == "run_finished" and seen[-1].state is Status.SUCCEEDED
    assert counts == sorted(counts) and counts[0] > 2  # each block's end delivered its events
    broker.close()


def test_events_made_in_a_block_that_raises_are_delivered_once_and_the_error_goes_on() -> None:
    broker = MemoryBroker()
    seen: list[Event] = []
    broker.subscribe(seen.append)
    schema = _fan().to_schema()
    wid = broker.register_worker([schema], "w1")
    run_id = broker.dispatch_workflow(schema)
    with pytest.raises(RuntimeError, match="the channel broke"), broker.deferred_events():
        (a,) = broker.get_steps(wid, 1)
        broker.report_steps(wid, [_ok(a)])
        assert [e.kind for e in seen] == ["run_dispatched", "step_queued"]
        raise RuntimeError("the channel broke")
    assert seen == broker.events(run_id)
    assert [e.kind for e in seen][2:4] == ["step_started", "step_finished"]
    with broker.deferred_events():
        pass  # nothing held: nothing delivered again
    assert seen == broker.events(run_id)


def test_nested_blocks_deliver_at_the_outermost_end() -> None:
    broker = MemoryBroker()
    seen: list[Event] = []
    broker.subscribe(seen.append)
    with broker.deferred_events():
        with broker.deferred_events():
            broker.dispatch_workflow(_fan().to_schema())
        assert seen == []
    assert [e.kind for e in seen] == ["run_dispatched", "step_queued"]


def test_another_thread_s_call_delivers_what_is_held_first_so_the_order_holds() -> None:
    broker = MemoryBroker()
    seen: list[Event] = []
    broker.subscribe(seen.append)
    schema = _fan().to_schema()
    wid = broker.register_worker([schema], "w1")
    run_id = broker.dispatch_workflow(schema)
    with broker.deferred_events():
        broker.get_steps(wid, 1)  # step_started of root: held
        held = len(seen)

        def other() -> None:  # another thread, outside any block: its cancel is delivered at once
            broker.cancel_run(run_id, "enough")

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(seen) > held  # delivered by the other thread, the held step_started first
        assert seen == broker.events(run_id)
        assert seen[-1].kind == "run_finished" and seen[-1].state is Status.CANCELLED
    assert seen == broker.events(run_id)  # nothing twice at the block's end


def test_a_run_finished_listener_reads_the_ended_run_after_a_deferred_end() -> None:
    broker = MemoryBroker()
    read: list[Any] = []

    def on_event(e: Event) -> None:
        if e.kind == "run_finished":
            info = broker.get_run(e.run_id)
            read.append((info.state, info.steps["join"].state, info.steps["f2"].result))

    broker.subscribe(on_event)
    run_id = _run_deferred(broker, [], [])
    assert read == [(Status.SUCCEEDED, Status.SUCCEEDED, 1)]
    assert broker.get_run(run_id).state is Status.SUCCEEDED
    assert broker._state.ending == {}  # forgotten once its run_finished was out


def test_a_new_subscriber_gets_nothing_older_than_itself() -> None:
    broker = MemoryBroker()
    first: list[Event] = []
    late: list[Event] = []
    broker.subscribe(first.append)
    with broker.deferred_events():
        broker.dispatch_workflow(_fan().to_schema())
        broker.subscribe(late.append)  # the held events go to the first listener before it joins
        assert [e.kind for e in first] == ["run_dispatched", "step_queued"]
    assert late == []


def test_a_listener_interrupted_mid_delivery_gets_the_rest_later_each_once() -> None:
    broker = MemoryBroker()
    seen: list[int] = []
    calls = {"n": 0}

    def flaky(e: Event) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # not an Exception: the hub lets it through
        seen.append(e.seq)

    broker.subscribe(flaky)
    schema = _fan().to_schema()
    wid = broker.register_worker([schema], "w1")
    with pytest.raises(KeyboardInterrupt), broker.deferred_events():
        run_id = broker.dispatch_workflow(schema)
        (a,) = broker.get_steps(wid, 1)
    assert seen == [1]  # the second event was being delivered when the interrupt came
    broker.report_steps(wid, [_ok(a)])  # the next events delivered outside a block: the rest first
    assert seen == [1, *[e.seq for e in broker.events(run_id)][2:]]


def test_clients_have_the_block_a_remote_one_changes_nothing() -> None:
    broker = MemoryBroker()
    seen: list[Event] = []
    broker.subscribe(seen.append)
    local = LocalBrokerClient(broker)
    with local.deferred_events():
        local.dispatch_workflow(_fan().to_schema())
        assert seen == []
    assert len(seen) == 2
    remote = HttpBrokerClient("http://127.0.0.1:9")  # nothing is sent: its listeners are in the service
    with pytest.raises(ValueError, match="body"), remote.deferred_events():
        raise ValueError("body")
