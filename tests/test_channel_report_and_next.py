"""A pool worker's turn (``ChannelClient.report_and_next``): its report leaves and its next step comes back in one
call, with the answers ``send_report`` + ``get_step`` give — refusals, parked answers, stops, new workflows, steps
in hand; and the pool worker's loop (``_PoolEngine.work``) built on it.

A real ChannelServer thread and a real broker over a real pipe; the worker's side is the ChannelClient (and the
pool worker's engine) in this process.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import threading
from typing import Any

import pytest

import fuseline_nb as fl
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.errors import StaleReportError
from fuseline_nb.worker._duplex import duplex_pipe
from fuseline_nb.worker._pipeforms import report_wire
from fuseline_nb.worker.channel import ChannelClient, ChannelClosed
from fuseline_nb.worker.latency import FrameReader
from fuseline_nb.worker.process import _PoolEngine
from fuseline_nb.worker.server import ChannelServer, Endpoint
from tests.test_channel_send_report import _quick_wf, _until
from tests.test_pool_channel import CallsClient, FakeProcess, Pool


@pytest.fixture(params=["pipes", "socket"])
def served(request):  # type: ignore[no-untyped-def]  # (as test_channel_send_report's; a pool's pipes too)
    broker = MemoryBroker()
    client = CallsClient(broker)
    server = ChannelServer(client, Pool([]))  # nothing to ship: the endpoint gets work at once
    broker.subscribe(server.on_event)  # a parked worker is woken by the broker's events
    if request.param == "pipes":
        kernel_end, worker_end = duplex_pipe(multiprocessing.get_context("spawn"))
    else:
        kernel_end, worker_end = multiprocessing.Pipe()
    ep = Endpoint("w1", kernel_end, FakeProcess())
    server.add(ep)
    server.start()
    yield broker, client, server, ep, ChannelClient(worker_end, wait=True)
    server.close()


def _done(wf_id: str, run_id: str, a: Any, attempt: int | None = None) -> tuple[Any, ...]:
    return report_wire(fl.broker.StepReport(wf_id, run_id, a.step_name, fl.Status.SUCCEEDED, None,
                                            a.attempt if attempt is None else attempt))


def _chain(n: int, wid: str) -> fl.Workflow:
    steps = [fl.FunctionStep(lambda: None, name=f"c{i}") for i in range(n)]
    for a, b in itertools.pairwise(steps):
        a >> b
    return fl.Workflow(outputs=[steps[-1]], workflow_id=wid)


def test_a_chain_goes_report_and_next_to_its_end_one_round_trip_a_step(served: Any) -> None:
    broker, calls, _server, ep, channel = served
    wf = _chain(4, "chain")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    a = channel.get_step(wid)
    seen = []
    while a is not None:
        seen.append(a.step_name)
        if a.step_name == "c3":  # nothing is ready after the last report: its answer is parked until this run
            break
        a = channel.report_and_next(wid, _done("chain", run_id, a))
    box: list[Any] = []
    last = _done("chain", run_id, a)
    t = threading.Thread(target=lambda: box.append(channel.report_and_next(wid, last)))
    t.start()
    _until(lambda: ep.parked == ("get_step", wid), "the last report's answer to be parked")
    later = broker.dispatch_workflow(wf.to_schema())
    t.join(10)
    assert (box[0].run_id, box[0].step_name) == (later, "c0")
    assert seen == ["c0", "c1", "c2", "c3"]
    assert broker.get_run(run_id).state is fl.Status.SUCCEEDED
    assert calls.calls[1:4] == ["report_and_get"] * 3  # one broker call a step, after the first ask


def test_a_refusal_is_raised_and_the_step_that_came_with_it_is_kept(served: Any) -> None:
    broker, _calls, _server, _ep, channel = served
    wf = _quick_wf(2, "two")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    with pytest.raises(StaleReportError, match="attempt 5"):
        channel.report_and_next(wid, _done("two", run_id, s0, s0.attempt + 4))
    nxt = channel.get_step(wid)  # the step handed out with the refusal
    assert nxt is not None and {nxt.step_name, s0.step_name} == {"s0", "s1"}


def test_a_request_from_another_thread_while_the_answer_is_parked_waits_and_gets_its_own(served: Any) -> None:
    broker, _calls, _server, ep, channel = served
    wf = _quick_wf(1, "park")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    box: list[Any] = []
    turn = threading.Thread(target=lambda: box.append(channel.report_and_next(wid, _done("park", run_id, s0))))
    turn.start()
    _until(lambda: ep.parked == ("get_step", wid), "the report's answer to be parked")
    got: list[Any] = []
    asking = threading.Thread(target=lambda: got.append(channel.status()))
    asking.start()
    later = broker.dispatch_workflow(wf.to_schema())  # answers the parked report first
    turn.join(10)
    asking.join(10)
    assert not turn.is_alive() and not asking.is_alive()
    assert (box[0].run_id, box[0].step_name) == (later, "s0")
    assert got and got[0]["status"] == "ok"


def test_the_pool_stopping_while_the_answer_is_awaited_ends_the_turn(served: Any) -> None:
    broker, _calls, server, ep, channel = served
    wf = _quick_wf(1, "stop")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    errors: list[BaseException] = []

    def turn() -> None:
        try:
            channel.report_and_next(wid, _done("stop", run_id, s0))
        except BaseException as exc:  # what the turn raised, asserted below
            errors.append(exc)

    t = threading.Thread(target=turn)
    t.start()
    _until(lambda: ep.parked == ("get_step", wid), "the report's answer to be parked")
    server.drain()
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], ChannelClosed) and "stopping" in str(errors[0])


def test_workflows_answering_the_report_are_taken_and_the_next_step_comes(served: Any) -> None:
    from fuseline_nb.worker.shipping import ship

    broker, _calls, server, _ep, channel = served
    wf = _quick_wf(2, "grow")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    server.supervisor.blobs.append(ship(_quick_wf(1, "new")))  # what the pool ships next
    shipped: list[Any] = []
    channel.on_workflows = lambda blobs: shipped.append([key for key, _ in blobs]) or wid
    nxt = channel.report_and_next(wid, _done("grow", run_id, s0))
    assert shipped == [[("new", "1")]]
    assert nxt is not None and nxt.run_id == run_id and nxt.step_name != s0.step_name


def test_with_steps_in_hand_the_report_is_held_and_the_next_in_hand_comes(served: Any) -> None:
    broker, calls, _server, _ep, channel = served
    wf = _quick_wf(3, "held")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    channel._took([(a.workflow_id, a.instance_id, a.step_name, a.payload, a.assigned_at, a.expires_at, a.attempt,
                    a.version, a.timeout) for a in broker.get_steps(wid, 3)])
    a = channel.get_step(wid)
    wire = report_wire(fl.broker.StepReport("held", run_id, a.step_name, fl.Status.SUCCEEDED, None, a.attempt,
                                            started_at=1.0, finished_at=1.00001))
    b = channel.report_and_next(wid, wire)  # a quick step's report, more in hand: held, as send_report holds it
    assert b is not None and b.step_name != a.step_name
    assert calls.calls == [] and channel._held == [wire]


def test_the_pool_workers_loop_runs_runs_to_their_end_and_stops_when_asked(
        served: Any, caplog: pytest.LogCaptureFixture) -> None:
    broker, _calls, _server, _ep, channel = served
    wf = _chain(3, "loop")
    engine = _PoolEngine(channel, [wf], name="w")
    run_id = broker.dispatch_workflow(wf.to_schema())
    runner = threading.Thread(target=lambda: _ignore_closed(engine))
    with caplog.at_level(logging.WARNING, logger="fuseline_nb.worker.engine"):
        runner.start()
        _until(lambda: broker.get_run(run_id).state is fl.Status.SUCCEEDED, "the chain to end")
        cancelled = broker.dispatch_workflow(wf.to_schema())
        _until(lambda: broker.get_run(cancelled).state is fl.Status.SUCCEEDED, "the second run to end")
        assert engine.steps_run == 6
        engine.stop()
        broker.dispatch_workflow(wf.to_schema())  # wakes the parked worker: its loop sees the stop and ends
        runner.join(10)
    assert not runner.is_alive()


def _ignore_closed(engine: _PoolEngine) -> None:
    try:
        engine.work(block=True)
    except ChannelClosed:
        pass


@pytest.mark.parametrize("kind", ["pipes", "socket"])
def test_a_closed_reader_never_reads_the_file_that_gets_its_number_next(kind: str) -> None:
    a, b = duplex_pipe(multiprocessing.get_context("spawn")) if kind == "pipes" else multiprocessing.Pipe()
    reader = FrameReader(b)
    number = b.fileno()
    reader.close()
    r, w = os.pipe()  # the lowest free numbers: the closed pipe's among them
    try:
        os.write(w, b"\x00\x00\x00\x01x")
        assert number in (r, w)
        with pytest.raises(OSError):
            reader.read()
        with pytest.raises(OSError):
            reader.next()
        assert os.read(r, 16) == b"\x00\x00\x00\x01x"  # nothing was taken from the new file
    finally:
        os.close(r)
        os.close(w)
        a.close()


def test_an_assignment_over_the_pipe_keeps_its_values_nones_objects_and_their_order() -> None:
    """``assignment_from`` makes the payload's values again in the message's own dicts (no copy): the same payload."""
    import pickle

    from fuseline_nb.broker.base import StepAssignment
    from fuseline_nb.worker._pipeforms import assignment_from, assignment_wire
    from fuseline_nb.workflow.value import Value

    results = {"b": Value.of([1, 2]), "none": None, "cached": {"obj": 3}, "a": Value.of("x")}
    a = StepAssignment("wf", "r1", "s", {"workflow_inputs": {"n": Value.of(5)}, "results": results,
                                         "winners": {"g": "b"}}, 0.0, 60.0, 2, "v3", 1.5)
    back = assignment_from(pickle.loads(pickle.dumps(assignment_wire(a), 5)))
    assert back == a
    assert list(back.payload["results"]) == ["b", "none", "a", "cached"]  # Values first, then objects (as before)
    assert [type(v).__name__ for v in back.payload["results"].values()] == ["Value", "NoneType", "Value", "dict"]
    assert back.results == {"b": [1, 2], "none": None, "a": "x", "cached": {"obj": 3}}
    assert back.inputs == {"n": 5} and back.winners == {"g": "b"}
    assert (back.attempt, back.version, back.timeout) == (2, "v3", 1.5)
    assert a.payload["results"] is results and list(results) == ["b", "none", "cached", "a"]  # the sender's untouched
