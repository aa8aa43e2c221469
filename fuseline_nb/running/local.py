"""In-process execution: ``wf.run`` and :class:`PoolEngine`.

The loop asks :class:`~fuseline_nb.workflow.rules.Readiness` what is ready,
runs it (in this thread, or on up to ``n`` threads with ``PoolEngine(n)``),
and feeds each outcome back in completion order — the same rules the brokers
use, so both paths end in the same states.

Examples
--------
>>> from fuseline_nb import FunctionStep, PoolEngine, Workflow
>>> def one() -> int:
...     return 1
>>> wf = Workflow(outputs=[FunctionStep(one)])
>>> wf.run(execution_engine=PoolEngine(2))
1
>>> wf.state
<Status.SUCCEEDED: 'SUCCEEDED'>
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import UnknownActionError
from ..workflow.events import Event, EventHub
from ..workflow.graph import install_local_runner
from ..workflow.policies import WorkflowPolicy
from ..workflow.rules import Outcome, Readiness, resolve_action
from ..workflow.runinfo import RunResult, StepInfo
from ..workflow.status import SKIP_CONDITION, Status
from ..workflow.value import preview
from .execute import StepOutcome, attempt_with_retries
from .tracing import TraceSubscriber, as_tracer

if TYPE_CHECKING:
    from ..workflow.graph import Workflow

log = logging.getLogger(__name__)


class PoolEngine:
    """Run up to ``processes`` ready steps at once on threads.

    Every ready step is started as soon as a thread is free (never
    "sequential beyond n"). ``PoolEngine(1)`` runs steps one at a time in a
    helper thread; ``wf.run()`` without an engine runs them in the caller.

    Examples
    --------
    >>> PoolEngine(4).processes
    4
    >>> PoolEngine(0)
    Traceback (most recent call last):
    ValueError: PoolEngine needs processes >= 1, not 0
    """

    def __init__(self, processes: int = 1) -> None:
        if int(processes) < 1:
            raise ValueError(f"PoolEngine needs processes >= 1, not {processes!r}")
        self.processes = int(processes)

    def __repr__(self) -> str:
        return f"PoolEngine({self.processes})"


class _LocalRun:
    """State of one in-process run; all mutation happens in the caller's thread."""

    def __init__(self, wf: Workflow, inputs: dict[str, Any]) -> None:
        self.wf = wf
        self.inputs = inputs
        self.run_id = uuid.uuid4().hex
        self.tracker = Readiness(wf.plan)
        self.infos = {n: StepInfo() for n in wf.step_names}
        self.results: dict[str, Any] = {}
        self.hub: EventHub | None = None
        self.seq = 0
        self._policies = [p for p in wf.policies if isinstance(p, WorkflowPolicy)]
        tracer = as_tracer(wf.trace)
        if tracer is not None:
            self.hub = EventHub()
            self.hub.subscribe(TraceSubscriber(tracer, wf.workflow_id))

    def emit(self, kind: Any, step: str | None = None, state: Status | None = None,
             detail: dict[str, Any] | None = None) -> None:
        if self.hub is None:
            return
        self.seq += 1
        self.hub.publish(Event(kind, self.run_id, self.seq, time.time(), step, state, detail=detail))

    def queue(self, names: list[str]) -> list[str]:
        now = time.time()
        for n in names:
            self.infos[n].queued_at = now
            self.emit("step_queued", n, Status.PENDING)
        return names

    def finish(self, name: str, out: StepOutcome, attempts: int) -> list[str]:
        info = self.infos[name]
        info.attempts, info.started_at, info.finished_at = attempts, out.started_at, out.finished_at
        if out.state is Status.SUCCEEDED:
            try:
                info.action = resolve_action(self.wf.plan, name, out.result)
            except UnknownActionError as exc:
                out = StepOutcome.from_exception(exc, out.started_at)
        if out.state is Status.SUCCEEDED:
            outcome = Outcome.succeeded(info.action or "default")
            self.results[name] = info.result = out.result
            for p in self._wf_policies():
                p.on_step_success(self.wf, self.wf.steps[name], out.result)
        elif out.state is Status.SKIPPED:
            outcome = Outcome.skipped_by_condition()
            info.skip_reason = SKIP_CONDITION
        else:
            outcome = Outcome.failed()
            info.error, info.traceback = out.error, out.traceback
            for p in self._wf_policies():
                p.on_step_failure(self.wf, self.wf.steps[name], out.exception or RuntimeError(out.error))
        info.state = out.state
        self.wf.steps[name].state = out.state
        detail: dict[str, Any] = {"action": info.action, "error": info.error, "skip_reason": info.skip_reason}
        if self.hub is not None:  # only tracing reads these; skip the repr() otherwise
            detail["conditions"] = out.conditions or []
            if out.state is Status.SUCCEEDED:
                detail["result_preview"] = preview(out.result)
        self.emit("step_finished", name, out.state, detail)
        changes = self.tracker.finish(name, outcome)
        for n, state in [(n, Status.SKIPPED) for n in changes.skipped] + [
            (n, Status.CANCELLED) for n in changes.cancelled
        ]:
            self.infos[n].state = state
            self.wf.steps[n].state = state
            if state is Status.SKIPPED:
                self.infos[n].skip_reason = "not_reached"
            self.emit("step_finished", n, state,
                      {"skip_reason": self.infos[n].skip_reason, **self.tracker.cause(n)})
        return self.queue(changes.ready)

    def start_step(self, name: str) -> None:
        self.infos[name].state = Status.RUNNING
        self.wf.steps[name].state = Status.RUNNING
        self.emit("step_started", name, Status.RUNNING)
        for p in self._wf_policies():
            p.on_step_start(self.wf, self.wf.steps[name])

    def _wf_policies(self) -> list[WorkflowPolicy]:
        return self._policies

    def begin(self) -> None:
        """Mark the run started: states, workflow-start hooks, the first event."""
        self.created = time.time()
        self.wf.state = Status.RUNNING
        for step in self.wf.steps.values():
            step.state = Status.PENDING
        self.shared = dict(self.inputs)
        for p in self._wf_policies():
            p.on_workflow_start(self.wf)
        self.emit("run_dispatched", detail={"workflow_id": self.wf.workflow_id})

    def end(self) -> RunResult:
        """Settle the final state and outputs; run workflow-finished hooks."""
        wf = self.wf
        for name in self.tracker.recovered_failures():
            self.infos[name].recovered = True
        state = self.tracker.run_state()
        wf.state = state
        outs = [self.results.get(n) for n in wf.output_names]
        outputs = outs[0] if len(outs) == 1 else outs
        result = RunResult(self.run_id, wf.workflow_id, state, self.infos, wf.version, self.inputs,
                           self.created, time.time(), outputs=outputs)
        wf.__dict__["_last_run"] = result
        self.emit("run_finished", state=state)
        for p in self._wf_policies():
            p.on_workflow_finished(wf, outputs)
        if state is Status.FAILED:
            log.warning("workflow %s failed: %s (wf.run returns None; the outputs that were "
                        "computed are in wf.last_run.outputs)", wf.workflow_id, result.failures())
        return result

    def execute(self, name: str) -> tuple[StepOutcome, int]:
        """The step's attempts between its ``before_all`` and ``after_all`` hooks (as in Fuseline)."""
        step = self.wf.steps[name]
        try:
            step.before_all(self.shared)
        except Exception as exc:  # the step fails; its after_all is not called
            return StepOutcome.from_exception(exc, time.time()), 1
        try:
            return attempt_with_retries(
                self.wf, name, self.inputs, self.results, self.tracker.winners(name)
            )
        finally:
            try:
                step.after_all(self.shared)
            except Exception:  # logged; the step's outcome stands
                log.exception("after_all of step %r failed", step.name)


