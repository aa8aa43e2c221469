"""The process channel without processes: a ChannelClient against a ChannelServer thread over a real pipe."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from types import SimpleNamespace

import pytest

import fuseline_nb as fl
from fuseline_nb.broker import MemoryBroker, StepReport
from fuseline_nb.broker.base import StepAssignment
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.errors import StaleReportError, UnknownRunError
from fuseline_nb.running.execute import StepOutcome
from fuseline_nb.worker.channel import ChannelClient, ChannelClosed
from fuseline_nb.worker.engine import ProcessEngine
from fuseline_nb.worker.latency import FrameReader, send
from fuseline_nb.worker.server import ChannelServer, Endpoint
from fuseline_nb.worker.shipping import ship


class FakeProcess:
    """Stands in for a worker process: its sentinel is a pipe we can 'end'."""

    def __init__(self) -> None:
        self.sentinel, self._w = os.pipe()
        self.pid = os.getpid()

    def end(self) -> None:
        os.close(self._w)


class Pool:
    def __init__(self, workflows: list[fl.Workflow]) -> None:
        self.blobs = [ship(wf) for wf in workflows]
        self.exits: list[Endpoint] = []
        self.exited = threading.Event()

    def workflow_blobs(self):
        return self.blobs

    def on_exit(self, ep: Endpoint) -> None:
        self.exits.append(ep)
        self.exited.set()

    def on_timeout(self, ep: Endpoint, held: object) -> None:
        raise AssertionError("no timeouts here")

    def on_load_error(self, ep: Endpoint, text: str, key: object = None) -> None:
        raise AssertionError(text)


@pytest.fixture
def wired():
    def add(x: int) -> int:
        return x + 1

    wf = fl.Workflow(outputs=[fl.FunctionStep(add)], workflow_id="chan")
    broker = MemoryBroker()
    pool = Pool([wf])
    server = ChannelServer(LocalBrokerClient(broker), pool)
    server.start()
    kernel_end, worker_end = multiprocessing.Pipe()
    proc = FakeProcess()
    ep = Endpoint("w1", kernel_end, proc)
    server.add(ep)
    client = ChannelClient(worker_end, wait=False)
    yield SimpleNamespace(broker=broker, server=server, client=client, wf=wf, pool=pool, proc=proc, ep=ep)
    server.close()


def test_the_client_speaks_every_broker_method(wired: SimpleNamespace) -> None:
    blobs = wired.client.hello()
    assert [key for key, _ in blobs] == [("chan", "1")]
    wid = wired.client.register_worker([wired.wf.to_schema()], "w1")
    assert [w.name for w in wired.client.list_workers()] == ["w1"]
    assert [s.workflow_id for s in wired.client.list_workflows()] == ["chan"]
    run_id = wired.client.dispatch_workflow(wired.wf.to_schema(), {"x": 41})
    a = wired.client.get_step(wid)
    assert (a.step_name, a.inputs, [h.step for h in wired.broker.held_by(wid)]) == ("add", {"x": 41}, ["add"])
    wired.client.keep_alive(wid)
    wired.client.report_step(wid, StepReport("chan", run_id, "add", fl.Status.SUCCEEDED, {"v": 42}, a.attempt))
    assert wired.broker.held_by(wid) == []
    info = wired.client.get_run(run_id)
    assert (info.state, info.steps["add"].result) == (fl.Status.SUCCEEDED, {"v": 42})
    assert [r.run_id for r in wired.client.list_runs()] == [run_id]
    assert wired.client.status()["status"] == "ok"
    assert wired.client.get_step(wid) is None  # wait=False: nothing ready is an answer, not a wait


def test_broker_errors_cross_as_the_same_class(wired: SimpleNamespace) -> None:
    wired.client.hello()
    wid = wired.client.register_worker([wired.wf.to_schema()])
    with pytest.raises(UnknownRunError, match="unknown run: 'nope'"):
        wired.client.get_run("nope")
    run_id = wired.client.dispatch_workflow(wired.wf.to_schema(), {"x": 1})
    a = wired.client.get_step(wid)
    with pytest.raises(StaleReportError, match="attempt 7"):
        wired.client.report_step(wid, StepReport("chan", run_id, "add", fl.Status.SUCCEEDED, 2, a.attempt + 6))


def test_an_unknown_kind_is_an_explicit_error(wired: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match=r"unknown message kind: 'bogus' \(must be one of \['hello'"):
        wired.client._roundtrip("bogus")  # type: ignore[arg-type]


def test_a_waiting_worker_is_parked_until_a_step_is_queued(wired: SimpleNamespace) -> None:
    wired.broker.subscribe(wired.server.on_event)
    wired.client.hello()
    wid = wired.client.register_worker([wired.wf.to_schema()])
    wired.client.wait = True
    got: list = []
    t = threading.Thread(target=lambda: got.append(wired.client.get_step(wid)))
    t.start()
    t.join(0.3)
    assert t.is_alive() and wired.ep.parked == ("get_step", wid)  # parked, not polling
    wired.broker.dispatch_workflow(wired.wf.to_schema(), {"x": 1})
    t.join(5)
    assert got and got[0].step_name == "add"


def test_draining_stops_a_parked_worker_and_a_dead_process_is_reported(wired: SimpleNamespace) -> None:
    wired.client.hello()
    wid = wired.client.register_worker([wired.wf.to_schema()])
    wired.client.wait = True
    errors: list = []

    def park() -> None:
        try:
            wired.client.get_step(wid)
        except ChannelClosed as exc:
            errors.append(exc)

    t = threading.Thread(target=park)
    t.start()
    t.join(0.2)
    wired.server.drain()
    t.join(5)
    assert errors and "stopping" in str(errors[0])
    wired.proc.end()
    assert wired.pool.exited.wait(5) and wired.pool.exits == [wired.ep]
    assert "w1" not in wired.server.endpoints


class CountingClient(LocalBrokerClient):
    """Records the size of every batch of reports the server hands the broker."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.batches: list[list[str]] = []

    def report_steps(self, worker_id, reports):  # type: ignore[no-untyped-def]
        reports = list(reports)
        self.batches.append([r.step_name for r in reports])
        return super().report_steps(worker_id, reports)


