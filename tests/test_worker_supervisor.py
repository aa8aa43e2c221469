"""The one worker supervisor, as ``fuseline-nb worker`` uses it (issue 18 items 4 and 7): leases kept while
a process lives, step timeouts enforced, a vanished worker pruned and its steps finished elsewhere.

Real parts: ``fuseline-nb broker`` (uvicorn on 127.0.0.1) and ``fuseline-nb worker`` processes."""

from __future__ import annotations

import os
import signal
import time

import pytest

from fuseline_nb import Status
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker.supervisor import WorkerSupervisor
from tests import http_workflows as flows
from tests.test_http_service import Service, wait_run, wait_workers


def _gil_iterations(seconds: float) -> int:
    t0 = time.perf_counter()
    flows._hold_the_gil(2_000_000)
    return int(2_000_000 * seconds / max(time.perf_counter() - t0, 1e-6))


@pytest.mark.slow
def test_a_cli_step_holding_the_gil_past_its_lease_runs_once(tmp_path) -> None:
    # the worker process cannot send heartbeats while the step holds the GIL: its supervisor (another
    # process) keeps the lease; before, the step was re-queued at each expiry and failed after three
    service = Service(tmp_path)
    try:
        client = service.start_broker("--lease-seconds", "1")
        service.start_workers("tests.http_workflows:gil", processes=2)
        wait_workers(client, 2)
        n = _gil_iterations(4.0)
        info = wait_run(client, client.dispatch_workflow(flows.gil.to_schema(), {"n": n}), timeout=120)
        assert info.state is Status.SUCCEEDED, info.steps["hold"].error
        assert (info.steps["hold"].attempts, info.steps["hold"].result) == (1, sum(range(n)))
        assert "lease expired" not in str([e.detail for e in client.events(info.run_id)])
    finally:
        service.close()


@pytest.mark.slow
def test_a_cli_step_past_its_timeout_is_killed_and_fails_naming_it(tmp_path) -> None:
    service = Service(tmp_path)
    try:
        client = service.start_broker()
        workers = service.start_workers("tests.http_workflows:hanging")
        wait_workers(client, 1)
        n = _gil_iterations(20.0)
        t0 = time.monotonic()
        info = wait_run(client, client.dispatch_workflow(flows.hanging.to_schema(), {"n": n}), timeout=60)
        assert time.monotonic() - t0 < 15  # killed, not run to its end (a thread timer cannot fire meanwhile)
        assert info.state is Status.FAILED
        assert info.steps["hang"].error is not None
        assert info.steps["hang"].error.startswith("TimeoutError: step 'hang' exceeded its timeout of 1 s")
        wait_workers(client, 1)  # a replacement process serves the broker
        assert workers.poll() is None
    finally:
        service.close()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_a_vanished_worker_is_pruned_and_its_step_finishes_on_another(tmp_path, sig) -> None:
    # the whole `fuseline-nb worker` group vanishes without a word (no unregister, no keep-alive)
    service = Service(tmp_path)
    try:
        client = service.start_broker("--lease-seconds", "1", "--worker-ttl", "3")
        doomed = service._spawn("worker", "tests.http_workflows:slow", "--broker", service.url, "--name",
                                "doomed", "--poll-wait", "1", log="doomed.log")
        wait_workers(client, 1)
        marker = tmp_path / "slow.pid"
        run_id = client.dispatch_workflow(flows.slow.to_schema(), {"marker": str(marker), "seconds": 60})
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "the doomed worker never started the slow step"
            time.sleep(0.05)
        doomed_pid = int(marker.read_text())
        os.killpg(doomed.pid, sig)
        service._spawn("worker", "tests.http_workflows:slow", "--broker", service.url, "--name", "steady",
                       "--poll-wait", "1", log="steady.log")
        info = wait_run(client, run_id, timeout=60)
        assert info.state is Status.SUCCEEDED, {n: s.error for n, s in info.steps.items()}
        slow = info.steps["Slow"]
        assert slow.attempts == 2 and slow.result != doomed_pid
        deadline = time.monotonic() + 20
        while [w.name for w in client.list_workers()] != ["steady"]:
            assert time.monotonic() < deadline, f"still listed: {[w.name for w in client.list_workers()]}"
            time.sleep(0.2)
    finally:
        service.close()


@pytest.mark.slow
def test_cli_workers_that_keep_dying_at_start_make_it_give_up_naming_why(tmp_path) -> None:
    service = Service(tmp_path)
    try:  # no broker needed: the processes die before they reach it
        workers = service.start_workers("tests.fails_in_workers:flow", processes=2)
        assert workers.wait(timeout=60) == 1
        log = service.log("worker.log")
        assert "worker processes keep exiting at start (3 in a row, last exit code 1)" in log
        assert "cannot be imported in a worker process" in log
    finally:
        service.close()


class _Gone:
    """A process that has ended (for the supervisor's bookkeeping)."""

    pid, exitcode, sentinel = 99999, 1, None

    def join(self, timeout: float | None = None) -> None:
        return None


class _Child:
    def __init__(self, label: str) -> None:
        self.label, self.process, self.worker_id, self.busy = label, _Gone(), None, None


def test_the_supervisor_gives_up_when_processes_keep_dying_at_start() -> None:
    started: list[_Child] = []

    def start(label: str) -> _Child:
        started.append(_Child(label))
        return started[-1]

    sup = WorkerSupervisor(LocalBrokerClient(MemoryBroker()), start, 2, max_crashes=3)
    sup.start()
    for _ in range(3):
        sup.exited(started[len(started) - 2])
    assert sup.error is not None
    assert str(sup.error) == ("worker processes keep exiting at start (3 in a row, last exit code 1); "
                              "see the log for their errors")
    assert len(started) == 4  # two, then one replacement per death but the last


def test_a_process_reaped_by_another_thread_counts_as_ended_not_as_running() -> None:
    """At shutdown the channel thread and stop() both look at a process that ends: when the other one reaps it,
    ``is_alive()`` says True (its waitpid fails), which made stop() warn 'had not exited' and kill a pid that
    was no longer its child."""
    import multiprocessing

    from fuseline_nb.worker.supervisor import _ended

    proc = multiprocessing.get_context("spawn").Process(target=os.getpid)
    proc.start()
    os.waitpid(proc.pid, 0)  # what another thread's join does, between its waitpid and recording the code
    assert proc.is_alive()  # the race, as multiprocessing shows it
    assert _ended(proc)
