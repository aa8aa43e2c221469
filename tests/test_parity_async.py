"""Parity with Fuseline's "Asynchronous steps" page, plus what it promised but
never delivered: running inside an already running loop (Jupyter), sync and
async steps mixed, async steps on broker workers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fuseline_nb import (
    AsyncStep,
    AsyncTask,
    AsyncWorkflow,
    Depends,
    FunctionStep,
    PoolEngine,
    Status,
    Step,
    StepTimeoutPolicy,
    Workflow,
)
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker import ProcessEngine
from fuseline_nb.workflow.policies import RetryPolicy


def test_page_example_prints_hello(capsys):
    class AsyncHello(AsyncStep):
        async def run_step_async(self, _setup_res):
            await asyncio.sleep(0.01)
            print("hello")

    async def main():
        step = AsyncHello()
        wf = AsyncWorkflow(outputs=[step])
        await wf.run_async()
        return wf

    wf = asyncio.run(main())
    assert capsys.readouterr().out == "hello\n"
    assert wf.state is Status.SUCCEEDED
    assert AsyncTask is AsyncStep


class Fetch(AsyncStep):
    async def run_step_async(self, n: int) -> int:
        await asyncio.sleep(0.01)
        return n * 10


class Plus(Step):
    def run_step(self, v: int = Depends(Fetch)) -> int:
        return v + 1


class Finish(AsyncStep):
    async def run_step_async(self, v: int = Depends(Plus)) -> str:
        return f"got {v}"


def test_sync_and_async_steps_mix_in_both_loops():
    wf = AsyncWorkflow(outputs=[Finish()])
    assert asyncio.run(wf.run_async({"n": 2})) == "got 21"
    assert wf.run({"n": 3}) == "got 31"
    assert {s.state for s in wf.steps.values()} == {Status.SUCCEEDED}


def test_run_async_inside_an_already_running_loop_like_jupyter():
    wf = AsyncWorkflow(outputs=[Finish()])

    async def cell():  # a notebook cell: the loop is running, asyncio.run is forbidden
        assert asyncio.get_running_loop().is_running()
        first = await wf.run_async({"n": 1})
        second = wf.run({"n": 4})  # sync run from inside the loop: helper-thread loop
        return first, second

    assert asyncio.run(cell()) == ("got 11", "got 41")


def test_ready_async_steps_run_concurrently_and_sync_steps_do_not_block_the_loop():
    class Nap(AsyncStep):
        async def run_step_async(self, s: float) -> float:
            await asyncio.sleep(s)
            return s

    class Blocking(Step):
        def run_step(self, s: float) -> str:
            time.sleep(s)
            return threading.current_thread().name

    naps = [Nap(name=f"nap{i}") for i in range(5)]
    blocking = Blocking()
    wf = AsyncWorkflow(outputs=[*naps, blocking])

    ticks = []

    async def main():
        async def ticker():
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        out = await wf.run_async({"s": 0.2})
        t.cancel()
        return out, time.perf_counter() - t0

    out, elapsed = asyncio.run(main())
    assert out[:5] == [0.2] * 5
    assert out[5] != threading.main_thread().name  # the sync step ran on a helper thread
    assert elapsed < 0.2 * 5  # naps overlapped
    assert len(ticks) >= 5  # the loop kept turning while the sync step slept


def test_pool_engine_caps_steps_running_at_once():
    running, peak = [0], [0]

    class Count(AsyncStep):
        async def run_step_async(self, _setup_res):
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            await asyncio.sleep(0.02)
            running[0] -= 1

    wf = AsyncWorkflow(outputs=[Count(name=f"c{i}") for i in range(6)])
    asyncio.run(wf.run_async({}, PoolEngine(2)))
    assert peak[0] == 2


def test_async_hooks_run_in_order_even_when_the_step_fails():
    calls = []

    class Hooked(AsyncStep):
        async def before_all_async(self, shared):
            calls.append("before_all")

        async def setup_async(self, shared):
            calls.append("setup")
            return 5

        async def run_step_async(self, setup_res):
            calls.append(f"run {setup_res}")
            if shared_fail[0]:
                raise RuntimeError("boom")
            return setup_res

        async def teardown_async(self, shared, setup_res, exec_res):
            calls.append("teardown")
            return exec_res * 2

        async def after_all_async(self, shared):
            calls.append("after_all")

    shared_fail = [False]
    wf = AsyncWorkflow(outputs=[Hooked()])
    assert asyncio.run(wf.run_async()) == 10
    assert calls == ["before_all", "setup", "run 5", "teardown", "after_all"]
    calls.clear()
    shared_fail[0] = True
    assert asyncio.run(wf.run_async()) is None
    assert wf.state is Status.FAILED
    assert calls == ["before_all", "setup", "run 5", "after_all"]


def test_async_retries_and_timeouts_use_execute_async():
    attempts = []

    class Flaky(AsyncStep):
        async def run_step_async(self, _setup_res):
            attempts.append(1)
            if len(attempts) < 3:
                raise ValueError("not yet")
            return "ok"

    wf = AsyncWorkflow(outputs=[Flaky(policies=[RetryPolicy(max_retries=3)])])
    assert asyncio.run(wf.run_async()) == "ok"
    assert wf.last_run.steps["Flaky"].attempts == 3

    class Hang(AsyncStep):
        async def run_step_async(self, _setup_res):
            await asyncio.sleep(10)

    wf2 = AsyncWorkflow(outputs=[Hang(policies=[StepTimeoutPolicy(0.1)])])
    t0 = time.perf_counter()
    asyncio.run(wf2.run_async())
    assert time.perf_counter() - t0 < 2
    assert wf2.last_run.steps["Hang"].error == "TimeoutError: step exceeded 0.1 s"


def test_cancelling_run_async_cancels_running_steps_and_runs_after_all():
    cancelled, finished = [], []

    class Hang(AsyncStep):
        async def run_step_async(self, _setup_res):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        async def after_all_async(self, shared):
            finished.append(True)

    wf = AsyncWorkflow(outputs=[Hang()])

    async def main():
        task = asyncio.create_task(wf.run_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)

    asyncio.run(main())
    assert cancelled == [True] and finished == [True]


def test_async_step_runs_on_a_broker_worker():
    wf = AsyncWorkflow(outputs=[Finish()], workflow_id="async-worker")
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client, {"n": 7})
    ProcessEngine(client, [wf]).work()
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED
    assert info.steps["Finish"].result == "got 71"


def test_a_plain_workflow_runs_async_steps_synchronously():
    assert Workflow(outputs=[Finish()]).run({"n": 0}) == "got 1"


@pytest.mark.slow
def test_await_run_async_in_a_real_jupyter_kernel():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [
        "import asyncio\n"
        "from fuseline_nb import AsyncStep, AsyncWorkflow, Depends, Step\n"
        "class Fetch(AsyncStep):\n"
        "    async def run_step_async(self, n: int) -> int:\n"
        "        await asyncio.sleep(0.01)\n"
        "        return n + 1\n"
        "class Show(Step):\n"
        "    def run_step(self, v: int = Depends(Fetch)) -> str:\n"
        "        return f'value={v}'\n"
        "wf = AsyncWorkflow(outputs=[Show()])",
        "out = await wf.run_async({'n': 41})\nprint(out)",
        "print(wf.run({'n': 1}))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    texts = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells]
    assert texts[1] == "value=42\n"
    assert texts[2] == "value=2\n"


def test_function_step_of_an_async_function_runs_it():
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        return n + 1

    wf = AsyncWorkflow(outputs=[FunctionStep(fetch)])
    assert wf.run({"n": 1}) == 2
    assert asyncio.run(wf.run_async({"n": 2})) == 3


def test_import_fuseline_nb_does_not_import_asyncio_or_yaml():
    import subprocess
    import sys

    code = "import sys, fuseline_nb; print('asyncio' in sys.modules, 'yaml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_async_steps_run_in_worker_processes():
    pool_mod = pytest.importorskip("fuseline_nb.worker.pool")
    import os

    class Pid(AsyncStep):
        async def run_step_async(self, n: int) -> tuple[int, int]:
            await asyncio.sleep(0.01)
            return n, os.getpid()

    wf = AsyncWorkflow(outputs=[Pid()], workflow_id="async-procs")
    broker = MemoryBroker()
    with pool_mod.WorkerPool(broker, [wf], processes=1):
        run_ids = [wf.dispatch(broker, {"n": n}) for n in (1, 2)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            broker.get_run(r).state is Status.RUNNING for r in run_ids
        ):
            time.sleep(0.05)
    results = [broker.get_run(r).steps["Pid"].result for r in run_ids]
    assert [r[0] for r in results] == [1, 2]
    assert all(r[1] != os.getpid() for r in results)