def test_reports_read_together_are_recorded_with_one_broker_call_in_order() -> None:
    steps = [fl.FunctionStep(lambda: None, name=f"s{i}") for i in range(5)]
    wf = fl.Workflow(outputs=steps, workflow_id="batch")
    broker = MemoryBroker()
    client = CountingClient(broker)
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    held = broker.get_steps(wid, 5)
    server = ChannelServer(client, Pool([]))  # nothing to ship: the endpoint gets work at once
    kernel_end, worker_end = multiprocessing.Pipe()
    server.add(Endpoint("w1", kernel_end, FakeProcess()))
    ok = [StepReport("batch", run_id, a.step_name, fl.Status.SUCCEEDED, None, a.attempt) for a in held]
    stale = StepReport("batch", run_id, "s0", fl.Status.SUCCEEDED, None, 9)  # refused: logged, the rest recorded
    # what workers holding prefetched steps send; all of it is in the pipe before the server reads
    send(worker_end, ("reports", (wid, [ok[0], stale])))
    send(worker_end, ("reports", (wid, ok[1:4])))
    send(worker_end, ("report_and_get", (wid, ok[4], False)))
    server.start()
    try:
        assert pickle.loads(FrameReader(worker_end).next()) == ("assignments", [])
    finally:
        server.close()
    assert client.batches == [["s0", "s0", "s1", "s2", "s3", "s4"]]
    info = broker.get_run(run_id)
    assert info.state is fl.Status.SUCCEEDED and all(s.state is fl.Status.SUCCEEDED for s in info.steps.values())


def test_a_refused_last_report_is_the_answer_and_the_ones_before_it_count() -> None:
    steps = [fl.FunctionStep(lambda: None, name=f"s{i}") for i in range(2)]
    wf = fl.Workflow(outputs=steps, workflow_id="batch2")
    broker = MemoryBroker()
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    held = broker.get_steps(wid, 2)
    server = ChannelServer(CountingClient(broker), Pool([]))
    kernel_end, worker_end = multiprocessing.Pipe()
    server.add(Endpoint("w1", kernel_end, FakeProcess()))
    send(worker_end, ("reports", (wid, [StepReport("batch2", run_id, "s0", fl.Status.SUCCEEDED, None, 1)])))
    send(worker_end, ("report_and_get", (wid, StepReport("batch2", run_id, "s1", fl.Status.SUCCEEDED, None,
                                                          held[1].attempt + 4), False)))
    server.start()
    try:
        reply = pickle.loads(FrameReader(worker_end).next())
    finally:
        server.close()
    assert reply[:2] == ("error", "StaleReportError") and "attempt 5" in reply[2]
    assert broker.get_run(run_id).steps["s0"].state is fl.Status.SUCCEEDED


