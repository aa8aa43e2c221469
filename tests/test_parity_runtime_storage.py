"""Parity with Fuseline's "Runtime storage" page, corrected: the page hands a
``Workflow`` to ``dispatch_workflow`` (Fuseline expects a schema) and calls
``work(block=True)``, which never returns there."""

from __future__ import annotations

import threading

from fuseline_nb import Depends, FunctionStep, Status, Workflow
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker import ProcessEngine


def _wf():
    def load(n: int) -> list[int]:
        return list(range(n))

    def total(xs: list[int] = Depends(load)) -> int:
        return sum(xs)

    return Workflow(outputs=[FunctionStep(total)], workflow_id="storage-page")


def test_dispatch_then_work_runs_the_steps_on_the_worker():
    wf = _wf()
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = broker.dispatch_workflow(wf.to_schema(), {"n": 5})
    worker = ProcessEngine(client, [wf])
    worker.work()
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED
    assert info.steps["total"].result == 10
    assert worker.steps_run == 2


def test_dispatch_accepts_the_workflow_object_as_the_page_writes_it():
    wf = _wf()
    broker = MemoryBroker()
    run_id = broker.dispatch_workflow(wf, {"n": 3})  # Fuseline: AttributeError
    ProcessEngine(LocalBrokerClient(broker), [wf]).work()
    assert broker.get_run(run_id).steps["total"].result == 3


def test_blocking_worker_returns_after_stop():
    wf = _wf()
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    worker = ProcessEngine(client, [wf])
    t = threading.Thread(target=worker.work, kwargs={"block": True, "poll_interval": 0.01})
    t.start()
    run_id = wf.dispatch(client, {"n": 4})
    deadline = threading.Event()
    for _ in range(500):
        if broker.get_run(run_id).state is not Status.RUNNING:
            break
        deadline.wait(0.01)
    worker.stop()
    t.join(5)
    assert not t.is_alive()
    assert broker.get_run(run_id).steps["total"].result == 6


def test_run_state_can_be_read_back_from_the_broker():
    # Fuseline's broker has no get_run; every step's state, attempts and worker are here.
    wf = _wf()
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client, {"n": 2})
    assert broker.get_run(run_id).state is Status.RUNNING
    worker = ProcessEngine(client, [wf], name="w1")
    worker.work()
    info = client.get_run(run_id)
    assert {n: (s.state, s.attempts, s.worker is not None) for n, s in info.steps.items()} == {
        "load": (Status.SUCCEEDED, 1, True), "total": (Status.SUCCEEDED, 1, True)}
