"""Parity with Fuseline's "Batch workflows" page, corrected: its example passes
``task=`` (no such argument) and its BatchWorkflow ignores the list it is
given. Also the async batch variants, which always fail in Fuseline."""

from __future__ import annotations

import asyncio
import threading

import pytest

from fuseline_nb import (
    AsyncBatchStep,
    AsyncBatchWorkflow,
    AsyncParallelBatchStep,
    AsyncParallelBatchWorkflow,
    AsyncStep,
    AsyncWorkflow,
    BatchStep,
    BatchTask,
    BatchWorkflow,
    Depends,
    FunctionStep,
    PoolEngine,
    Status,
    Step,
    Workflow,
)
from fuseline_nb.errors import StepFailedError


class Echo(Step):
    def run_step(self, word: str) -> str:
        return word


def test_page_example_corrected_runs_once_per_parameter_set():
    batch = BatchWorkflow(outputs=[Echo()])
    assert batch.run([{"word": "hi"}, {"word": "bye"}]) == ["hi", "bye"]
    assert [r.inputs for r in batch.last_runs] == [{"word": "hi"}, {"word": "bye"}]
    assert batch.state is Status.SUCCEEDED


def test_batch_task_alias_and_batch_step_over_a_list_input():
    assert BatchTask is BatchStep

    class Shout(BatchTask):
        def run_step(self, word: str) -> str:
            return word.upper()

    assert Workflow(outputs=[Shout()]).run({"word": ["hi", "bye"]}) == ["HI", "BYE"]


def test_batch_step_over_a_dependency_with_other_parameters_fixed():
    def numbers(n: int) -> list[int]:
        return list(range(n))

    class Scale(BatchStep):
        batch_over = "x"

        def run_step(self, factor: int, x: int = Depends(numbers)) -> int:
            return factor * x

    assert Workflow(outputs=[Scale()]).run({"n": 4, "factor": 3}) == [0, 3, 6, 9]


def test_batch_step_legacy_form_iterates_setup_result():
    class Each(BatchStep):
        def setup(self, shared):
            return shared["items"]

        def run_step(self, setup_res):
            return setup_res * 2

    assert Workflow(outputs=[Each()]).run({"items": (1, 2)}) == [2, 4]


def test_batch_step_refuses_a_string_naming_step_and_parameter():
    class Shout(BatchStep):
        def run_step(self, word: str) -> str:
            return word.upper()

    wf = Workflow(outputs=[Shout()])
    wf.run({"word": "hi"})  # the misuse of Fuseline's page: one word is not a batch
    err = wf.last_run.steps["Shout"].error
    assert err.startswith("TypeError: batch step 'Shout': parameter 'word' must be a list")


def test_batch_workflow_runs_in_parallel_with_a_pool_engine_and_keeps_order():
    barrier = threading.Barrier(3, timeout=5)  # passes only if three runs overlap

    def meet(i: int) -> int:
        barrier.wait()
        return i

    wf = BatchWorkflow(outputs=[FunctionStep(meet)])
    assert wf.run([{"i": i} for i in range(3)], PoolEngine(3)) == [0, 1, 2]


def test_batch_workflow_failure_of_one_set_does_not_stop_the_others():
    def inv(x: float) -> float:
        return 1 / x

    wf = BatchWorkflow(outputs=[FunctionStep(inv)])
    assert wf.run([{"x": 2}, {"x": 0}, {"x": 4}]) == [0.5, None, 0.25]
    assert wf.state is Status.FAILED
    assert [r.state for r in wf.last_runs] == [Status.SUCCEEDED, Status.FAILED, Status.SUCCEEDED]
    with pytest.raises(StepFailedError):
        wf.run([{"x": 0}], raise_on_failure=True)


def test_batch_workflow_refuses_a_single_dict():
    with pytest.raises(TypeError, match="list of parameter sets"):
        BatchWorkflow(outputs=[Echo()]).run({"word": "hi"})  # type: ignore[arg-type]


class Nap(AsyncStep):
    async def run_step_async(self, s: float) -> float:
        await asyncio.sleep(s)
        return s


def test_async_batch_workflow_runs_and_keeps_order():
    wf = AsyncBatchWorkflow(outputs=[Nap()])
    assert asyncio.run(wf.run_async([{"s": 0.02}, {"s": 0.01}])) == [0.02, 0.01]
    assert wf.run([{"s": 0.0}]) == [0.0]  # and synchronously


def test_async_parallel_batch_workflow_overlaps_runs():
    wf = AsyncParallelBatchWorkflow(outputs=[Nap()])

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await wf.run_async([{"s": 0.2}] * 5)
        return out, loop.time() - t0

    out, elapsed = asyncio.run(main())
    assert out == [0.2] * 5
    assert elapsed < 0.6


def test_async_batch_steps_sequential_and_parallel():
    order = []

    class Seq(AsyncBatchStep):
        async def run_step_async(self, s: float) -> float:
            await asyncio.sleep(s)
            order.append(s)
            return s

    class Par(AsyncParallelBatchStep):
        async def run_step_async(self, s: float) -> float:
            await asyncio.sleep(s)
            order.append(s)
            return s

    items = {"s": [0.03, 0.01]}
    assert asyncio.run(AsyncWorkflow(outputs=[Seq()]).run_async(items)) == [0.03, 0.01]
    assert order == [0.03, 0.01]
    order.clear()
    assert asyncio.run(AsyncWorkflow(outputs=[Par()]).run_async(items)) == [0.03, 0.01]
    assert order == [0.01, 0.03]  # finished by time, returned by item