class _Loop:
    """The run loop's bookkeeping, whatever executes the steps (inline, threads, asyncio).

    A driver repeats: start what :meth:`to_start` hands out on its executor,
    then feed the next completion to :meth:`done`, while :attr:`active`.
    """

    def __init__(self, run: _LocalRun, capacity: int) -> None:
        self.run = run
        self.capacity = capacity  # steps started but not finished at once
        self.ready: deque[str] = deque(run.queue(run.tracker.start()))
        self.pending = 0

    @property
    def active(self) -> bool:
        return bool(self.ready or self.pending)

    def to_start(self) -> list[str]:
        names = []
        while self.ready and self.pending < self.capacity:
            name = self.ready.popleft()
            self.run.start_step(name)
            self.pending += 1
            names.append(name)
        return names

    def done(self, name: str, out: StepOutcome, attempts: int) -> None:
        self.pending -= 1
        self.ready.extend(self.run.finish(name, out, attempts))


class _Inline:
    """Executor: each step runs in the caller's thread when its completion is asked for."""

    capacity = 1

    def __init__(self, run: _LocalRun) -> None:
        self.run = run
        self.started: deque[str] = deque()

    def submit(self, name: str) -> None:
        self.started.append(name)

    def next(self) -> tuple[str, StepOutcome, int]:
        name = self.started.popleft()
        return (name, *self.run.execute(name))

    def close(self) -> None:
        pass