def _quick_wf(n: int, wid: str) -> fl.Workflow:
    return fl.Workflow(outputs=[fl.FunctionStep(lambda: None, name=f"s{i}") for i in range(n)], workflow_id=wid)


def _answer(worker_end, message):  # type: ignore[no-untyped-def]
    send(worker_end, message)
    return pickle.loads(FrameReader(worker_end).next())


def test_an_early_ask_gets_a_batch_counted_against_what_its_worker_holds_never_workflows_never_parked() -> None:
    wf = _quick_wf(100, "early")
    broker = MemoryBroker()
    server = ChannelServer(LocalBrokerClient(broker), Pool([_quick_wf(1, "later")]), prefetch=16)
    broker.subscribe(server.on_event)  # the backlog hint comes from the broker's events
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    held = broker.get_steps(wid, 10)  # handed out earlier: still in the worker's hands
    kernel_end, worker_end = multiprocessing.Pipe()
    ep = Endpoint("w1", kernel_end, FakeProcess())
    ep.worker_id = wid
    server.add(ep)
    server.start()
    try:
        reports = [StepReport("early", run_id, a.step_name, fl.Status.SUCCEEDED, None, a.attempt,
                              started_at=1.0, finished_at=1.00001) for a in held[:4]]
        send(worker_end, ("reports", (wid, reports)))  # quick steps: worth a batch
        reply = _answer(worker_end, ("get_step", (wid, False)))
        # prefetch 16; six still held, the first of them running: eleven more, and not the pool's new
        # workflow (the worker would re-register mid-batch)
        assert reply[0] == "assignments" and len(reply[1]) == 11
        assert len(broker.held_by(wid)) == 17
        assert _answer(worker_end, ("get_step", (wid, False))) == ("assignments", [])  # full hands: none more
        rest = broker.get_steps(wid, 100)
        assert len(rest) == 100 - 4 - 17
        # nothing left to hand out: an early ask is answered at once, never parked
        assert _answer(worker_end, ("get_step", (wid, False))) == ("assignments", [])
        assert ep.parked is None
    finally:
        server.close()


def test_a_long_step_shrinks_its_workers_next_batch_to_one() -> None:
    wf = _quick_wf(50, "long")
    broker = MemoryBroker()
    server = ChannelServer(LocalBrokerClient(broker), Pool([]), prefetch=16)
    broker.subscribe(server.on_event)
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    held = broker.get_steps(wid, 3)
    kernel_end, worker_end = multiprocessing.Pipe()
    ep = Endpoint("w1", kernel_end, FakeProcess())
    ep.worker_id = wid
    server.add(ep)
    slow = StepReport("long", run_id, held[0].step_name, fl.Status.SUCCEEDED, None, held[0].attempt,
                      started_at=1.0, finished_at=1.5)  # took half a second
    quick = StepReport("long", run_id, held[1].step_name, fl.Status.SUCCEEDED, None, held[1].attempt,
                       started_at=1.0, finished_at=1.00001)  # the last one was quick: the longest counts
    send(worker_end, ("reports", (wid, [slow])))  # both in the pipe before the server reads: one read
    send(worker_end, ("report_and_get", (wid, quick, True)))
    server.start()
    try:
        reply = pickle.loads(FrameReader(worker_end).next())
        assert reply[0] == "assignments" and len(reply[1]) == 1
        assert ep.step_seconds == pytest.approx(0.5)
    finally:
        server.close()


