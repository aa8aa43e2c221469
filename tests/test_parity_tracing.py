"""Parity with Fuseline's "Tracing" page: ``Workflow(..., trace=path)`` writes
JSON lines keyed by ``event``; the same records come from broker runs on
worker processes through ``broker.subscribe(TraceSubscriber(...))``."""

from __future__ import annotations

import json
import time

import pytest

from fuseline_nb import Depends, FileTracer, FunctionStep, Status, Step, Tracer, Workflow
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.running.tracing import TraceSubscriber
from fuseline_nb.worker import ProcessEngine


def _events(path):
    return [json.loads(line) for line in open(path)]


class A(Step):
    def run_step(self, _setup_res):
        return "a"


class B(Step):
    def run_step(self, _setup_res):
        return "b"


def test_trace_path_gives_fuselines_event_sequence(tmp_path):
    path = tmp_path / "trace.log"
    a, b = A(), B()
    a >> b
    wf = Workflow(outputs=[b], trace=str(path))
    wf.run({})
    events = _events(path)
    assert [(e["event"], e.get("step")) for e in events] == [
        ("workflow_started", None),
        ("step_enqueued", "A"), ("step_started", "A"), ("step_finished", "A"),
        ("step_enqueued", "B"), ("step_started", "B"), ("step_finished", "B"),
        ("workflow_finished", None),
    ]
    assert events[3]["result"] == "'a'" and events[3]["skipped"] is False
    run_ids = {e["workflow_instance_id"] for e in events}
    assert run_ids == {wf.last_run.run_id}
    for e in events:
        assert e["workflow_id"] == wf.workflow_id
        assert {"timestamp", "process_id", "host_id"} <= set(e)


def test_condition_failure_and_cancellation_events(tmp_path):
    path = tmp_path / "t.jsonl"

    def gate(flag: bool) -> bool:
        return flag

    def gated(v: bool = Depends(gate, condition=lambda v: v)) -> str:
        return "ran"

    def boom() -> None:
        raise ValueError("bad")

    def after(x=Depends(boom)) -> None:
        return None

    wf = Workflow(outputs=[FunctionStep(gated), FunctionStep(after)], trace=FileTracer(path))
    wf.run({"flag": False})
    events = _events(path)
    by = {(e["event"], e.get("step")): e for e in events}
    check = by[("condition_check", "gated")]
    assert (check["dependency"], check["value"], check["passed"]) == ("gate", False, False)
    skipped = by[("step_finished", "gated")]
    assert skipped["skipped"] is True and skipped["result"] is None
    assert by[("step_failed", "boom")]["error"] == "ValueError: bad"
    assert ("step_cancelled", "after") in by
    assert events[-1]["event"] == "workflow_finished" and events[-1]["state"] == "FAILED"

    wf.run({"flag": True})
    passed = [e for e in _events(path)[len(events):] if e["event"] == "condition_check"]
    assert [e["passed"] for e in passed] == [True]


def test_a_branch_not_taken_leaves_no_record_but_the_history_has_it(tmp_path):
    path = tmp_path / "t.jsonl"

    def route() -> str:
        return "left"

    left, right = FunctionStep(lambda: "L", name="left"), FunctionStep(lambda: "R", name="right")
    after_right = FunctionStep(lambda: "AR", name="after_right")
    r = FunctionStep(route)
    (r - "left") >> left
    (r - "right") >> right >> after_right
    wf = Workflow(outputs=[left, after_right], trace=str(path))
    assert wf.run() == ["L", None]
    steps = {e.get("step") for e in _events(path)}
    assert steps == {None, "route", "left"}  # nothing about right / after_right, as in Fuseline
    assert {e["event"] for e in _events(path)} <= {
        "workflow_started", "step_enqueued", "step_started", "step_finished", "workflow_finished"}
    assert wf.last_run.steps["after_right"].skip_reason == "not_reached"

    broker = MemoryBroker()
    keep: list[dict] = []

    class Keep(Tracer):
        def record(self, event):
            keep.append(event)

    broker.subscribe(TraceSubscriber(Keep()))
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client)
    ProcessEngine(client, [wf]).work()
    assert not {"right", "after_right"} & {e.get("step") for e in keep}
    skipped = [(e.step, e.detail["skip_reason"]) for e in broker.events(run_id) if e.state is Status.SKIPPED]
    assert sorted(skipped) == [("after_right", "not_reached"), ("right", "not_reached")]


def test_a_custom_tracer_receives_dicts():
    class Keep(Tracer):
        def __init__(self):
            self.events = []

        def record(self, event):
            self.events.append(event)

    keep = Keep()
    Workflow(outputs=[FunctionStep(lambda: 1, name="one")], trace=keep).run()
    assert [e["event"] for e in keep.events][0] == "workflow_started"
    assert all("event" in e for e in keep.events)


def test_broker_events_traced_with_worker_and_attempt(tmp_path):
    path = tmp_path / "broker.jsonl"

    def gate(flag: bool) -> bool:
        return flag

    def gated(v: bool = Depends(gate, condition=lambda v: v)) -> str:
        return "ran"

    wf = Workflow(outputs=[FunctionStep(gated)], workflow_id="traced")
    other = Workflow(outputs=[FunctionStep(lambda: 0, name="zero")], workflow_id="other")
    broker = MemoryBroker()
    broker.subscribe(TraceSubscriber(FileTracer(path), workflow_id="traced"))
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client, {"flag": False})
    other.dispatch(client)
    ProcessEngine(client, [wf, other]).work()
    events = _events(path)
    assert {e["workflow_id"] for e in events} == {"traced"}  # the filter keeps one workflow
    assert {e["workflow_instance_id"] for e in events} == {run_id}
    kinds = [(e["event"], e.get("step")) for e in events]
    assert kinds == [
        ("workflow_started", None),
        ("step_enqueued", "gate"), ("step_started", "gate"), ("step_finished", "gate"),
        ("step_enqueued", "gated"), ("step_started", "gated"),
        ("condition_check", "gated"), ("step_finished", "gated"),
        ("workflow_finished", None),
    ]
    started = events[2]
    assert started["worker"] and started["attempt"] == 1
    check = next(e for e in events if e["event"] == "condition_check")
    assert (check["dependency"], check["value"], check["passed"]) == ("gate", False, False)
    finished = next(e for e in events if e["event"] == "step_finished")
    assert finished["result"] == "False"  # the result's preview, from the worker's report


def _wait(broker, run_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = broker.get_run(run_id)
        if info.state is not Status.RUNNING:
            return info
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


@pytest.mark.slow
def test_trace_of_steps_run_by_worker_processes(tmp_path):
    pool_mod = pytest.importorskip("fuseline_nb.worker.pool")
    import os

    path = tmp_path / "workers.jsonl"

    def where() -> int:
        return os.getpid()

    def fail(pid: int = Depends(where)) -> None:
        raise RuntimeError(f"failed in {pid}")

    wf = Workflow(outputs=[FunctionStep(fail)], workflow_id="traced-procs")
    broker = MemoryBroker()
    broker.subscribe(TraceSubscriber(FileTracer(path)))
    with pool_mod.WorkerPool(broker, [wf], processes=1):
        info = _wait(broker, wf.dispatch(broker))
    pid = info.steps["where"].result
    assert pid != os.getpid()
    events = _events(path)
    failed = [e for e in events if e["event"] == "step_failed"]
    assert failed and failed[0]["error"] == f"RuntimeError: failed in {pid}"
    assert events[-1]["event"] == "workflow_finished" and events[-1]["state"] == "FAILED"
    assert all(e["workflow_id"] == "traced-procs" for e in events)
