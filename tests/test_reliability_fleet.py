"""Issue 18, the worker fleet: odd errors are step failures, a refused report never ends a worker
(real pool worker processes, real CLI workers on a real uvicorn service)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import fuseline_nb as fl
from fuseline_nb import Status
from tests import http_workflows as flows
from tests.test_http_service import Service, wait_run, wait_workers


class Custom(BaseException):
    """A BaseException of the user's own."""


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


def exits():
    raise SystemExit(3)


def interrupts():
    raise KeyboardInterrupt("from the step")


def custom():
    raise Custom("mine")


def str_raises():
    raise StrRaises()


CASES = [
    (exits, "SystemExit: 3"),
    (interrupts, "KeyboardInterrupt: from the step"),
    (custom, "Custom: mine"),
    (str_raises, "StrRaises: <str() of the StrRaises failed with RuntimeError: __str__ exploded>"),
]


@pytest.mark.slow
def test_base_exceptions_and_broken_str_are_step_failures_in_worker_processes(tmp_path) -> None:
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        for fn, error in CASES:
            once = fl.Workflow(outputs=[fl.FunctionStep(fn)], workflow_id=f"once-{fn.__name__}")
            retried = fl.Workflow(outputs=[fl.FunctionStep(fn, policies=[fl.RetryPolicy(2)])],
                                  workflow_id=f"twice-{fn.__name__}")
            for wf, attempts in ((once, 1), (retried, 2)):
                run = session.submit(wf)
                with pytest.raises(fl.StepFailedError) as info:
                    run.wait(timeout=60, raise_on_failure=True)
                assert info.value.failures == {fn.__name__: error}
                step = run.info().steps[fn.__name__]
                assert (step.state, step.attempts) == (Status.FAILED, attempts), wf.workflow_id
        assert session.sql("SELECT count(*) FROM steps WHERE error_message LIKE '%died%'").fetchall() == [(0,)]
        assert len(session.pool.pids()) == 1  # the same worker process, never a crash


@pytest.mark.parametrize(("fn", "error"), [c for c in CASES if c[0] is not interrupts])
def test_base_exceptions_and_broken_str_are_named_in_process(fn, error) -> None:
    wf = fl.Workflow(outputs=[fl.FunctionStep(fn)])
    with pytest.raises(fl.StepFailedError, match=f"{fn.__name__}: {error.split(':')[0]}:") as info:
        wf.run({}, raise_on_failure=True)
    assert info.value.failures == {fn.__name__: error}


def test_keyboard_interrupt_in_process_still_stops_the_run() -> None:
    wf = fl.Workflow(outputs=[fl.FunctionStep(interrupts)])
    with pytest.raises(KeyboardInterrupt, match="from the step"):
        wf.run({})


@pytest.mark.slow
def test_a_surrogate_in_an_error_text_never_kills_an_http_worker(tmp_path) -> None:
    service = Service(tmp_path)
    try:
        client = service.start_broker()
        workers = service._spawn("worker", "tests.http_workflows:surrogate_error", "tests.http_workflows:chain",
                                 "--broker", service.url, "--poll-wait", "1", log="worker.log")
        wait_workers(client, 1)
        for _ in range(2):
            info = wait_run(client, client.dispatch_workflow(flows.surrogate_error.to_schema(), {}))
            assert info.state is Status.FAILED
            assert info.steps["read"].error == "ValueError: bad report-\\udcff.csv"
            assert info.steps["read"].attempts == 1
        good = wait_run(client, client.dispatch_workflow(flows.chain.to_schema(), {"delay": 0}))
        assert good.state is Status.SUCCEEDED
        assert workers.poll() is None and len(client.list_workers()) == 1
        assert "Traceback" not in service.log("worker.log")
    finally:
        service.close()


def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_sigkilled_cli_worker_leaves_no_process_and_is_pruned(tmp_path) -> None:
    service = Service(tmp_path)
    try:
        client = service.start_broker("--lease-seconds", "1", "--worker-ttl", "3")
        supervisor = service.start_workers("tests.http_workflows:chain", processes=2)
        wait_workers(client, 2)
        kids = _children(supervisor.pid)
        assert len(kids) >= 2
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
        deadline = time.monotonic() + 20
        while any(_alive(k) for k in kids):
            assert time.monotonic() < deadline, f"worker processes {kids} outlived their supervisor"
            time.sleep(0.1)
        deadline = time.monotonic() + 20
        while client.list_workers():
            assert time.monotonic() < deadline, "the broker still lists the dead workers"
            time.sleep(0.2)
        assert "supervisor (pid" in service.log("worker.log")
    finally:
        service.close()


def _rebuild_refuses() -> None:
    raise ValueError("this class cannot be rebuilt here")


class Fragile:
    """Pickles in the worker; unpickling it anywhere raises."""

    def __reduce__(self):
        return (_rebuild_refuses, ())


def fragile():
    return Fragile()


