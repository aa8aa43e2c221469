"""The broker's live state, in full: one :class:`LiveState`, changed only by :mod:`.transitions`.

Everything a broker knows about unfinished work lives in the records below
(the storage holds the queue and the history). Only the functions of
:mod:`fuseline_nb.broker.transitions` change them, under the broker's lock;
each returns the storage writes and the events its change implies, and the
broker (:mod:`fuseline_nb.broker.core`) applies them. See also
``docs/broker.md``, which tabulates the same fields.

``LiveState.compiled[(workflow_id, version)]`` — :class:`Compiled`
    a registered schema and what is derived from it once: the rules'
    ``plan``, ``retries`` (step → (max attempts, wait seconds)),
    ``timeouts`` (step → ``StepTimeoutPolicy`` seconds; steps without one
    are absent); a step's upstream steps are its ``plan.incoming`` edges.
``LiveState.runs[run_id]`` — :class:`LiveRun`
    one unfinished run: ``infos`` (its :class:`~fuseline_nb.broker.records.StepRecords`:
    step → its ``StepInfo``, the record the storage persists, kept in
    compact arrays and made as a ``StepInfo`` only while a transition or a
    worker has the step in hand; a step gets one when first queued, decided
    or cancelled — a step without one is PENDING), ``tracker`` (the rules' ``Readiness``), ``inputs`` and
    ``results`` (closed :class:`~fuseline_nb.workflow.value.Value` s of the
    steps that SUCCEEDED, read from ``infos``: :class:`~fuseline_nb.broker.records.Results`),
    ``failures`` (step → failed attempts, for ``RetryPolicy``), ``expired``
    (step → leases expired in a row), ``cache`` (its ``RunCache`` when
    caching is on) and ``seq`` (the number of its last event).
``LiveState.ending[run_id]`` — :class:`LiveRun`
    runs that ended in the transition being applied: a ``run_finished``
    subscriber still reads them from memory; emptied once the events are out
    (held ones too: see :mod:`fuseline_nb.broker._outbox`).
``LiveState.active[(workflow_id, version)]``
    the live run ids of each workflow in dispatch order (an ordered set):
    what ``get_step`` scans.
the storage queue
    each run's queued steps, through ``RuntimeStorage.enqueue`` /
    ``fetch_next`` (the seed's interface). A queued step is PENDING with a
    ``queued_at``; an entry whose step is running or finished is dropped
    when fetched.
``LiveState.workers[worker_id]`` — :class:`Worker`
    a registered worker: its ``WorkerInfo``, ``keys`` (the workflows it
    runs), ``last`` (the last step it reported: ``WorkerInfo.last_task``
    when listed) and ``held``.
``Worker.held[(run_id, step)]`` — :class:`Assignment`
    **the one record of who holds which step**, in hand-out order: the
    attempt, its lease ``deadline``, the step's ``timeout`` and, for the
    first one (a worker process runs what it holds in order), ``due``: when
    that timeout passes. A ``cancelled`` assignment's run was cancelled
    while it ran: it stays until its worker is told (next keep-alive), its
    report is refused, its worker goes, or its lease passes. Pools and
    channel servers ask :meth:`StorageBroker.held_by
    <fuseline_nb.broker.core.StorageBroker.held_by>`; nothing else records it.
``LiveState.next_expiry``
    no lease ends before this time (broker clock; ``inf``: none held). Held
    assignments are few (about one per worker process), so when it passes
    the broker sweeps them all and sets it to the earliest deadline left:
    nothing per step but a comparison, and no structure that grows with
    the number of steps.
``LiveState.delayed``
    a heap of ``(due, run_id, step)``: retries waiting for ``RetryPolicy.wait``.
``LiveState.pruned[worker_id]``
    when a worker was forgotten for silence (``worker_ttl``), to say so.
``LiveState.dirty``
    the runs' records (``StepRecords``) the transition being applied opened:
    the broker closes them after applying it (their fields go back into the
    arrays; a running step's record stays open until its outcome).

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> c = Compiled(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]).to_schema())
>>> run = LiveRun("r1", c, {}, 0.0)
>>> len(run.infos), run.info("one").state, len(run.infos)
(0, <Status.PENDING: 'PENDING'>, 1)
"""