class CallsClient(LocalBrokerClient):
    """Counts the broker calls the server makes for reports and hand-outs."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.calls: list[str] = []

    def report_steps(self, worker_id, reports):  # type: ignore[no-untyped-def]
        self.calls.append("report_steps")
        return super().report_steps(worker_id, reports)

    def get_steps(self, worker_id, n):  # type: ignore[no-untyped-def]
        self.calls.append("get_steps")
        return super().get_steps(worker_id, n)

    def report_and_get(self, worker_id, reports, n):  # type: ignore[no-untyped-def]
        self.calls.append("report_and_get")
        return super().report_and_get(worker_id, reports, n)


def _served(client: LocalBrokerClient):  # type: ignore[no-untyped-def]
    server = ChannelServer(client, Pool([]))  # nothing to ship: the endpoint gets work at once
    kernel_end, worker_end = multiprocessing.Pipe()
    server.add(Endpoint("w1", kernel_end, FakeProcess()))
    server.start()
    return server, worker_end


def test_a_waiting_workers_report_and_its_next_step_are_one_broker_call() -> None:
    a, b = fl.FunctionStep(lambda: 1, name="a"), fl.FunctionStep(lambda: 2, name="b")
    a >> b
    wf = fl.Workflow(outputs=[b], workflow_id="pair")
    broker = MemoryBroker()
    client = CallsClient(broker)
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    first = broker.get_step(wid)
    server, worker_end = _served(client)
    try:
        channel = ChannelClient(worker_end, wait=True)
        channel.report_step(wid, StepReport("pair", run_id, "a", fl.Status.SUCCEEDED, 1, first.attempt))
        nxt = channel.get_step(wid)  # in hand already: brought by the report's answer
    finally:
        server.close()
    assert nxt is not None and nxt.step_name == "b"
    assert client.calls == ["report_and_get"]
    assert broker.get_run(run_id).steps["a"].state is fl.Status.SUCCEEDED


def test_a_refused_report_travels_with_the_next_step_and_the_worker_still_gets_the_step() -> None:
    wf = _quick_wf(2, "two")
    broker = MemoryBroker()
    client = CallsClient(broker)
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    late = StepReport("two", run_id, s0.step_name, fl.Status.SUCCEEDED, None, s0.attempt + 4)
    server, worker_end = _served(client)
    try:
        channel = ChannelClient(worker_end, wait=True)
        with pytest.raises(StaleReportError, match="attempt 5"):  # the refusal, as a lone report_step raises it
            channel.report_step(wid, late)
        nxt = channel.get_step(wid)  # ...and the step handed out with it is not lost
        held = broker.held_by(wid)
    finally:
        server.close()
    assert nxt is not None and {nxt.step_name, s0.step_name} == {"s0", "s1"}
    assert [h.step for h in held] == [s0.step_name, nxt.step_name]  # the refused one is still its own
    assert client.calls == ["report_and_get"]


def test_a_refused_report_with_nothing_ready_is_the_answer() -> None:
    wf = _quick_wf(1, "one")
    broker = MemoryBroker()
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    done = StepReport("one", run_id, "s0", fl.Status.SUCCEEDED, None, s0.attempt)
    server, worker_end = _served(LocalBrokerClient(broker))
    try:
        # a one-way report and a late copy of it: the copy's refusal is the answer, never a park
        send(worker_end, ("reports", (wid, [done])))
        send(worker_end, ("report_and_get", (wid, done, True)))
        assert worker_end.poll(10), "the refused report was parked instead of answered"
        reply = pickle.loads(FrameReader(worker_end).next())
    finally:
        server.close()
    assert reply[0] == "error" and reply[1] in {"StaleReportError", "UnknownRunError"}
    assert broker.get_run(run_id).state is fl.Status.SUCCEEDED


def test_the_report_of_a_cancelled_runs_step_is_refused_and_the_worker_goes_on_with_the_next_run() -> None:
    wf = _quick_wf(1, "cx")
    broker = MemoryBroker()
    client = CallsClient(broker)
    wid = broker.register_worker([wf.to_schema()])
    doomed = broker.dispatch_workflow(wf.to_schema())
    s0 = broker.get_step(wid)
    broker.cancel_run(doomed, "the user")
    kept = broker.dispatch_workflow(wf.to_schema())
    server, worker_end = _served(client)
    try:
        channel = ChannelClient(worker_end, wait=True)
        with pytest.raises(StaleReportError):
            channel.report_step(wid, StepReport("cx", doomed, "s0", fl.Status.SUCCEEDED, None, s0.attempt))
        nxt = channel.get_step(wid)
    finally:
        server.close()
    assert nxt is not None and nxt.run_id == kept
    assert broker.get_run(doomed).state is fl.Status.CANCELLED


def test_a_pool_engine_goes_on_after_a_report_of_a_run_the_broker_does_not_know() -> None:
    wf = _quick_wf(1, "gone")
    broker = MemoryBroker()
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    server, worker_end = _served(LocalBrokerClient(broker))
    try:
        channel = ChannelClient(worker_end, wait=True)
        engine = ProcessEngine.__new__(ProcessEngine)  # the worker loop's report path, as a pool worker runs it
        engine.client, engine.worker_id = channel, wid
        ghost = StepAssignment("gone", "no-such-run", "s0", {}, 0.0, 60.0)
        engine._report(ghost, StepOutcome(fl.Status.SUCCEEDED, None))  # refused, logged: no exception
        nxt = channel.get_step(wid)  # the ready step came with the refusal
    finally:
        server.close()
    assert nxt is not None and (nxt.run_id, nxt.step_name) == (run_id, "s0")
