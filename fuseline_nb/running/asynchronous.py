"""Async steps and the async run loop: :class:`AsyncStep`, :class:`AsyncWorkflow`.

``await wf.run_async(inputs)`` drives a run on the *caller's* event loop, so
it works inside Jupyter (whose kernel already runs a loop; ``asyncio.run``
would refuse). Ready async steps run concurrently as tasks on that loop;
plain steps run on a helper thread so they never block it. The bookkeeping
(readiness, states, events, hooks) is the one ``wf.run`` uses
(:class:`~fuseline_nb.running.local._LocalRun`), so both loops end in the
same states.

Where no loop is available to await on — ``wf.run()``, a ``ProcessEngine``
worker — an async step runs its coroutine with ``asyncio.run``; if the
calling thread already runs a loop (sync ``wf.run()`` called in a notebook
cell), the coroutine runs on a fresh loop in a helper thread instead.

Examples
--------
>>> import asyncio
>>> from fuseline_nb import AsyncStep, AsyncWorkflow, Depends, Step
>>> class Fetch(AsyncStep):
...     async def run_step_async(self, url: str) -> str:
...         await asyncio.sleep(0)
...         return f"<page {url}>"
>>> class Size(Step):  # a plain step fed by an async one
...     def run_step(self, page: str = Depends(Fetch)) -> int:
...         return len(page)
>>> wf = AsyncWorkflow(outputs=[Size()])
>>> asyncio.run(wf.run_async({"url": "a"}))
8
>>> wf.run({"url": "bb"})  # the same workflow, run synchronously
9
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..workflow.coro import run_coro
from ..workflow.graph import Workflow, run_inputs
from ..workflow.policies import StepPolicy
from ..workflow.status import Status
from ..workflow.steps import Step, step_policies
from .execute import Attempt, StepInterrupt, StepOutcome, retry_delay
from .local import PoolEngine, _LocalRun, _Loop, check_engine

if TYPE_CHECKING:
    from ..workflow.runinfo import RunResult

log = logging.getLogger(__name__)


class AsyncStep(Step):
    """A step whose work is a coroutine: implement ``async def run_step_async``.

    Its parameters are bound like ``run_step``'s (inputs by name,
    ``Depends(...)`` defaults, or the legacy ``run_step_async(self,
    setup_res)``). Async hooks, all optional: ``before_all_async(shared)``,
    ``setup_async(shared)``, ``teardown_async(shared, setup_res, exec_res)``
    (a non-``None`` return replaces the result) and ``after_all_async(shared)``.
    Step policies wrap each attempt with ``execute_async`` in
    :meth:`AsyncWorkflow.run_async`, and with ``execute`` where the step runs
    synchronously (``wf.run()``, workers).

    Examples
    --------
    >>> import asyncio
    >>> class Hello(AsyncStep):
    ...     async def run_step_async(self, who: str) -> str:
    ...         return f"hello {who}"
    >>> asyncio.run(Hello().run_step_async("you"))
    'hello you'
    >>> Hello().kind
    'async'
    """

    kind = "async"
    _entry = "run_step_async"

    async def before_all_async(self, shared: dict[str, Any]) -> None:
        """Called once before the workflow starts."""

    async def setup_async(self, shared: dict[str, Any]) -> Any:
        """Called before each attempt; its value reaches :meth:`teardown_async`."""

    async def run_step_async(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work. Override with named parameters; the return value is the result."""
        raise TypeError(f"{type(self).__name__} must implement async def run_step_async()")

    async def teardown_async(self, shared: dict[str, Any], setup_res: Any, exec_res: Any) -> Any:
        """Called after each successful attempt."""

    async def after_all_async(self, shared: dict[str, Any]) -> None:
        """Called once after the workflow finished, whatever its state."""

    # Synchronous drivers (wf.run, workers) reach the async hooks through these.
    def before_all(self, shared: dict[str, Any]) -> None:
        run_coro(self.before_all_async(shared))

    def after_all(self, shared: dict[str, Any]) -> None:
        run_coro(self.after_all_async(shared))

    def _invoke(self, binding: Any, kwargs: dict[str, Any], shared: dict[str, Any]) -> Any:
        return run_coro(self._invoke_async(binding, kwargs, shared))

    async def _invoke_async(self, binding: Any, kwargs: dict[str, Any], shared: dict[str, Any]) -> Any:
        setup_res = await self.setup_async(shared)
        result = await self._call_async(binding, kwargs, setup_res)
        replaced = await self.teardown_async(shared, setup_res, result)
        return result if replaced is None else replaced

    async def _call_async(self, binding: Any, kwargs: dict[str, Any], setup_res: Any) -> Any:
        if binding.legacy:
            return await self.run_step_async(setup_res)
        return await self.run_step_async(**kwargs)


async def attempt_async(
    wf: Workflow,
    name: str,
    inputs: Mapping[str, Any],
    results: Mapping[str, Any],
    winners: Mapping[str, str],
    retry: int = 0,
) -> StepOutcome:
    """Await one attempt of async step ``name`` with its policies' ``execute_async``; never raises.

    The async shell of :class:`~fuseline_nb.running.execute.Attempt` (the sync one is
    :func:`~fuseline_nb.running.execute.attempt`). As there, whatever the step raises is its
    failure, ``BaseException`` too; only ``KeyboardInterrupt`` (Ctrl-C stops the run), a
    :class:`~fuseline_nb.running.execute.StepInterrupt` and the task's own cancellation pass through.
    """
    step = wf.steps[name]
    if not isinstance(step, AsyncStep):
        raise TypeError(f"step {name!r} is not an AsyncStep")
    a = Attempt(wf, name, inputs, results, winners, retry)
    done = a.begin()
    if done is not None:
        return done
    try:
        result = await a.wrapped(lambda: step._invoke_async(a.binding, a.kwargs, a.shared), "execute_async")()
    except (KeyboardInterrupt, StepInterrupt, asyncio.CancelledError):
        raise
    except BaseException as exc:  # the outcome carries it (SystemExit, a custom BaseException...)
        return a.failed(exc)
    return a.succeeded(result)


