"""A pool worker reports without waiting (``ChannelClient.send_report``): the answer is read by the next request.

A real ChannelServer thread and a real broker over a real pipe; the worker's side is the ChannelClient (and
the pool worker's engine) in this process.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from typing import Any

import pytest

import fuseline_nb as fl
from fuseline_nb.broker import MemoryBroker, StepReport
from fuseline_nb.broker.base import StepAssignment
from fuseline_nb.errors import StaleReportError
from fuseline_nb.running.execute import StepOutcome
from fuseline_nb.worker._pipeforms import report_wire
from fuseline_nb.worker.channel import ChannelClient, ChannelClosed
from fuseline_nb.worker.process import _PoolEngine
from fuseline_nb.worker.server import ChannelServer, Endpoint
from tests.test_pool_channel import CallsClient, FakeProcess, Pool


def _quick_wf(n: int, wid: str) -> fl.Workflow:
    return fl.Workflow(outputs=[fl.FunctionStep(lambda: None, name=f"s{i}") for i in range(n)], workflow_id=wid)


def _until(check: Any, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.002)


@pytest.fixture
def served():  # type: ignore[no-untyped-def]
    broker = MemoryBroker()
    client = CallsClient(broker)
    server = ChannelServer(client, Pool([]))  # nothing to ship: the endpoint gets work at once
    broker.subscribe(server.on_event)  # a parked worker is woken by the broker's events
    kernel_end, worker_end = multiprocessing.Pipe()
    ep = Endpoint("w1", kernel_end, FakeProcess())
    server.add(ep)
    server.start()
    yield broker, client, server, ep, ChannelClient(worker_end, wait=True)
    server.close()


def test_the_report_leaves_and_the_call_returns_before_the_kernel_answers(served: Any) -> None:
    broker, calls, _server, ep, channel = served
    wf = _quick_wf(1, "one")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    # nothing is ready after this report: the kernel parks its answer; send_report does not wait for it
    channel.send_report(wid, StepReport("one", run_id, "s0", fl.Status.SUCCEEDED, None, s0.attempt))
    _until(lambda: ep.parked == ("get_step", wid), "the report's answer to be parked")
    assert broker.get_run(run_id).state is fl.Status.SUCCEEDED
    later = broker.dispatch_workflow(wf.to_schema())  # queued: the parked answer brings it
    nxt = channel.get_step(wid)
    assert nxt is not None and (nxt.run_id, nxt.step_name) == (later, "s0")
    assert calls.calls[0] == "report_and_get"


def test_a_refusal_is_raised_by_the_next_get_step_and_the_step_that_came_with_it_is_kept(served: Any) -> None:
    broker, calls, _server, _ep, channel = served
    wf = _quick_wf(2, "two")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    channel.send_report(wid, StepReport("two", run_id, s0.step_name, fl.Status.SUCCEEDED, None, s0.attempt + 4))
    with pytest.raises(StaleReportError, match="attempt 5"):
        channel.get_step(wid)
    nxt = channel.get_step(wid)  # the step handed out with the refusal
    assert nxt is not None and {nxt.step_name, s0.step_name} == {"s0", "s1"}
    assert [h.step for h in broker.held_by(wid)] == [s0.step_name, nxt.step_name]
    assert calls.calls == ["report_and_get"]


def test_a_request_while_the_reports_answer_is_parked_gets_its_own_answer_after_it(served: Any) -> None:
    """A heartbeat's request must not take the parked report's answer for its own (nor overtake it)."""
    broker, _calls, _server, ep, channel = served
    wf = _quick_wf(1, "park")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    channel.send_report(wid, StepReport("park", run_id, "s0", fl.Status.SUCCEEDED, None, s0.attempt))
    _until(lambda: ep.parked == ("get_step", wid), "the report's answer to be parked")
    got: list[Any] = []
    asking = threading.Thread(target=lambda: got.append(channel.status()))
    asking.start()
    later = broker.dispatch_workflow(wf.to_schema())  # answers the parked report first
    asking.join(10)
    assert not asking.is_alive() and got and got[0]["status"] == "ok"
    nxt = channel.get_step(wid)
    assert nxt is not None and (nxt.run_id, nxt.step_name) == (later, "s0")


def test_the_pool_stopping_while_the_answer_is_awaited_ends_the_next_get_step(served: Any) -> None:
    broker, _calls, server, ep, channel = served
    wf = _quick_wf(1, "stop")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    channel.send_report(wid, StepReport("stop", run_id, "s0", fl.Status.SUCCEEDED, None, s0.attempt))
    _until(lambda: ep.parked == ("get_step", wid), "the report's answer to be parked")
    server.drain()
    with pytest.raises(ChannelClosed, match="stopping"):
        channel.get_step(wid)


def test_a_pool_worker_logs_a_refused_report_and_runs_the_step_that_came_with_it(
        served: Any, caplog: pytest.LogCaptureFixture) -> None:
    broker, calls, _server, _ep, channel = served
    wf = _quick_wf(1, "gone")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    engine = _PoolEngine.__new__(_PoolEngine)  # the pool worker's report path and next-step path
    engine.client, engine.worker_id = channel, wid
    ghost = StepAssignment("gone", "no-such-run", "s9", {}, 0.0, 60.0)
    with caplog.at_level(logging.WARNING, logger="fuseline_nb.worker.engine"):
        engine._report(ghost, StepOutcome(fl.Status.SUCCEEDED, None))  # leaves; nothing raised yet
        nxt = engine._next_step()  # the refusal is logged, naming the step; the ready step comes with it
    assert nxt is not None and (nxt.run_id, nxt.step_name) == (run_id, "s0")
    assert any("report of step 's9' of run no-such-run refused" in r.getMessage() for r in caplog.records)
    assert calls.calls == ["report_and_get"]


def test_a_report_with_steps_in_hand_is_held_as_before(served: Any) -> None:
    """send_report changes only the report that asks for more: with steps in hand it is held (one-way)."""
    broker, calls, _server, _ep, channel = served
    wf = _quick_wf(3, "held")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    channel._took([(a.workflow_id, a.instance_id, a.step_name, a.payload, a.assigned_at, a.expires_at, a.attempt,
                    a.version, a.timeout) for a in broker.get_steps(wid, 3)])
    done = [channel.get_step(wid) for _ in range(2)]
    wires = [report_wire(StepReport("held", run_id, a.step_name, fl.Status.SUCCEEDED, None, a.attempt,
                                    started_at=1.0, finished_at=1.00001)) for a in done]
    for wire in wires:  # quick steps: their reports are held while more is in hand, as given (no dataclass)
        channel.send_report(wid, wire)
    assert calls.calls == [] and channel._held == wires and all(h is w for h, w in zip(channel._held, wires, strict=True))
    last = channel.get_step(wid)
    channel.send_report(wid, StepReport("held", run_id, last.step_name, fl.Status.SUCCEEDED, None, last.attempt))
    _until(lambda: broker.get_run(run_id).state is fl.Status.SUCCEEDED, "the run to end")
    assert calls.calls[0] == "report_and_get" and channel._held == []  # the held ones left with the last


def test_workflows_answering_the_report_are_taken_and_the_next_step_asked_for(served: Any) -> None:
    """The pool got a new workflow while the worker ran: the kernel answers the report with it (a worker holding
    no step); the worker takes it (on_workflows), then asks again and gets its next step."""
    from fuseline_nb.worker.shipping import ship

    broker, _calls, server, _ep, channel = served
    wf = _quick_wf(2, "grow")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    server.supervisor.blobs.append(ship(_quick_wf(1, "new")))  # what the pool ships next
    shipped: list[Any] = []
    channel.on_workflows = lambda blobs: shipped.append([key for key, _ in blobs]) or wid
    channel.send_report(wid, StepReport("grow", run_id, s0.step_name, fl.Status.SUCCEEDED, None, s0.attempt))
    nxt = channel.get_step(wid)
    assert shipped == [[("new", "1")]]
    assert nxt is not None and nxt.run_id == run_id and nxt.step_name != s0.step_name
    assert broker.get_run(run_id).steps[s0.step_name].state is fl.Status.SUCCEEDED
