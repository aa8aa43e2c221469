"""Batches: a step over many items, a workflow over many parameter sets.

* :class:`BatchStep` calls ``run_step`` once per item of one iterable
  parameter and returns the list of results.
* :class:`BatchWorkflow` runs the whole workflow once per parameter set and
  returns the outputs in order; with ``PoolEngine(n)`` up to ``n`` runs go
  at once on threads.
* The async variants: :class:`AsyncBatchStep` (items one after another),
  :class:`AsyncParallelBatchStep` (items concurrently),
  :class:`AsyncBatchWorkflow` and :class:`AsyncParallelBatchWorkflow`
  (``await wf.run_async([...])``). Fuseline's async batch workflows always
  fail; these run.

Every run of a batch workflow is a separate run with its own inputs: no
parameter of one set leaks into the next.

Examples
--------
>>> from fuseline_nb import BatchStep, BatchWorkflow, Step
>>> class Shout(BatchStep):
...     def run_step(self, word: str) -> str:
...         return word.upper()
>>> from fuseline_nb import Workflow
>>> Workflow(outputs=[Shout()]).run({"word": ["hi", "bye"]})
['HI', 'BYE']
>>> class Echo(Step):
...     def run_step(self, word: str) -> str:
...         return word
>>> BatchWorkflow(outputs=[Echo()]).run([{"word": "hi"}, {"word": "bye"}])
['hi', 'bye']
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..workflow.graph import Workflow
from ..workflow.runinfo import RunResult
from ..workflow.status import Status
from ..workflow.steps import Step
from .asynchronous import AsyncStep, AsyncWorkflow, run_local_async
from .local import run_local


def _items(step: Step, binding: Any, kwargs: dict[str, Any], setup_res: Any) -> tuple[str | None, list[Any]]:
    """The parameter to iterate over (``None``: the legacy ``setup_res`` form) and its items."""
    if binding.legacy:
        param, value = None, setup_res
    else:
        names = [p.name for p in binding.params]
        param = getattr(step, "batch_over", None) or (names[0] if names else None)
        if param is None or param not in kwargs:
            raise TypeError(
                f"{type(step).__name__}.{step._entry} has no parameter "
                f"{param!r} to iterate over (parameters: {names}); set batch_over"
            )
        value = kwargs[param]
    what = f"parameter {param!r}" if param else "setup()'s result"
    if value is None:
        return param, []
    if isinstance(value, (str, bytes, Mapping)):
        raise TypeError(
            f"batch step {step.name!r}: {what} must be a list (or other iterable) of items, "
            f"not {type(value).__name__} {value!r:.60}"
        )
    try:
        return param, list(value)
    except TypeError:
        raise TypeError(
            f"batch step {step.name!r}: {what} must be iterable, not {type(value).__name__}"
        ) from None


class BatchStep(Step):
    """A step that calls ``run_step`` once per item and returns the list of results.

    The iterated parameter is ``batch_over`` (a class attribute) or, by
    default, the first parameter of ``run_step``; it receives one item per
    call, the other parameters the same value every time. In the legacy form
    ``run_step(self, setup_res)`` the items are what ``setup(shared)`` returns.
    A string or a dict is refused: it is one value, not a batch.

    Examples
    --------
    >>> from fuseline_nb import Workflow
    >>> class Scale(BatchStep):
    ...     batch_over = "x"
    ...     def run_step(self, factor: int, x: int) -> int:
    ...         return factor * x
    >>> Workflow(outputs=[Scale()]).run({"factor": 10, "x": [1, 2, 3]})
    [10, 20, 30]
    """

    kind = "batch"
    #: Name of the parameter whose value is iterated (default: the first one).
    batch_over: str | None = None

    def _call(self, binding: Any, kwargs: dict[str, Any], setup_res: Any) -> Any:
        param, items = _items(self, binding, kwargs, setup_res)
        if param is None:
            return [self.run_step(item) for item in items]
        return [self.run_step(**{**kwargs, param: item}) for item in items]


class AsyncBatchStep(AsyncStep):
    """An :class:`AsyncStep` awaiting ``run_step_async`` once per item, one after another.

    Items are chosen as in :class:`BatchStep`.

    Examples
    --------
    >>> import asyncio
    >>> from fuseline_nb import AsyncWorkflow
    >>> class Twice(AsyncBatchStep):
    ...     async def run_step_async(self, n: int) -> int:
    ...         return 2 * n
    >>> asyncio.run(AsyncWorkflow(outputs=[Twice()]).run_async({"n": [1, 2]}))
    [2, 4]
    """

    kind = "batch"
    batch_over: str | None = None

    async def _call_async(self, binding: Any, kwargs: dict[str, Any], setup_res: Any) -> Any:
        param, items = _items(self, binding, kwargs, setup_res)
        if param is None:
            return [await self.run_step_async(item) for item in items]
        return [await self.run_step_async(**{**kwargs, param: item}) for item in items]


class AsyncParallelBatchStep(AsyncBatchStep):
    """Like :class:`AsyncBatchStep`, but all items are awaited concurrently (results in item order).

    Examples
    --------
    >>> import asyncio
    >>> from fuseline_nb import AsyncWorkflow
    >>> class Ping(AsyncParallelBatchStep):
    ...     async def run_step_async(self, host: str) -> str:
    ...         await asyncio.sleep(0.01)
    ...         return f"{host} ok"
    >>> asyncio.run(AsyncWorkflow(outputs=[Ping()]).run_async({"host": ["a", "b"]}))
    ['a ok', 'b ok']
    """

    async def _call_async(self, binding: Any, kwargs: dict[str, Any], setup_res: Any) -> Any:
        param, items = _items(self, binding, kwargs, setup_res)
        if param is None:
            calls = [self.run_step_async(item) for item in items]
        else:
            calls = [self.run_step_async(**{**kwargs, param: item}) for item in items]
        return list(await asyncio.gather(*calls))


def _param_sets(param_sets: Any) -> list[dict[str, Any]]:
    if param_sets is None:
        return []
    if isinstance(param_sets, Mapping):
        raise TypeError(
            "a batch workflow runs a list of parameter sets, not one dict: "
            "pass [params, ...] (or use Workflow.run for a single run)"
        )
    sets = list(param_sets)
    for i, p in enumerate(sets):
        if not isinstance(p, Mapping):
            raise TypeError(f"parameter set #{i} must be a dict of inputs, not {type(p).__name__} {p!r:.60}")
    return [dict(p) for p in sets]


def _settle(wf: Workflow, runs: list[RunResult], raise_on_failure: bool) -> list[Any]:
    wf.__dict__["_last_runs"] = runs
    if runs:
        wf.__dict__["_last_run"] = runs[-1]
    wf.state = Status.FAILED if any(r.state is Status.FAILED for r in runs) else Status.SUCCEEDED
    if raise_on_failure:
        for r in runs:
            r.raise_for_failure()
    # as wf.run: a failed run gives None; its partial outputs stay in last_runs[i].outputs
    return [None if r.state is Status.FAILED else r.outputs for r in runs]


class BatchWorkflow(Workflow):
    """A :class:`Workflow` run once per parameter set: ``wf.run([params, ...])``.

    Returns the list of each run's outputs, in the order of the parameter
    sets. With ``PoolEngine(n)`` (as ``execution_engine``) up to ``n`` runs go
    at once on threads; each run's steps then run one after another. Runs are
    independent: each has its own inputs, results and states.
    :attr:`last_runs` holds every run's :class:`RunResult`; :attr:`state` is
    FAILED if any run failed.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, PoolEngine
    >>> def square(x: int) -> int:
    ...     return x * x
    >>> wf = BatchWorkflow(outputs=[FunctionStep(square)])
    >>> wf.run([{"x": 1}, {"x": 2}, {"x": 3}], PoolEngine(2))
    [1, 4, 9]
    >>> [r.state.value for r in wf.last_runs]
    ['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']
    """

    def run(  # type: ignore[override]
        self,
        inputs: Iterable[Mapping[str, Any]] | None = None,
        execution_engine: Any = None,
        *,
        raise_on_failure: bool = False,
    ) -> list[Any]:
        """Run once per parameter set in ``inputs``; return the outputs in order."""
        sets = _param_sets(inputs)
        engine = execution_engine or self.execution_engine
        workers = min(getattr(engine, "processes", 1), len(sets))
        if workers <= 1:
            runs = [run_local(self, p) for p in sets]
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="fuseline-batch") as pool:
                runs = list(pool.map(lambda p: run_local(self, p), sets))
        return _settle(self, runs, raise_on_failure)

    @property
    def last_runs(self) -> list[RunResult]:
        """The :class:`RunResult` of each run of the latest batch, in order."""
        return list(self.__dict__.get("_last_runs", ()))


class AsyncBatchWorkflow(BatchWorkflow, AsyncWorkflow):
    """A batch workflow that can be awaited; the runs go one after another.

    ``run`` (synchronous) behaves as in :class:`BatchWorkflow`.

    Examples
    --------
    >>> import asyncio
    >>> from fuseline_nb import FunctionStep
    >>> wf = AsyncBatchWorkflow(outputs=[FunctionStep(lambda n: n + 1, name="inc")])
    >>> asyncio.run(wf.run_async([{"n": 1}, {"n": 2}]))
    [2, 3]
    """

    async def run_async(  # type: ignore[override]
        self,
        inputs: Iterable[Mapping[str, Any]] | None = None,
        execution_engine: Any = None,
        *,
        raise_on_failure: bool = False,
    ) -> list[Any]:
        """Await one run per parameter set, in order; return the outputs in order."""
        engine = execution_engine or self.execution_engine
        runs = [await run_local_async(self, p, engine) for p in _param_sets(inputs)]
        return _settle(self, runs, raise_on_failure)


class AsyncParallelBatchWorkflow(AsyncBatchWorkflow):
    """Like :class:`AsyncBatchWorkflow`, but the runs are awaited concurrently.

    Examples
    --------
    >>> import asyncio
    >>> class Wait(AsyncStep):
    ...     async def run_step_async(self, s: float) -> float:
    ...         await asyncio.sleep(s)
    ...         return s
    >>> wf = AsyncParallelBatchWorkflow(outputs=[Wait()])
    >>> asyncio.run(wf.run_async([{"s": 0.02}, {"s": 0.01}]))
    [0.02, 0.01]
    """

    async def run_async(  # type: ignore[override]
        self,
        inputs: Iterable[Mapping[str, Any]] | None = None,
        execution_engine: Any = None,
        *,
        raise_on_failure: bool = False,
    ) -> list[Any]:
        """Await one run per parameter set concurrently; return the outputs in order."""
        engine = execution_engine or self.execution_engine
        runs = await asyncio.gather(*(run_local_async(self, p, engine) for p in _param_sets(inputs)))
        return _settle(self, list(runs), raise_on_failure)


#: Fuseline's older names.
BatchTask = BatchStep
AsyncBatchTask = AsyncBatchStep
AsyncParallelBatchTask = AsyncParallelBatchStep

__all__ = [
    "AsyncBatchStep",
    "AsyncBatchTask",
    "AsyncBatchWorkflow",
    "AsyncParallelBatchStep",
    "AsyncParallelBatchTask",
    "AsyncParallelBatchWorkflow",
    "BatchStep",
    "BatchTask",
    "BatchWorkflow",
]