async def attempt_with_retries_async(
    wf: Workflow,
    name: str,
    inputs: Mapping[str, Any],
    results: Mapping[str, Any],
    winners: Mapping[str, str],
) -> tuple[StepOutcome, int]:
    """Await ``name`` until it succeeds or its policies stop retrying; return (outcome, attempts)."""
    step = wf.steps[name]
    policies = [p for p in step_policies(step) if isinstance(p, StepPolicy)]
    n = 0
    while True:
        out = await attempt_async(wf, name, inputs, results, winners, n)
        n += 1
        delay = retry_delay(step, policies, out, n)
        if delay is None:
            return out, n
        await asyncio.sleep(delay)


async def _execute(run: _LocalRun, name: str, pool: ThreadPoolExecutor, limit: asyncio.Semaphore | None,
                   done: asyncio.Queue[tuple[str, StepOutcome, int]]) -> None:
    wf = run.wf
    async with limit if limit is not None else contextlib.nullcontext():
        try:
            step = wf.steps[name]
            if isinstance(step, AsyncStep):  # its attempts between its own hooks, as run.execute does
                try:
                    await step.before_all_async(run.shared)
                except Exception as exc:  # the step fails; its after_all is not called
                    out, n = StepOutcome.from_exception(exc, time.time()), 1
                else:
                    try:
                        out, n = await attempt_with_retries_async(
                            wf, name, run.inputs, run.results, run.tracker.winners(name))
                    finally:
                        try:
                            await step.after_all_async(run.shared)
                        except Exception:
                            log.exception("after_all of step %r failed", step.name)
            else:
                loop = asyncio.get_running_loop()
                out, n = await loop.run_in_executor(pool, run.execute, name)
        except Exception as exc:  # attempt never raises; this is a safety net
            out, n = StepOutcome.from_exception(exc, time.time()), 1
    done.put_nowait((name, out, n))


async def run_local_async(wf: Workflow, inputs: dict[str, Any],
                          engine: PoolEngine | None = None) -> RunResult:
    """Run ``wf`` on the running event loop; return a :class:`RunResult`.

    ``engine=PoolEngine(n)`` caps the steps running at once at ``n`` and runs
    plain steps on ``n`` threads; without it async steps are not capped and
    plain steps run one at a time on a helper thread.
    """
    check_engine(engine)
    wf.to_schema().check_inputs(inputs)
    run = _LocalRun(wf, inputs)
    run.begin()
    limit = asyncio.Semaphore(engine.processes) if engine is not None else None
    pool = ThreadPoolExecutor(engine.processes if engine else 1, thread_name_prefix="fuseline-async")
    # Outcomes come back through a queue, in completion order: asyncio.wait()
    # over every running task would cost O(running) per completion.
    done: asyncio.Queue[tuple[str, StepOutcome, int]] = asyncio.Queue()
    running: set[asyncio.Task[None]] = set()
    try:
        loop = _Loop(run, capacity=1 << 62)  # the semaphore caps the steps running at once
        while loop.active:
            for name in loop.to_start():
                task = asyncio.create_task(_execute(run, name, pool, limit, done))
                running.add(task)
                task.add_done_callback(running.discard)
            loop.done(*await done.get())
    finally:
        for task in list(running):  # only when the caller was cancelled mid-run
            task.cancel()
        pool.shutdown(wait=False)
    return run.end()


class AsyncWorkflow(Workflow):
    """A :class:`Workflow` that can also be awaited: ``await wf.run_async(inputs)``.

    Async and plain steps mix freely; the readiness rules, states, events and
    hooks are those of :meth:`Workflow.run` (which still works, running async
    steps with ``asyncio.run``).

    Examples
    --------
    >>> import asyncio
    >>> from fuseline_nb import FunctionStep
    >>> class Slow(AsyncStep):
    ...     async def run_step_async(self, n: int) -> int:
    ...         await asyncio.sleep(0.01)
    ...         return n
    >>> a, b = Slow(name="a"), Slow(name="b")
    >>> wf = AsyncWorkflow(outputs=[a, b])
    >>> asyncio.run(wf.run_async({"n": 3}))
    [3, 3]
    """

    async def run_async(
        self,
        inputs: Mapping[str, Any] | None = None,
        execution_engine: Any = None,
        *,
        raise_on_failure: bool = False,
    ) -> Any:
        """Await a run on the current event loop; return the outputs as :meth:`run` does.

        Works inside Jupyter's running loop (``await wf.run_async(...)`` in a
        cell). Cancelling the awaiting task cancels the steps still running.
        """
        engine = execution_engine or self.execution_engine
        result = await run_local_async(self, run_inputs(inputs), engine=engine)
        self.workflow_instance_id = result.run_id
        if raise_on_failure:
            result.raise_for_failure()
        return None if result.state is Status.FAILED else result.outputs


#: Fuseline's older name.
AsyncTask = AsyncStep

__all__ = [
    "AsyncStep",
    "AsyncTask",
    "AsyncWorkflow",
    "attempt_async",
    "attempt_with_retries_async",
    "run_coro",
    "run_local_async",
]
