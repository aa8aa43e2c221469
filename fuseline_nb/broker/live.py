"""The broker's in-memory records: compiled workflows, live runs, workers.

Only :mod:`fuseline_nb.broker.core` mutates these, under the broker's lock.
The live state of the broker is, in full (see also ``docs/broker.md``):

``StorageBroker._compiled[(workflow_id, version)]`` — :class:`Compiled`
    the schema, its rules' ``Plan``, ``retries`` (step → (max attempts,
    wait)), ``timeouts`` (step → StepTimeoutPolicy seconds, carried by each
    assignment) and ``sources`` (step → distinct upstream steps).
``StorageBroker._runs[run_id]`` — :class:`LiveRun`
    ``infos`` (step → ``StepInfo``), ``tracker`` (the rules' ``Readiness``),
    ``inputs`` / ``results`` (closed :class:`~fuseline_nb.workflow.value.Value` s),
    ``failures`` (step → failed attempts), ``assigned`` (step → (worker id,
    attempt, lease deadline)), ``seq`` (last event number).
``StorageBroker._active[(workflow_id, version)]``
    the live run ids of a workflow, in dispatch order (``get_step`` scans them).
the storage queue
    each run's queued steps (``RuntimeStorage.enqueue`` / ``fetch_next``).
``StorageBroker._leases`` / ``_delayed``
    heaps of (deadline, run, step, attempt) and (due, run, step): lease
    expiries and retries waiting for ``RetryPolicy.wait``.
``StorageBroker._workers[worker_id]`` — :class:`Worker`
    its ``WorkerInfo``, ``keys`` (workflows it runs), ``assigned`` ((run,
    step) it holds; mirrors ``LiveRun.assigned`` for per-worker lookups) and
    ``cancelled`` (told at its next keep-alive).

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> c = Compiled(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]).to_schema())
>>> LiveRun("r1", c, {}, 0.0).infos["one"].state
<Status.PENDING: 'PENDING'>
"""

from __future__ import annotations

from typing import Any

from ..workflow.policies import retry_settings, timeout_seconds
from ..workflow.rules import Outcome, Plan, Readiness
from ..workflow.runinfo import StepInfo
from ..workflow.schema import WorkflowSchema
from .base import WorkerInfo

Key = tuple[str, str]  # (workflow_id, version)


def copy_info(info: StepInfo) -> StepInfo:
    """A shallow copy of ``info`` (``dataclasses.replace`` without re-running ``__init__``)."""
    copied = object.__new__(StepInfo)
    copied.__dict__.update(info.__dict__)
    return copied


_OUTCOMES: dict[str, Outcome] = {}


def succeeded(action: str) -> Outcome:
    """``Outcome.succeeded(action)``, shared (outcomes are immutable)."""
    outcome = _OUTCOMES.get(action)
    if outcome is None:
        outcome = _OUTCOMES[action] = Outcome.succeeded(action)
    return outcome


class Compiled:
    """A registered schema with what the broker derives from it once."""

    __slots__ = ("_structure", "plan", "retries", "schema", "sources", "timeouts")

    def __init__(self, schema: WorkflowSchema) -> None:
        self.schema = schema
        self.plan = Plan.from_schema(schema)
        self.retries = {s.name: retry_settings(s.policies) for s in schema.steps}
        #: step -> its StepTimeoutPolicy seconds (steps without one are absent); assignments carry it
        self.timeouts = {s.name: t for s in schema.steps if (t := timeout_seconds(s.policies)) is not None}
        #: step -> the distinct sources of its incoming edges, in edge order
        self.sources = {v: tuple(dict.fromkeys(e.source for e in inc)) for v, inc in self.plan.incoming.items()}
        self._structure: str | None = None

    def structure_key(self) -> str:
        """``schema.structure_key()``, computed once."""
        if self._structure is None:
            self._structure = self.schema.structure_key()
        return self._structure


class LiveRun:
    """In-memory state of one unfinished run."""

    __slots__ = (
        "assigned",
        "compiled",
        "created_at",
        "failures",
        "infos",
        "inputs",
        "key",
        "results",
        "run_id",
        "seq",
        "tracker",
    )

    def __init__(self, run_id: str, compiled: Compiled, inputs: dict[str, Any], created_at: float) -> None:
        self.run_id = run_id
        self.compiled = compiled
        self.key: Key = (compiled.schema.workflow_id, compiled.schema.version)
        self.tracker = Readiness(compiled.plan)
        self.infos = {n: StepInfo() for n in compiled.plan.order}
        self.inputs = inputs
        self.results: dict[str, Any] = {}
        self.failures: dict[str, int] = {}
        # step -> (worker id, attempt, lease deadline)
        self.assigned: dict[str, tuple[str, int, float]] = {}
        self.created_at = created_at
        self.seq = 0


class Worker:
    """A registered worker: its info, the workflows it runs, what it holds."""

    __slots__ = ("assigned", "cancelled", "info", "keys")

    def __init__(self, info: WorkerInfo, keys: set[Key]) -> None:
        self.info = info
        self.keys = keys
        self.assigned: set[tuple[str, str]] = set()  # (run id, step)
        self.cancelled: list[tuple[str, str]] = []  # cancelled while held: told at the next keep-alive


__all__ = [
    "Compiled",
    "LiveRun",
    "Worker",
    "copy_info",
    "succeeded",
]