from __future__ import annotations

import math
from typing import Any

from ..workflow.plan import StepOrder
from ..workflow.policies import retry_settings, timeout_seconds
from ..workflow.rules import Outcome, Plan, Readiness
from ..workflow.runinfo import StepInfo
from ..workflow.schema import WorkflowSchema
from .base import LastTask, WorkerInfo
from .cache import RunCache
from .records import Results, StepRecords

Key = tuple[str, str]  # (workflow_id, version)


_OUTCOMES: dict[str, Outcome] = {}


def succeeded(action: str) -> Outcome:
    """``Outcome.succeeded(action)``, shared (outcomes are immutable).

    Examples
    --------
    >>> succeeded("yes") is succeeded("yes")
    True
    """
    outcome = _OUTCOMES.get(action)
    if outcome is None:
        outcome = _OUTCOMES[action] = Outcome.succeeded(action)
    return outcome


class Compiled:
    """A registered schema with what the broker derives from it once.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, RetryPolicy, Workflow
    >>> c = Compiled(Workflow(outputs=[FunctionStep(lambda: 1, name="one", policies=[RetryPolicy(3)])]).to_schema())
    >>> c.retries["one"][0], c.timeouts
    (3, {})
    """

    __slots__ = ("_index", "_structure", "plan", "retries", "schema", "timeouts")

    def __init__(self, schema: WorkflowSchema) -> None:
        self.schema = schema
        self.plan = Plan.from_schema(schema)
        #: step -> (max attempts, wait seconds); steps without a RetryPolicy are absent (one attempt)
        self.retries: dict[str, tuple[int, float]] = {}
        #: step -> its StepTimeoutPolicy seconds (steps without one are absent); assignments carry it
        self.timeouts: dict[str, float] = {}
        for s in schema.steps:
            if s.policies:
                settings = retry_settings(s.policies)
                if settings != (1, 0):
                    self.retries[s.name] = settings
                t = timeout_seconds(s.policies)
                if t is not None:
                    self.timeouts[s.name] = t
        self._structure: str | None = None
        self._index: dict[str, int] | None = None

    @property
    def index(self) -> dict[str, int]:
        """Step -> its position in ``plan.order`` (made on first use): where its record sits in a run's arrays."""
        if self._index is None:
            order = self.plan.order  # a StepOrder: its dict is shared with the storage's row places
            self._index = order.positions if isinstance(order, StepOrder) else {n: i for i, n in enumerate(order)}
        return self._index

    @property
    def key(self) -> Key:
        """``(workflow_id, version)``."""
        return (self.schema.workflow_id, self.schema.version)

    def structure_key(self) -> str:
        """``schema.structure_key()``, computed once."""
        if self._structure is None:
            self._structure = self.schema.structure_key()
        return self._structure


class LiveRun:
    """The live state of one unfinished run (fields: see the module docstring).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> run = LiveRun("r1", Compiled(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]).to_schema()), {}, 0.0)
    >>> run.seq, run.failures, run.cache is None
    (0, {}, True)
    """

    __slots__ = (
        "cache",
        "compiled",
        "created_at",
        "expired",
        "failures",
        "infos",
        "inputs",
        "key",
        "results",
        "run_id",
        "seq",
        "tracker",
    )

    def __init__(self, run_id: str, compiled: Compiled, inputs: dict[str, Any], created_at: float,
                 dirty: list[StepRecords] | None = None) -> None:
        self.run_id = run_id
        self.compiled = compiled
        self.key: Key = (compiled.schema.workflow_id, compiled.schema.version)
        self.tracker = Readiness(compiled.plan)
        #: step -> its record (compact arrays; a StepInfo only while open, see records.py)
        self.infos = StepRecords(compiled.plan.order, compiled.index, dirty)
        self.inputs = inputs
        #: step -> its result, for the steps that SUCCEEDED: read from ``infos`` (no table of its own)
        self.results = Results(self.infos)
        self.failures: dict[str, int] = {}
        self.expired: dict[str, int] = {}
        self.cache: RunCache | None = None
        self.created_at = created_at
        self.seq = 0


    def info(self, step: str) -> StepInfo:
        """The record of ``step`` (a known step) open to change, made PENDING on first use."""
        return self.infos.open(step)


