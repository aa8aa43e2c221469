"""A fan-out's root: the steps it queues are one compact write entry, applied as the storage calls they stand for.

The broker applies ``Effects.ops``; ``Effects.writes`` spells them out. With
a real broker and an in-memory storage that records its calls, the storage
sees, in queue order, an ``enqueue`` of each queued step then a ``save_step``
of each one's PENDING record with its ``queued_at`` (through the default batch
calls, which call its one-by-one overrides) — and the report of the root holds
no write entry per step while it is applied.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.broker.base import StepReport, WorkerInfo
from fuseline_nb.broker.core import StorageBroker
from fuseline_nb.broker.leases import assign, report
from fuseline_nb.broker.state import Compiled, LiveState, Worker
from fuseline_nb.broker.storage import MemoryRuntimeStorage
from fuseline_nb.broker.transitions import dispatch
from fuseline_nb.workflow.events import Event
from fuseline_nb.workflow.runinfo import StepInfo
from fuseline_nb.workflow.status import Status


def _noop() -> None:
    return None


def _fan(n: int) -> Workflow:
    head, tail = FunctionStep(_noop, name="head"), FunctionStep(_noop, name="tail")
    for i in range(n):
        head >> FunctionStep(_noop, name=f"m{i}") >> tail
    return Workflow(outputs=[tail], workflow_id="fan")


class _Recording(MemoryRuntimeStorage):
    """An in-memory storage that notes the queue and step calls and the events, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    def enqueue(self, run_id: str, step: str) -> None:
        self.calls.append(("enqueue", step))
        super().enqueue(run_id, step)

    def save_step(self, run_id: str, step: str, info: StepInfo) -> None:
        self.calls.append(("save_step", step, info.state, info.queued_at))
        super().save_step(run_id, step, info)

    def record_event(self, event: Event) -> None:
        self.calls.append(("event", event.kind, event.step, event.seq))
        super().record_event(event)


def test_the_roots_successors_are_one_entry_spelled_out_in_order() -> None:
    c = Compiled(_fan(5).to_schema())
    st = LiveState(lease_seconds=10.0)
    st.compiled[c.key] = c
    w = st.workers["w1"] = Worker(WorkerInfo("w1", 0.0, 0.0), {c.key})
    run, _ = dispatch(st, c, "r1", {}, now=0.0)
    a, _ = assign(st, run, "head", w, now=1.0)
    fx = report(st, w, run, StepReport("fan", "r1", "head", Status.SUCCEEDED, None, attempt=a.attempt), now=2.0)
    queued = [(op, args[1]) for op, args in fx.ops if op == "queued"]
    assert queued == [("queued", ["m0", "m1", "m2", "m3", "m4"])]  # one entry, not ten
    spelled = [(op, args[1]) for op, args in fx.writes if op in ("enqueue", "save_step")]
    assert spelled[-10:] == [(op, f"m{i}") for i in range(5) for op in ("enqueue", "save_step")]
    assert [(e.kind, e.step) for e in fx.events][-5:] == [("step_queued", f"m{i}") for i in range(5)]


def test_the_storage_gets_each_queued_step_in_order_then_the_events() -> None:
    storage = _Recording()
    broker = StorageBroker(storage)
    schema = _fan(4).to_schema()
    wid = broker.register_worker([schema])
    run_id = broker.dispatch_workflow(schema)
    a = broker.get_step(wid)
    assert a is not None and a.step_name == "head"
    storage.calls.clear()
    broker.report_step(wid, StepReport("fan", run_id, "head", Status.SUCCEEDED, None, attempt=a.attempt))
    steps = [c for c in storage.calls if c[0] != "event"]
    assert steps[0][:3] == ("save_step", "head", Status.SUCCEEDED)
    # the queued steps in order: each enqueued, then each one's PENDING record (one storage batch call each)
    assert steps[1:] == [("enqueue", f"m{i}") for i in range(4)] + [
        ("save_step", f"m{i}", Status.PENDING, steps[5][3]) for i in range(4)]
    assert steps[5][3] is not None  # the record saved carries its queued_at
    events = [c for c in storage.calls if c[0] == "event"]
    assert [e[1:3] for e in events] == [("step_finished", "head")] + [("step_queued", f"m{i}") for i in range(4)]
    assert storage.calls.index(events[0]) > storage.calls.index(steps[-1])  # the writes first, then the events
    assert [broker.get_step(wid).step_name for _ in range(4)] == [f"m{i}" for i in range(4)]  # type: ignore[union-attr]
    broker.close()


def test_the_roots_report_holds_no_write_entry_per_queued_step() -> None:
    n = 20_000

    class _Quiet(MemoryRuntimeStorage):  # keeps no step record and no event: what is left is the broker's
        def save_step(self, run_id: str, step: str, info: StepInfo) -> None:
            pass

        def record_event(self, event: Event) -> None:
            pass

    broker = StorageBroker(_Quiet())
    schema = _fan(n).to_schema()
    wid = broker.register_worker([schema])
    run_id = broker.dispatch_workflow(schema)
    a = broker.get_step(wid)
    assert a is not None
    gc.collect()
    tracemalloc.start()
    try:
        broker.report_step(wid, StepReport("fan", run_id, "head", Status.SUCCEEDED, None, attempt=a.attempt))
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        broker.close()  # a run of 10k steps or more froze the GC's generations: closing thaws them
    # the N events are made at once (a live view sees them together); two write entries per step (~230 B more: 408 before) are not
    per_step = (peak - now) / n
    assert per_step < 260, f"the root's report held {per_step:.0f} B per queued step above what it kept"
