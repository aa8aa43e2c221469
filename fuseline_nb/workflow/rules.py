"""Readiness, skip and cancel rules: pure functions of (schema, step outcomes).

This module is the single statement of DESIGN.md §3, shared by in-process
runs (``wf.run``) and every broker, so the two paths cannot disagree.

An edge ``u -> v`` labelled ``L`` is

* **active** when ``u`` SUCCEEDED with action ``L``, or ``u`` was SKIPPED by its
  condition and ``L == "default"`` (``u`` was reached; its value is ``None``);
* **inactive** when ``u`` SUCCEEDED with another action, or was never reached;
* **broken** when ``u`` FAILED or was CANCELLED;
* **pending** otherwise.

The incoming edges of ``v`` form *slots*: each plain edge is a slot, and each
OR group is one slot (active as soon as a member is active; once every member
is resolved with none active it is broken if any member broke, else inactive).
Then: any broken slot cancels ``v`` at once; with no slot pending, ``v`` is
ready when a slot is active and skipped (not reached) when all are inactive.

:func:`decide` evaluates that from scratch. :class:`Readiness` keeps counters
so each finished step costs O(out-degree) — a 1→10,000→1 fan-out does no
quadratic work. The property tests check that both always agree.

Examples
--------
>>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
>>> schema = WorkflowSchema("wf", steps=(StepSchema("a"), StepSchema("b"), StepSchema("c")),
...     edges=(EdgeSchema("a", "b", "yes"), EdgeSchema("a", "c", "no")))
>>> plan = Plan.from_schema(schema)
>>> r = Readiness(plan)
>>> r.start()
['a']
>>> ch = r.finish("a", Outcome.succeeded("yes"))
>>> ch.ready, ch.skipped
(['b'], ['c'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from ..errors import UnknownActionError
from .schema import DEFAULT_ACTION, WorkflowSchema
from .status import SKIP_CONDITION, SKIP_NOT_REACHED, Status


class Edge(str, Enum):
    """The status of one edge (or one slot)."""

    PENDING = "pending"  # its source has not finished
    ACTIVE = "active"  # it carries control to its target
    INACTIVE = "inactive"  # routing went elsewhere, or its source was never reached
    BROKEN = "broken"  # its source failed or was cancelled


class Verdict(str, Enum):
    """What the rules say about a step that has not finished."""

    WAIT = "wait"  # some slot is still pending
    READY = "ready"  # enqueue it
    SKIP = "skip"  # nothing reached it
    CANCEL = "cancel"  # it can only be reached through a failure


@dataclass(frozen=True, slots=True)
class Outcome:
    """The facts about a finished step that the rules look at.

    Examples
    --------
    >>> Outcome.succeeded().action
    'default'
    >>> Outcome.skipped_by_condition().skip_reason
    'condition'
    """

    state: Status
    action: str | None = None  # the resolved action of a SUCCEEDED step
    skip_reason: str | None = None  # SKIP_CONDITION or SKIP_NOT_REACHED

    @classmethod
    def succeeded(cls, action: str = DEFAULT_ACTION) -> Outcome:
        """A step that ran and chose ``action``."""
        return cls(Status.SUCCEEDED, action)

    @classmethod
    def failed(cls) -> Outcome:
        """A step that failed."""
        return cls(Status.FAILED)

    @classmethod
    def cancelled(cls) -> Outcome:
        """A step cancelled by an upstream failure."""
        return cls(Status.CANCELLED)

    @classmethod
    def skipped_by_condition(cls) -> Outcome:
        """A step reached but skipped by its condition (its default edges stay active)."""
        return cls(Status.SKIPPED, None, SKIP_CONDITION)

    @classmethod
    def not_reached(cls) -> Outcome:
        """A step no active edge reached."""
        return cls(Status.SKIPPED, None, SKIP_NOT_REACHED)


@dataclass(frozen=True, slots=True)
class _In:
    source: str
    actions: frozenset[str]
    group: str | None


@dataclass
class Plan:
    """A schema compiled for the rules: incoming and outgoing edges per step.

    Parallel edges ``u -> v`` with different actions are one edge taken on
    any of them.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> p = Plan.from_schema(WorkflowSchema("w", steps=(StepSchema("a"), StepSchema("b")),
    ...                                     edges=(EdgeSchema("a", "b"),)))
    >>> p.roots, p.successors["a"]
    (['a'], ['b'])
    """

    order: list[str]
    incoming: dict[str, list[_In]]
    successors: dict[str, list[str]]
    actions: dict[str, frozenset[str]]  # outgoing action labels per step
    roots: list[str] = field(default_factory=list)

    @classmethod
    def from_schema(cls, schema: WorkflowSchema) -> Plan:
        """Compile ``schema``."""
        order = list(schema.step_names)
        merged: dict[tuple[str, str], tuple[set[str], str | None]] = {}
        for e in schema.edges:
            acts, group = merged.setdefault((e.source, e.target), (set(), e.group))
            acts.add(e.action)
            if e.group is not None and group is None:
                merged[(e.source, e.target)] = (acts, e.group)
        incoming: dict[str, list[_In]] = {n: [] for n in order}
        successors: dict[str, list[str]] = {n: [] for n in order}
        actions: dict[str, set[str]] = {n: set() for n in order}
        for (u, v), (acts, group) in merged.items():
            incoming[v].append(_In(u, frozenset(acts), group))
            successors[u].append(v)
            actions[u] |= acts
        roots = [n for n in order if not incoming[n]]
        return cls(order, incoming, successors, {k: frozenset(v) for k, v in actions.items()}, roots)


def resolve_action(plan: Plan, step: str, result: object) -> str:
    """The action a step's ``result`` selects; raises for an unknown one.

    A string naming an outgoing action selects it. Anything else — a
    non-string, or a string naming no action while a ``"default"`` edge
    exists (or no edges at all) — selects ``"default"``.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> p = Plan.from_schema(WorkflowSchema("w", steps=(StepSchema("a"), StepSchema("b")),
    ...                                     edges=(EdgeSchema("a", "b", "go"),)))
    >>> resolve_action(p, "a", "go"), resolve_action(p, "a", 42)
    ('go', 'default')
    >>> resolve_action(p, "a", "stop")
    Traceback (most recent call last):
    fuseline_nb.errors.UnknownActionError: step 'a' returned action 'stop', which matches none of its edges (choices: ['go']) and it has no default edge
    """
    if not isinstance(result, str):
        return DEFAULT_ACTION
    acts = plan.actions[step]
    if result in acts:
        return result
    if not acts or DEFAULT_ACTION in acts:
        return DEFAULT_ACTION
    raise UnknownActionError(step, result, acts)


def edge_status(outcome: Outcome | None, actions: frozenset[str]) -> Edge:
    """The status of an edge taken on ``actions`` whose source finished with ``outcome``.

    Examples
    --------
    >>> edge_status(Outcome.succeeded("yes"), frozenset({"yes"}))
    <Edge.ACTIVE: 'active'>
    >>> edge_status(Outcome.failed(), frozenset({"default"}))
    <Edge.BROKEN: 'broken'>
    """
    if outcome is None:
        return Edge.PENDING
    st = outcome.state
    if st is Status.SUCCEEDED:
        return Edge.ACTIVE if outcome.action in actions else Edge.INACTIVE
    if st is Status.SKIPPED:
        if outcome.skip_reason == SKIP_CONDITION and DEFAULT_ACTION in actions:
            return Edge.ACTIVE
        return Edge.INACTIVE
    if st in (Status.FAILED, Status.CANCELLED):
        return Edge.BROKEN
    return Edge.PENDING


def _group_slot(members: list[Edge]) -> Edge:
    if Edge.ACTIVE in members:
        return Edge.ACTIVE
    if Edge.PENDING in members:
        return Edge.PENDING
    return Edge.BROKEN if Edge.BROKEN in members else Edge.INACTIVE


def _verdict(slots: Iterable[Edge]) -> Verdict:
    seen = set(slots)
    if Edge.BROKEN in seen:
        return Verdict.CANCEL
    if Edge.PENDING in seen:
        return Verdict.WAIT
    return Verdict.READY if Edge.ACTIVE in seen else Verdict.SKIP


def decide(plan: Plan, outcomes: Mapping[str, Outcome], step: str) -> Verdict:
    """Evaluate the rules for ``step`` from scratch (no incremental state).

    Roots are always READY.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> p = Plan.from_schema(WorkflowSchema("w", steps=(StepSchema("a"), StepSchema("b")),
    ...                                     edges=(EdgeSchema("a", "b"),)))
    >>> decide(p, {}, "b"), decide(p, {"a": Outcome.failed()}, "b")
    (<Verdict.WAIT: 'wait'>, <Verdict.CANCEL: 'cancel'>)
    """
    inc = plan.incoming[step]
    if not inc:
        return Verdict.READY
    slots: list[Edge] = []
    groups: dict[str, list[Edge]] = {}
    for e in inc:
        status = edge_status(outcomes.get(e.source), e.actions)
        if e.group is None:
            slots.append(status)
        else:
            groups.setdefault(e.group, []).append(status)
    slots.extend(_group_slot(m) for m in groups.values())
    return _verdict(slots)


def or_winner(plan: Plan, outcomes: Mapping[str, Outcome], order: Mapping[str, int],
              step: str, group: str) -> str | None:
    """The member of ``group`` on ``step`` whose edge became active first.

    ``order`` gives each finished step's completion sequence number.
    """
    best: tuple[int, str] | None = None
    for e in plan.incoming[step]:
        if e.group == group and edge_status(outcomes.get(e.source), e.actions) is Edge.ACTIVE:
            key = (order.get(e.source, 1 << 62), e.source)
            if best is None or key < best:
                best = key
    return None if best is None else best[1]


@dataclass
class Changes:
    """What one finished step decided downstream (in decision order)."""

    ready: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


class _Slots:
    """Counters for one not-yet-decided step."""

    __slots__ = ("active", "groups", "pending")

    def __init__(self, n_slots: int) -> None:
        self.pending = n_slots
        self.active = 0
        # group -> [pending members, any broken, winner]
        self.groups: dict[str, list[object]] = {}


class Readiness:
    """Incremental form of :func:`decide` for one run.

    Feed it each step's :class:`Outcome` in completion order with
    :meth:`finish`; it returns the steps that became ready, and those skipped
    or cancelled (transitively — their outcomes are recorded too). Each step
    is made ready at most once.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> s = WorkflowSchema("w", steps=tuple(StepSchema(n) for n in "abc"),
    ...     edges=(EdgeSchema("a", "c", group="g"), EdgeSchema("b", "c", group="g")))
    >>> r = Readiness(Plan.from_schema(s))
    >>> r.start()
    ['a', 'b']
    >>> r.finish("b", Outcome.succeeded()).ready
    ['c']
    >>> r.winners("c")
    {'g': 'b'}
    >>> r.finish("a", Outcome.succeeded()).ready
    []
    """

    def __init__(self, plan: Plan, outcomes: Mapping[str, Outcome] | None = None) -> None:
        self.plan = plan
        self.outcomes: dict[str, Outcome] = {}
        self.decided: set[str] = set()  # steps made ready, skipped or cancelled
        self._slots: dict[str, _Slots] = {}
        self._winners: dict[str, dict[str, str]] = {}
        for step in plan.order:
            inc = plan.incoming[step]
            grouped = {e.group for e in inc if e.group is not None}
            sl = _Slots(sum(1 for e in inc if e.group is None) + len(grouped))
            for g in grouped:
                sl.groups[g] = [sum(1 for e in inc if e.group == g), False, None]
            self._slots[step] = sl
        self._in_edge: dict[tuple[str, str], _In] = {
            (e.source, v): e for v, inc in plan.incoming.items() for e in inc
        }
        for name, out in (outcomes or {}).items():
            self.finish(name, out)

    def start(self) -> list[str]:
        """Mark the roots ready and return them."""
        roots = [r for r in self.plan.roots if r not in self.decided]
        self.decided.update(roots)
        return roots

    def winners(self, step: str) -> dict[str, str]:
        """For each OR group on ``step``, the member whose result it receives."""
        return dict(self._winners.get(step, {}))

    @property
    def done(self) -> bool:
        """Whether every step has an outcome."""
        return len(self.outcomes) == len(self.plan.order)

    def finish(self, step: str, outcome: Outcome) -> Changes:
        """Record ``outcome`` for ``step`` and propagate it downstream."""
        changes = Changes()
        if step in self.outcomes:
            return changes
        self.decided.add(step)
        work = [(step, outcome)]
        while work:
            u, out = work.pop()
            self.outcomes[u] = out
            for v in self.plan.successors[u]:
                if v in self.decided:
                    continue
                verdict = self._update(v, self._in_edge[(u, v)], edge_status(out, self._in_edge[(u, v)].actions))
                if verdict is Verdict.WAIT:
                    continue
                self.decided.add(v)
                if verdict is Verdict.READY:
                    changes.ready.append(v)
                elif verdict is Verdict.SKIP:
                    changes.skipped.append(v)
                    work.append((v, Outcome.not_reached()))
                else:
                    changes.cancelled.append(v)
                    work.append((v, Outcome.cancelled()))
        return changes

    def _update(self, v: str, e: _In, status: Edge) -> Verdict:
        sl = self._slots[v]
        if e.group is None:
            slot = status
        else:
            g = sl.groups[e.group]
            if g[2] is not None:  # the group already has its winner
                return Verdict.WAIT
            g[0] -= 1  # type: ignore[operator]
            if status is Edge.ACTIVE:
                g[2] = e.source
                self._winners.setdefault(v, {})[e.group] = e.source
                slot = Edge.ACTIVE
            else:
                if status is Edge.BROKEN:
                    g[1] = True
                if g[0]:
                    return Verdict.WAIT
                slot = Edge.BROKEN if g[1] else Edge.INACTIVE
        if slot is Edge.BROKEN:
            return Verdict.CANCEL
        sl.pending -= 1
        if slot is Edge.ACTIVE:
            sl.active += 1
        if sl.pending:
            return Verdict.WAIT
        return Verdict.READY if sl.active else Verdict.SKIP


def final_run_state(outcomes: Iterable[Outcome]) -> Status:
    """A finished run is FAILED if any step FAILED, else SUCCEEDED.

    Examples
    --------
    >>> final_run_state([Outcome.succeeded(), Outcome.failed()])
    <Status.FAILED: 'FAILED'>
    """
    return Status.FAILED if any(o.state is Status.FAILED for o in outcomes) else Status.SUCCEEDED