class Assignment:
    """One attempt of one step held by one worker: the broker's only record of it.

    ``due`` (broker clock) is when the step's timeout passes; it is set when
    the assignment becomes the first its worker holds (the step starts then).

    Examples
    --------
    >>> a = Assignment("wf", "1", "r1", "load", "w-id", 1, 60.0, None)
    >>> a.running_timeout(now=5.0), a.cancelled
    (None, False)
    """

    __slots__ = ("attempt", "cancelled", "deadline", "due", "run_id", "step", "timeout", "version",
                 "worker_id", "workflow_id")

    def __init__(self, workflow_id: str, version: str, run_id: str, step: str, worker_id: str, attempt: int,
                 deadline: float, timeout: float | None) -> None:
        self.workflow_id = workflow_id
        self.version = version
        self.run_id = run_id
        self.step = step
        self.worker_id = worker_id
        self.attempt = attempt
        self.deadline = deadline  # lease: requeued when it passes without a report or keep-alive
        self.timeout = timeout  # the step's StepTimeoutPolicy seconds
        self.due: float | None = None  # when the timeout passes, once the step runs
        self.cancelled = False  # its run was cancelled while it was held

    def running_timeout(self, now: float) -> float | None:
        """Start the step's timeout clock at ``now`` (it became its worker's first); return ``due``."""
        if self.timeout is not None and self.due is None:
            self.due = now + self.timeout
        return self.due

    def __repr__(self) -> str:
        flags = " cancelled" if self.cancelled else ""
        return f"<Assignment {self.step!r} of run {self.run_id} attempt {self.attempt} -> {self.worker_id}{flags}>"


class Worker:
    """A registered worker: its info, the workflows it runs, and what it holds (:class:`Assignment` s).

    Examples
    --------
    >>> w = Worker(WorkerInfo("w-id", 0.0, 0.0), {("wf", "1")})
    >>> w.held, w.listed().last_task
    ({}, None)
    """

    __slots__ = ("held", "info", "keys", "last")

    def __init__(self, info: WorkerInfo, keys: set[Key]) -> None:
        self.info = info
        self.keys = keys
        #: (workflow id, run id, step, succeeded) of the last report; a LastTask only when listed
        self.last: tuple[str, str, str, bool] | None = None
        #: (run id, step) -> the Assignment, in hand-out order (the first one runs)
        self.held: dict[tuple[str, str], Assignment] = {}

    def listed(self) -> WorkerInfo:
        """Its ``WorkerInfo`` as listed, ``last_task`` brought up to date."""
        if self.last is not None:
            self.info.last_task = LastTask(*self.last)
        return self.info


class LiveState:
    """Everything the broker holds in memory (fields: see the module docstring).

    Examples
    --------
    >>> st = LiveState(lease_seconds=30.0)
    >>> st.runs, st.workers, st.next_expiry
    ({}, {}, inf)
    """

    __slots__ = ("active", "compiled", "delayed", "dirty", "ending", "lease_seconds", "max_lease_requeues",
                 "next_expiry", "pruned", "runs", "workers")

    def __init__(self, lease_seconds: float, max_lease_requeues: int = 3) -> None:
        self.lease_seconds = lease_seconds
        #: a step whose lease passes this many times in a row without a report FAILS
        self.max_lease_requeues = max_lease_requeues
        self.compiled: dict[Key, Compiled] = {}
        self.runs: dict[str, LiveRun] = {}
        self.ending: dict[str, LiveRun] = {}
        self.active: dict[Key, dict[str, None]] = {}
        self.workers: dict[str, Worker] = {}
        self.next_expiry = math.inf
        self.delayed: list[tuple[float, str, str]] = []
        self.pruned: dict[str, float] = {}
        #: the runs' records opened by the transition being applied: closed by the broker after it
        self.dirty: list[StepRecords] = []

    def holder(self, run_id: str, step: str) -> Assignment | None:
        """The assignment of ``step`` of ``run_id``, whoever holds it (a scan: not for the step path)."""
        key = (run_id, step)
        for w in self.workers.values():
            a = w.held.get(key)
            if a is not None:
                return a
        return None


__all__ = ["Assignment", "Compiled", "Key", "LiveRun", "LiveState", "Worker", "succeeded"]
