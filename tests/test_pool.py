"""WorkerPool with real worker processes: parallelism, exactly-once, crashes, timeouts, shutdown."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import psutil
import pytest

import fuseline_nb as fl
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.errors import PicklingError, SchemaMismatchError
from fuseline_nb.worker import WorkerPool
from fuseline_nb.workflow.events import Event

# Steps below travel to the workers by value, like steps defined in a notebook.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slow


class Sleepy(fl.Step):
    def run_step(self, seconds: float = 0.0) -> int:
        time.sleep(seconds)
        return os.getpid()


class Marker(fl.Step):
    """Writes its pid to ``marker`` then sleeps: a test can kill it mid-step."""

    def run_step(self, marker: str, hold: float = 2.0) -> str:
        if not os.path.exists(marker + ".done"):
            Path(marker).write_text(str(os.getpid()))
            Path(marker + ".done").write_text("")
            time.sleep(hold)
        return "survived"


class Hang(fl.Step):
    def run_step(self) -> None:
        time.sleep(600)


class Collector(fl.Step):
    """What a worker's cyclic garbage collector does: how many objects it keeps out of its walks, and
    whether a reference cycle this step makes is still collected."""

    def run_step(self) -> tuple[int, bool]:
        import gc
        import weakref

        class Node:
            pass

        node = Node()
        node.me = node  # type: ignore[attr-defined]  # a cycle: only the collector frees it
        gone = weakref.ref(node)
        del node
        gc.collect()
        return gc.get_freeze_count(), gone() is None


def fan(n: int, seconds: float, wid: str) -> fl.Workflow:
    steps = [Sleepy(name=f"s{i}") for i in range(n)]
    return fl.Workflow(outputs=steps, workflow_id=wid)


def wait_done(broker: MemoryBroker, run_id: str, timeout: float = 30.0) -> fl.RunInfo:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        info = broker.get_run(run_id)
        if info.done:
            return info
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} not done after {timeout} s: {broker.get_run(run_id).counts()}")


def warm(session: fl.Session) -> None:
    """Wait until every worker process is up, so timings measure steps, not interpreter start."""
    session.submit(fan(2, 0.0, "warm"), {}).wait(timeout=60)
    end = time.monotonic() + 60
    while len(session.broker.list_workers()) < session.pool.processes and time.monotonic() < end:
        time.sleep(0.05)


@pytest.fixture(scope="module")
def session():
    with fl.Session(workers=2) as s:
        warm(s)
        yield s


def test_steps_run_in_parallel_on_distinct_processes(session: fl.Session) -> None:
    wf = fan(4, 0.5, "parallel")
    t0 = time.perf_counter()
    pids = session.submit(wf, {"seconds": 0.5}).wait(timeout=30)
    wall = time.perf_counter() - t0
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert set(pids) <= set(session.pool.pids())
    assert wall < 1.8, f"4 steps of 0.5 s on 2 workers took {wall:.2f} s (one after another: 2 s)"


def test_each_step_succeeds_exactly_once(session: fl.Session) -> None:
    seen: list[fl.workflow.events.Event] = []
    unsubscribe = session.subscribe(seen.append)
    try:
        runs = [session.submit(fan(30, 0.0, "once"), {}) for _ in range(3)]
        for run in runs:
            run.wait(timeout=30)
    finally:
        unsubscribe()
    for run in runs:
        done = [e.step for e in seen if e.run_id == run.id and e.kind == "step_finished"
                and e.state is fl.Status.SUCCEEDED]
        assert sorted(done) == sorted(f"s{i}" for i in range(30))
        assert run.info().state is fl.Status.SUCCEEDED


def test_a_worker_keeps_its_workflows_out_of_the_collectors_walks_and_still_frees_cycles(
        session: fl.Session) -> None:
    """Loaded workflows live as long as the worker and make no garbage: they are frozen (each full
    collection walked them all); garbage that steps make is collected as always."""
    first = session.submit(fl.Workflow(outputs=[Collector(name="c")], workflow_id="gc-first")).wait(timeout=30)
    frozen, freed = first
    assert frozen > 1000 and freed
    # a workflow shipped to the running workers later is frozen too
    head = Collector(name="head")
    for i in range(300):
        head >> Collector(name=f"m{i}")
    later, freed = session.submit(fl.Workflow(outputs=[head], workflow_id="gc-later")).wait(timeout=30)
    assert freed and later >= frozen + 300  # at least one object per shipped step more


def test_runs_of_several_workflows_share_the_pool(session: fl.Session) -> None:
    def double(x: int) -> int:
        return 2 * x

    def plus(v: int = fl.Depends(double)) -> int:
        return v + 1

    wf_a = fl.workflow_from_functions([plus], workflow_id="shared-a")
    wf_b = fan(2, 0.0, "shared-b")
    pids = set(session.pool.pids())
    ra, rb = session.submit(wf_a, {"x": 20}), session.submit(wf_b, {})
    assert ra.wait(timeout=30) == 41
    assert len(rb.wait(timeout=30)) == 2
    assert set(session.pool.pids()) == pids  # shipped to the running workers, none restarted


def test_a_workflow_redefined_under_the_same_id_runs_its_new_code(session: fl.Session) -> None:
    def build(k: int) -> fl.Workflow:
        def answer() -> int:
            return k

        return fl.Workflow(outputs=[fl.FunctionStep(answer)], workflow_id="redefined")

    assert session.submit(build(1)).wait(timeout=30) == 1
    assert session.submit(build(2)).wait(timeout=30) == 2


def test_another_structure_under_a_known_id_and_version_is_refused(session: fl.Session) -> None:
    def pinned(n: int) -> fl.Workflow:
        return fl.Workflow(outputs=[Sleepy(name=f"s{i}") for i in range(n)], workflow_id="fixed-id",
                           version="7")

    session.submit(pinned(1)).wait(timeout=30)
    with pytest.raises(SchemaMismatchError,
                       match=r"'fixed-id' version '7'.*give the new definition another version or workflow_id"):
        session.submit(pinned(3))


def test_another_structure_under_a_known_id_without_version_is_a_new_version(session: fl.Session) -> None:
    first, second = fan(1, 0.0, "proto-id"), fan(3, 0.0, "proto-id")
    session.submit(first).wait(timeout=30)
    assert len(session.submit(second).wait(timeout=30)) == 3
    assert first.version == "1" and second.version.startswith("auto-")
    again = fan(3, 0.0, "proto-id")  # the same definition, built again: the same version
    session.submit(again).wait(timeout=30)
    assert again.version == second.version
    versions = sorted(s.version for s in session.broker.list_workflows() if s.workflow_id == "proto-id")
    assert versions == sorted(["1", second.version])


def test_a_failed_step_comes_back_as_a_value(session: fl.Session) -> None:
    def broken(x: int) -> int:
        raise ValueError(f"bad row {x}")

    run = session.submit(fl.Workflow(outputs=[fl.FunctionStep(broken)]), {"x": 7})
    assert run.wait(timeout=30) is None
    info = run.info()
    assert info.state is fl.Status.FAILED
    assert info.steps["broken"].error == "ValueError: bad row 7"
    assert "in broken" in info.steps["broken"].traceback
    with pytest.raises(fl.StepFailedError, match="bad row 7"):
        run.wait(raise_on_failure=True)


def test_wait_times_out_while_the_run_goes_on(session: fl.Session) -> None:
    run = session.submit(fan(1, 1.0, "slow"), {"seconds": 1.0})
    with pytest.raises(TimeoutError, match=run.id):
        run.wait(timeout=0.1)
    assert isinstance(run.wait(timeout=30), int)


def test_an_unpicklable_step_is_refused_at_submit(session: fl.Session) -> None:
    class Holder(fl.Step):
        def __init__(self) -> None:
            super().__init__()
            self.guard = threading.Lock()

        def run_step(self) -> int:
            return 1

    with pytest.raises(PicklingError, match=r"step 'Holder' .* attribute 'guard' \(a lock\)"):
        session.submit(fl.Workflow(outputs=[Holder()]))


def test_an_unpicklable_input_is_refused_at_submit(session: fl.Session) -> None:
    with pytest.raises(PicklingError, match="input 'seconds'"):
        session.submit(fan(1, 0.0, "inputs"), {"seconds": threading.Lock()})


def test_a_result_that_cannot_travel_fails_its_step(session: fl.Session) -> None:
    def make_lock() -> object:
        return threading.Lock()

    run = session.submit(fl.Workflow(outputs=[fl.FunctionStep(make_lock)]))
    run.wait(timeout=30)
    assert "PicklingError: the result of step 'make_lock'" in run.info().steps["make_lock"].error


def test_a_worker_killed_mid_step_loses_nothing(tmp_path: Path) -> None:
    marker = str(tmp_path / "pid")
    wf = fl.Workflow(outputs=[Marker(), Sleepy(name="other")], workflow_id="killed")
    with fl.Session(workers=2) as session:
        seen: list[fl.workflow.events.Event] = []
        session.subscribe(seen.append)
        run = session.submit(wf, {"marker": marker, "hold": 30.0})
        end = time.monotonic() + 30
        while not os.path.exists(marker + ".done") and time.monotonic() < end:
            time.sleep(0.02)
        victim = int(Path(marker).read_text())
        os.kill(victim, signal.SIGKILL)
        assert run.wait(timeout=30) == ["survived", run.info().steps["other"].result]
        info = run.info()
        assert info.state is fl.Status.SUCCEEDED
        assert info.steps["Marker"].attempts == 2
        finished = [e for e in seen if e.kind == "step_finished" and e.step == "Marker"]
        # the lost attempt ends too (one step_finished per attempt), then the second succeeds
        assert [(e.state, (e.detail or {}).get("lost")) for e in finished] == [
            (fl.Status.FAILED, True), (fl.Status.SUCCEEDED, None)]
        assert len(session.pool.pids()) == 2 and victim not in session.pool.pids()


def test_a_hung_step_is_killed_soon_after_its_timeout(tmp_path: Path) -> None:
    hang = Hang(policies=[fl.StepTimeoutPolicy(1.0)])
    with fl.Session(workers=1) as session:
        warm(session)
        seen: list[fl.workflow.events.Event] = []
        session.subscribe(seen.append)
        run = session.submit(fl.Workflow(outputs=[hang], workflow_id="hang"))
        run.wait(timeout=30)
        started = next(e.at for e in seen if e.kind == "step_started" and e.step == "Hang")
        failed = next(e for e in seen if e.kind == "step_finished" and e.step == "Hang")
        assert failed.state is fl.Status.FAILED
        assert failed.detail["error"].startswith("TimeoutError: step 'Hang' exceeded its timeout of 1 s")
        assert 1.0 <= failed.at - started < 1.0 + 2.0
        # the pool keeps working with a fresh process
        assert session.submit(fan(2, 0.0, "after-hang")).wait(timeout=30)[0] in session.pool.pids()


def test_timeouts_count_as_attempts_for_the_retry_policy() -> None:
    hang = Hang(policies=[fl.StepTimeoutPolicy(0.5), fl.RetryPolicy(max_retries=2)])
    with fl.Session(workers=1) as session:
        run = session.submit(fl.Workflow(outputs=[hang], workflow_id="hang-retry"))
        run.wait(timeout=60)
        step = run.info().steps["Hang"]
        assert (step.state, step.attempts) == (fl.Status.FAILED, 2)
        assert step.error.startswith("TimeoutError")


def test_closing_a_session_that_never_ran_anything_is_quick() -> None:
    t0 = time.perf_counter()
    session = fl.Session(workers=2)  # workers still starting, none has any workflow yet
    pids = session.pool.pids()
    session.close()
    assert time.perf_counter() - t0 < 5
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_shutdown_leaves_no_child_processes() -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    session = fl.Session(workers=2)
    warm(session)
    pids = session.pool.pids()
    assert len(pids) == 2 and set(pids) <= {p.pid for p in me.children(recursive=True)}
    session.submit(fan(1, 30.0, "busy"), {"seconds": 30.0})  # one worker busy at close
    time.sleep(0.3)
    t0 = time.perf_counter()
    session.close(timeout=0.5)
    assert time.perf_counter() - t0 < 3
    # multiprocessing's own resource tracker (one per interpreter, started by the first
    # spawn) stays until this process exits; it is not a worker
    def worker_like(p: psutil.Process) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())
        except psutil.Error:  # gone, or a zombie about to be reaped
            return False

    left = {p.pid for p in me.children(recursive=True) if worker_like(p)}
    assert left - before == set()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    session.close()  # idempotent


def test_a_pool_refuses_misuse() -> None:
    broker = MemoryBroker()
    with pytest.raises(ValueError, match="unknown start method: 'fork'"):
        WorkerPool(broker, [], processes=1, context="fork")
    with pytest.raises(TypeError, match="expected a Broker or a BrokerClient"):
        WorkerPool("broker", [], processes=1)  # type: ignore[arg-type]
    pool = WorkerPool(broker, [fan(1, 0.0, "misuse")], processes=1)
    pool.stop()  # never started: nothing to do
    with pytest.raises(RuntimeError, match="cannot start a WorkerPool that is stopped"):
        pool.start()


def test_a_pool_over_a_bare_broker() -> None:
    broker = MemoryBroker()
    wf = fan(3, 0.0, "bare")
    with WorkerPool(broker, [wf], processes=2) as pool:
        assert pool.running
        run_id = broker.dispatch_workflow(wf.to_schema(), {})
        info = wait_done(broker, run_id)
        assert info.state is fl.Status.SUCCEEDED
        assert {s.result for s in info.steps.values()} <= set(pool.pids())
    assert not pool.running and "stopped" in repr(pool)


def test_a_worker_killed_while_holding_prefetched_steps_loses_none() -> None:
    wf = fan(300, 0.005, "prefetched")
    with fl.Session(workers=2, prefetch=4) as session:
        warm(session)
        seen: list[fl.workflow.events.Event] = []
        session.subscribe(seen.append)
        run = session.submit(wf, {"seconds": 0.005})
        end = time.monotonic() + 30
        while sum(e.kind == "step_finished" for e in seen) < 60 and time.monotonic() < end:
            time.sleep(0.005)
        os.kill(session.pool.pids()[0], signal.SIGKILL)
        run.wait(timeout=60)
        info = run.info()
        assert info.state is fl.Status.SUCCEEDED
        done = [e.step for e in seen if e.kind == "step_finished" and e.state is fl.Status.SUCCEEDED]
        # what the dead worker held went back to the queue (else the run would never end)
        assert sorted(done) == sorted(f"s{i}" for i in range(300))


def test_workers_exit_when_the_kernel_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "kernel.py"
    script.write_text(
        "import os, sys\nimport fuseline_nb as fl\n"
        "def nap() -> int:\n"
        "    return os.getpid()\n"
        "if __name__ == '__main__':\n"
        "    s = fl.Session(workers=2)\n"
        "    s.submit(fl.Workflow(outputs=[fl.FunctionStep(nap)])).wait(60)\n"
        "    print(*s.pool.pids(), flush=True)\n"
        "    s.submit(fl.Workflow(outputs=[fl.FunctionStep(lambda: __import__('time').sleep(60), name='busy')]))\n"
        "    __import__('time').sleep(0.5)  # a worker is now in the middle of a step\n"
        "    os._exit(0)  # no atexit, no close: as if the kernel were killed\n"
    )
    import subprocess

    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2, proc.stderr

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    end = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_heartbeats_keep_a_long_step_from_being_handed_out_again() -> None:
    with fl.Session(workers=2, lease_seconds=0.6) as session:
        run = session.submit(fan(1, 2.0, "long"), {"seconds": 2.0})
        assert isinstance(run.wait(timeout=30), int)
        step = run.info().steps["s0"]
        assert (step.state, step.attempts) == (fl.Status.SUCCEEDED, 1)


def test_workers_register_their_first_workflows_by_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh worker names the kernel's schema when it registers: the kernel never rebuilds a schema it shipped."""
    from fuseline_nb.workflow import schema as schema_module

    rebuilt: list[str] = []
    rebuild = schema_module._rebuild_schema

    def counting(workflow_id: str, *args: object) -> fl.WorkflowSchema:
        rebuilt.append(workflow_id)
        return rebuild(workflow_id, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(schema_module, "_rebuild_schema", counting)  # what unpickling a sent schema calls
    with fl.Session(workers=2) as s:
        run = s.submit(fan(4, 0.0, "by-ref"), {})
        run.wait(timeout=60)
        assert run.info().state is fl.Status.SUCCEEDED
        end = time.monotonic() + 60
        while len(s.broker.list_workers()) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        workers = s.broker.list_workers()
        assert len(workers) == 2 and all("by-ref@1" in w.workflows for w in workers), workers
    assert rebuilt == []


_RUN_HERE = [0]  # steps this worker process ran (the class below travels by value: one per process)


class FourthBlocks(fl.Step):
    """The fourth step a worker process runs waits for ``marker`` (after writing ``marker + '.busy'``)."""

    def run_step(self, marker: str) -> int:
        _RUN_HERE[0] += 1
        if _RUN_HERE[0] == 4:
            Path(marker + ".busy").write_text(str(os.getpid()))
            end = time.monotonic() + 60
            while not os.path.exists(marker) and time.monotonic() < end:
                time.sleep(0.01)
        return _RUN_HERE[0]


def test_a_held_report_reaches_the_kernel_while_a_long_step_runs_after_it(tmp_path: Path) -> None:
    """A quick step's report held back (more work in hand) is sent by the heartbeat, not after the next step.

    The root's report brings one child or a batch (the hint of what is
    queued may lag); either way the batch that the fourth step is in holds a
    quick step's report before it (``c0`` then ``c1`` held, or ``c0`` and
    ``c1`` both held), and both must reach the kernel while the fourth runs.
    """
    marker = str(tmp_path / "release")
    root = FourthBlocks(name="root")
    children = [FourthBlocks(name=f"c{i}") for i in range(8)]
    for c in children:
        root >> c
    wf = fl.Workflow(outputs=children, workflow_id="held")
    with fl.Session(workers=1, prefetch=4) as session:
        run = session.submit(wf, {"marker": marker})
        end = time.monotonic() + 60
        while not os.path.exists(marker + ".busy") and time.monotonic() < end:
            time.sleep(0.01)
        assert os.path.exists(marker + ".busy"), "the fourth step never started"
        # the second and third steps (quick) ended before the fourth began: no report may wait for it
        end = time.monotonic() + 10  # a heartbeat is at most 0.5 s
        while time.monotonic() < end:
            done = [n for n, s in run.info().steps.items() if n != "root" and s.state is fl.Status.SUCCEEDED]
            if len(done) >= 2:
                break
            time.sleep(0.02)
        assert len(done) == 2 and not os.path.exists(marker), done
        Path(marker).write_text("")
        run.wait(timeout=60)
        assert run.info().state is fl.Status.SUCCEEDED


class Touch(fl.Step):
    """Writes ``marker`` + its own name when it runs."""

    def run_step(self, marker: str) -> str:
        Path(f"{marker}.{self.name}").write_text("")
        return self.name


def test_a_worker_gets_its_next_step_before_the_brokers_listeners_hear_of_the_last(tmp_path: Path) -> None:
    """The channel answers inside ``deferred_events()``: a slow listener does not hold the chain up."""
    marker = str(tmp_path / "ran")
    a, b = Touch(name="a"), Touch(name="b")
    a >> b
    wf = fl.Workflow(outputs=[b], workflow_id="answer-first")
    seen: list[bool] = []

    def listener(event: Event) -> None:  # runs on the channel thread, after the worker's answer left
        if event.kind == "step_finished" and event.step == "a":
            end = time.monotonic() + 30
            while not os.path.exists(f"{marker}.b") and time.monotonic() < end:
                time.sleep(0.01)
            seen.append(os.path.exists(f"{marker}.b"))

    with fl.Session(workers=1) as session:
        session.broker.subscribe(listener)
        run = session.submit(wf, {"marker": marker})
        run.wait(timeout=60)
        assert run.info().state is fl.Status.SUCCEEDED
    assert seen == [True], "step b did not run while a listener held the event of a's end"