class KernelOnly:
    """Pickles anywhere and rebuilds in a worker process; rebuilding it in the kernel (the main
    process) fails, as a class from a library only the workers have would."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self):
        return (_rebuild_in_workers_only, (self.n,))


def _rebuild_in_workers_only(n: int) -> KernelOnly:
    import multiprocessing

    if multiprocessing.parent_process() is None:
        raise ValueError("KernelOnly cannot be rebuilt in the kernel")
    return KernelOnly(n)


def make_kernel_only():
    return KernelOnly(1)


def use_it(x: KernelOnly = fl.Depends(make_kernel_only)) -> int:
    return x.n + 1


def use_fragile(x: Fragile = fl.Depends(fragile)) -> int:
    return 1


@pytest.mark.slow
@pytest.mark.parametrize("prefetch", [1, 4])
def test_a_result_the_kernel_cannot_unpickle_is_named_where_it_is_opened(tmp_path, prefetch) -> None:
    # The step and its consumer succeed once in the workers (results stay closed in the kernel);
    # opening the result in the notebook names the step, the type and the unpickling error.
    # No crash loop, no lease stall, the worker goes on.
    wf = fl.Workflow(outputs=[fl.FunctionStep(use_it), fl.FunctionStep(make_kernel_only)],
                     workflow_id="kernel-only")
    named = (r"the result of step 'make_kernel_only' of run \S+ \(a KernelOnly: .*\) cannot be unpickled "
             r"in this process: ValueError: KernelOnly cannot be rebuilt in the kernel \(import or define "
             r"KernelOnly here first")
    path = tmp_path / "h.duckdb"
    with fl.Session(path, workers=1, prefetch=prefetch) as session:
        started = time.monotonic()
        run = session.submit(wf)
        with pytest.raises(fl.errors.ValueLoadError, match=named):
            run.wait(timeout=60)
        assert time.monotonic() - started < 30
        with pytest.raises(ValueError, match=named):  # a ValueLoadError is a ValueError
            run.outputs()
        steps = run.info().steps
        with pytest.raises(fl.errors.ValueLoadError, match=named):
            steps["make_kernel_only"].result  # noqa: B018 - asking for the object opens the value
        assert steps["use_it"].result == 2  # the consuming worker opened it
        assert steps["make_kernel_only"].value.type_name == "KernelOnly"  # closed: no unpickling
        assert [(s.state, s.attempts) for s in steps.values()] == [(Status.SUCCEEDED, 1)] * 2
        pids = session.pool.pids()
        assert session.submit(_ok_flow()).wait(timeout=60) == 5  # the same worker goes on
        assert session.pool.pids() == pids
    with fl.Session(path, workers=0) as again:  # read back from the file: named the same way
        with pytest.raises(fl.errors.ValueLoadError, match=named):
            again.broker.get_run(run.id).steps["make_kernel_only"].result  # noqa: B018


@pytest.mark.slow
def test_a_consumer_that_cannot_unpickle_its_input_fails_once_naming_the_upstream_step(tmp_path) -> None:
    # Its retries would read the same bytes: the RetryPolicy does not apply, the worker survives.
    consumer = fl.FunctionStep(use_fragile, policies=[fl.workflow.policies.RetryPolicy(max_retries=3)])
    wf = fl.Workflow(outputs=[consumer], workflow_id="fragile-input")
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        pids = session.pool.pids()
        started = time.monotonic()
        run = session.submit(wf)
        with pytest.raises(fl.StepFailedError, match=r"use_fragile"):
            run.wait(timeout=60, raise_on_failure=True)
        assert time.monotonic() - started < 30
        step = run.info().steps["use_fragile"]
        assert (step.state, step.attempts) == (Status.FAILED, 1)
        assert step.error is not None and step.error.startswith("ValueLoadError: the result of step 'fragile' (a "
                                                                "Fragile: ")
        assert "cannot be unpickled in this process: ValueError: this class cannot be rebuilt here" in step.error
        assert run.info().steps["fragile"].state is Status.SUCCEEDED
        assert session.submit(_ok_flow()).wait(timeout=60) == 5
        assert session.pool.pids() == pids  # no crash, no restart


def _five():
    return 5


def _ok_flow() -> fl.Workflow:
    return fl.Workflow(outputs=[fl.FunctionStep(_five)], workflow_id="five")


class _AsyncRaises(fl.AsyncStep):
    """An async step raising what ``raise_it`` names."""

    def __init__(self, raise_it: BaseException, name: str) -> None:
        super().__init__(name=name)
        self.raise_it = raise_it

    async def run_step_async(self) -> None:
        raise self.raise_it


@pytest.mark.parametrize(("raised", "error"), [(SystemExit(3), "SystemExit: 3"), (Custom("mine"), "Custom: mine"),
                                               (StrRaises(), CASES[3][1])])
def test_base_exceptions_are_step_failures_of_async_steps_too(raised, error) -> None:
    import asyncio

    wf = fl.AsyncWorkflow(outputs=[_AsyncRaises(raised, "boom"), fl.FunctionStep(lambda: 1, name="fine")])
    assert asyncio.run(wf.run_async({})) is None  # a failed run, not an escaped SystemExit
    assert wf.last_run.steps["boom"].state is Status.FAILED
    assert wf.last_run.steps["boom"].error == error
    assert wf.last_run.steps["fine"].state is Status.SUCCEEDED