class _Threads:
    """Executor: steps run on ``n`` threads; completions come back in completion order."""

    capacity = 1 << 62  # every ready step is handed to the pool at once

    def __init__(self, run: _LocalRun, n: int) -> None:
        self.run = run
        self.pool = ThreadPoolExecutor(n, thread_name_prefix="fuseline-pool")
        self.done: queue.Queue[tuple[str, StepOutcome, int]] = queue.Queue()

    def _work(self, name: str) -> None:
        try:
            out, n = self.run.execute(name)
        except BaseException as exc:  # attempt() never raises; this is a safety net
            out, n = StepOutcome.from_exception(exc, time.time()), 1
        self.done.put((name, out, n))

    def submit(self, name: str) -> None:
        self.pool.submit(self._work, name)

    def next(self) -> tuple[str, StepOutcome, int]:
        return self.done.get()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _drive(run: _LocalRun, executor: _Inline | _Threads) -> None:
    loop = _Loop(run, executor.capacity)
    try:
        while loop.active:
            for name in loop.to_start():
                executor.submit(name)
            loop.done(*executor.next())
    finally:
        executor.close()


def check_engine(engine: Any) -> None:
    """Refuse an ``execution_engine`` the in-process runner cannot use, saying what fits.

    Examples
    --------
    >>> check_engine(PoolEngine(2))
    >>> check_engine(4)
    Traceback (most recent call last):
    TypeError: execution_engine must be an engine such as PoolEngine(4), not 4 (int): wf.run(inputs, PoolEngine(4)) runs up to 4 steps at once on threads
    """
    if engine is None or isinstance(getattr(engine, "processes", None), int):
        return
    n = engine if isinstance(engine, int) and not isinstance(engine, bool) and engine > 0 else 4
    raise TypeError(
        f"execution_engine must be an engine such as PoolEngine({n}), not {engine!r} "
        f"({type(engine).__name__}): wf.run(inputs, PoolEngine({n})) runs up to {n} steps at once on threads"
    )


def run_local(wf: Workflow, inputs: dict[str, Any], engine: PoolEngine | None = None) -> RunResult:
    """Run ``wf`` in this process; return a :class:`RunResult`.

    Refuses, before anything runs, an unusable engine (``TypeError``) and
    missing inputs (:class:`~fuseline_nb.errors.MissingInputError`).
    """
    check_engine(engine)
    wf.to_schema().check_inputs(inputs)
    run = _LocalRun(wf, inputs)
    run.begin()
    _drive(run, _Inline(run) if engine is None else _Threads(run, engine.processes))
    return run.end()


install_local_runner(run_local)


__all__ = [
    "PoolEngine",
    "check_engine",
    "run_local",
]
