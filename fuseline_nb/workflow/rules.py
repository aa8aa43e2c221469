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
Then (an AND join: every slot must be active): the first slot to resolve
broken cancels ``v`` at once, the first to resolve inactive skips it at once
(not reached) — neither waits for the other slots — and ``v`` is ready when
every slot is active. So a branch gates its target even when the target also
reads other steps' results.

A FAILED step is *recovered* when every slot it feeds is an OR group that
gave its step another member's value (a fallback). A run is FAILED when a
failure is not recovered or a step was cancelled by a failure, CANCELLED when
the user cancelled it, else SUCCEEDED.

:func:`decide` evaluates the rules from scratch (given the completion order,
exactly; without it, a broken slot wins over an inactive one).
:class:`Readiness` keeps counters so each finished step costs O(out-degree) —
a 1→10,000→1 fan-out does no quadratic work. The property tests check that
both always agree.

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
from typing import Any

from .plan import Outcome, Plan, _In, resolve_action
from .schema import DEFAULT_ACTION
from .status import SKIP_CONDITION, Status


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


_Slot = tuple[Edge, int]  # a slot's status and when it resolved (completion sequence)


def _group_slot(members: list[_Slot]) -> _Slot:
    active = [at for st, at in members if st is Edge.ACTIVE]
    if active:
        return Edge.ACTIVE, min(active)
    if any(st is Edge.PENDING for st, _ in members):
        return Edge.PENDING, 0
    at = max(at for _, at in members)
    return (Edge.BROKEN if any(st is Edge.BROKEN for st, _ in members) else Edge.INACTIVE), at


def _verdict(slots: Iterable[_Slot]) -> Verdict:
    first: tuple[int, int] | None = None  # (resolved at, 0 broken / 1 inactive)
    pending = False
    for st, at in slots:
        if st is Edge.BROKEN or st is Edge.INACTIVE:
            key = (at, 0 if st is Edge.BROKEN else 1)
            if first is None or key < first:
                first = key
        elif st is Edge.PENDING:
            pending = True
    if first is not None:
        return Verdict.CANCEL if first[1] == 0 else Verdict.SKIP
    return Verdict.WAIT if pending else Verdict.READY


def decide(plan: Plan, outcomes: Mapping[str, Outcome], step: str,
           order: Mapping[str, int] | None = None) -> Verdict:
    """Evaluate the rules for ``step`` from scratch (no incremental state).

    Roots are always READY. ``order`` gives each finished step's completion
    sequence number (as :attr:`Readiness.order` records it): the slot that
    resolved first decides between CANCEL and SKIP. Without it a broken slot
    wins over an inactive one.

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
    slots: list[_Slot] = []
    groups: dict[str, list[_Slot]] = {}
    for e in inc:
        status = edge_status(outcomes.get(e.source), e.actions)
        at = order.get(e.source, 0) if order is not None else 0
        if e.group is None:
            slots.append((status, at))
        else:
            groups.setdefault(e.group, []).append((status, at))
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


class _Shape:
    """What every :class:`Readiness` of one plan starts from, computed once per plan.

    ``pending``: step -> its slots (plain edges plus OR groups), for steps with
    incoming edges; ``groups``: step -> OR group -> members, only for steps
    that have groups; ``in_edge``: (source, target) -> the edge.
    """

    __slots__ = ("groups", "in_edge", "pending")

    def __init__(self, plan: Plan) -> None:
        self.pending: dict[str, int] = {}
        self.groups: dict[str, dict[str, int]] = {}
        self.in_edge: dict[tuple[str, str], _In] = {}
        for v, inc in plan.incoming.items():
            if not inc:
                continue
            n = 0
            groups: dict[str, int] | None = None
            for e in inc:
                self.in_edge[(e.source, v)] = e
                if e.group is None:
                    n += 1
                elif groups is None:
                    groups = {e.group: 1}
                    n += 1
                elif e.group in groups:
                    groups[e.group] += 1
                else:
                    groups[e.group] = 1
                    n += 1
            self.pending[v] = n
            if groups:
                self.groups[v] = groups

    @staticmethod
    def of(plan: Plan) -> _Shape:
        """The shape of ``plan`` (kept on the plan: a plan is only read)."""
        shape = plan.__dict__.get("_readiness_shape")
        if shape is None:
            shape = plan.__dict__["_readiness_shape"] = _Shape(plan)
        return shape  # type: ignore[no-any-return]


class Readiness:
    """Incremental form of :func:`decide` for one run.

    Feed it each step's :class:`Outcome` in completion order with
    :meth:`finish`; it returns the steps that became ready, and those skipped
    or cancelled (transitively — their outcomes are recorded too). Each step
    is made ready at most once. :attr:`order` numbers every recorded outcome;
    :meth:`cause` says which step decided a skipped or cancelled one.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> s = WorkflowSchema("w", steps=tuple(StepSchema(n) for n in "abc"),
    ...     edges=(EdgeSchema("a", "c", group="g"), EdgeSchema("b", "c", group="g")))
    >>> r = Readiness(Plan.from_schema(s))
    >>> r.start()
    ['a', 'b']
    >>> r.finish("a", Outcome.failed()).ready
    []
    >>> r.finish("b", Outcome.succeeded()).ready
    ['c']
    >>> r.winners("c"), r.recovered("a")
    ({'g': 'b'}, True)
    >>> r.finish("c", Outcome.succeeded()).ready, r.run_state()
    ([], <Status.SUCCEEDED: 'SUCCEEDED'>)
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.outcomes: dict[str, Outcome] = {}
        self.order: dict[str, int] = {}  # step -> completion sequence of its outcome
        self.decided: set[str] = set()  # steps made ready, skipped or cancelled
        self.cancelled_by_user: set[str] = set()  # steps the user's cancel ended
        self._derived: dict[str, str] = {}  # step skipped/cancelled by the rules -> the step that decided it
        self._winners: dict[str, dict[str, str]] = {}
        # Per run only counters: a copy of the plan's slot counts (one int per step), and for
        # steps with OR groups, group -> [unresolved members, first broken member, winner].
        shape = _Shape.of(plan)
        self._pending = dict(shape.pending)  # step -> slots not yet active
        self._groups: dict[str, dict[str, list[Any]]] = {
            v: {g: [n, None, None] for g, n in gs.items()} for v, gs in shape.groups.items()}
        self._in_edge = shape.in_edge

    def start(self) -> list[str]:
        """Mark the roots ready and return them."""
        roots = [r for r in self.plan.roots if r not in self.decided]
        self.decided.update(roots)
        return roots

    def winners(self, step: str) -> dict[str, str]:
        """For each OR group on ``step``, the member whose result it receives."""
        w = self._winners.get(step)
        return dict(w) if w else {}

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
            self.order[u] = len(self.order) + 1
            for v in self.plan.successors[u]:
                if v in self.decided:
                    continue
                e = self._in_edge[(u, v)]
                verdict = self._update(v, e, edge_status(out, e.actions))
                if verdict is Verdict.WAIT:
                    continue
                self.decided.add(v)
                if verdict is Verdict.READY:
                    changes.ready.append(v)
                    continue
                self._derived[v] = self._culprit(v, e, u)
                if verdict is Verdict.SKIP:
                    changes.skipped.append(v)
                    work.append((v, Outcome.not_reached()))
                else:
                    changes.cancelled.append(v)
                    work.append((v, Outcome.cancelled()))
        return changes

    def _culprit(self, v: str, e: _In, u: str) -> str:
        if e.group is not None:
            first_broken = self._groups[v][e.group][1]
            if first_broken is not None:
                return str(first_broken)
        return u

    def _update(self, v: str, e: _In, status: Edge) -> Verdict:
        if e.group is not None:
            g = self._groups[v][e.group]
            if g[2] is not None:  # the group already has its winner
                return Verdict.WAIT
            g[0] -= 1
            if status is Edge.ACTIVE:
                g[2] = e.source
                self._winners.setdefault(v, {})[e.group] = e.source
            else:
                if status is Edge.BROKEN and g[1] is None:
                    g[1] = e.source
                if g[0]:
                    return Verdict.WAIT
                status = Edge.INACTIVE if g[1] is None else Edge.BROKEN
        if status is Edge.BROKEN:
            return Verdict.CANCEL
        if status is Edge.INACTIVE:
            return Verdict.SKIP
        left = self._pending[v] - 1
        self._pending[v] = left
        return Verdict.WAIT if left else Verdict.READY

    def cancel(self) -> list[str]:
        """The user cancelled the run: every step without an outcome is CANCELLED (returned).

        Ready steps (queued or running) are among them: their late outcomes
        are ignored by :meth:`finish`.
        """
        names = [n for n in self.plan.order if n not in self.outcomes]
        self.cancelled_by_user.update(names)
        for n in names:
            self.decided.add(n)
            self.outcomes[n] = Outcome.cancelled()
            self.order[n] = len(self.order) + 1
        return names

    def cause(self, step: str) -> dict[str, str]:
        """Why a skipped or cancelled step did not run, for its event's detail.

        A cancelled step names the failure it could only be reached through
        (``{"cause": "step 'Mean' failed"}``, or ``"run cancelled"``); a step
        skipped as not reached names the edge that was not taken.
        """
        if step in self.cancelled_by_user:
            return {"cause": "run cancelled"}
        if step not in self._derived:
            return {}
        src = self._derived[step]
        if self.outcomes[step].state is Status.CANCELLED:
            while src in self._derived:  # walk back through the cancelled chain to the failure
                src = self._derived[src]
            return {"cause": f"step {src!r} failed"}
        out = self.outcomes[src]
        e = self._in_edge[(src, step)]
        edge = f"{src} -> {step}"
        if out.state is Status.SUCCEEDED:
            why = f"step {src!r} chose action {out.action!r}, not {'/'.join(sorted(e.actions))!r}"
        elif e.group is not None:
            why = f"no member of {step!r}'s OR group was reached"
        else:
            why = f"step {src!r} was not reached"
        return {"cause": why, "edge": edge}

    def recovered(self, step: str) -> bool:
        """Whether ``step`` FAILED and every slot it feeds got its value from another OR member."""
        return is_recovered(self.plan, self.outcomes, self._winners, step, self._made_ready)

    def _made_ready(self, step: str) -> bool:
        return step in self.decided and step not in self._derived

    def recovered_failures(self) -> set[str]:
        """The FAILED steps whose failure a fallback recovered."""
        return {n for n, o in self.outcomes.items() if o.state is Status.FAILED and self.recovered(n)}

    def run_state(self) -> Status:
        """The final state of the run once :attr:`done` (see :func:`final_run_state`)."""
        return final_run_state(self.outcomes, self.recovered_failures(), bool(self.cancelled_by_user))


def is_recovered(plan: Plan, outcomes: Mapping[str, Outcome], winners: Mapping[str, Mapping[str, str]],
                 step: str, made_ready: Any = None) -> bool:
    """Whether FAILED ``step`` is recovered: every slot it feeds is an OR group that got another member's value.

    ``winners`` maps each step to its OR groups' winners; ``made_ready(v)``
    says whether ``v`` was made ready (default: every step with a winner was).
    A failing step that feeds nothing is not recovered.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> p = Plan.from_schema(WorkflowSchema("w", steps=tuple(StepSchema(n) for n in "abc"),
    ...     edges=(EdgeSchema("a", "c", group="g"), EdgeSchema("b", "c", group="g"))))
    >>> outs = {"a": Outcome.failed(), "b": Outcome.succeeded()}
    >>> is_recovered(p, outs, {"c": {"g": "b"}}, "a"), is_recovered(p, outs, {}, "a")
    (True, False)
    """
    out = outcomes.get(step)
    if out is None or out.state is not Status.FAILED or not plan.successors[step]:
        return False
    for v in plan.successors[step]:
        group = next(e.group for e in plan.incoming[v] if e.source == step)
        if group is None or group not in winners.get(v, {}):
            return False
        if made_ready is not None and not made_ready(v):
            return False
    return True


def final_run_state(outcomes: Mapping[str, Outcome], recovered: Iterable[str] = (),
                    cancelled: bool = False) -> Status:
    """The state of a finished run from its steps' ``outcomes``.

    FAILED when some failure is not ``recovered`` (a step cancelled by a
    failure always has one upstream); otherwise CANCELLED when the user
    ``cancelled`` the run, else SUCCEEDED.

    Examples
    --------
    >>> outs = {"a": Outcome.failed(), "b": Outcome.succeeded()}
    >>> final_run_state(outs), final_run_state(outs, {"a"}), final_run_state(outs, {"a"}, True)
    (<Status.FAILED: 'FAILED'>, <Status.SUCCEEDED: 'SUCCEEDED'>, <Status.CANCELLED: 'CANCELLED'>)
    """
    ok = set(recovered)
    if any(o.state is Status.FAILED and n not in ok for n, o in outcomes.items()):
        return Status.FAILED
    return Status.CANCELLED if cancelled else Status.SUCCEEDED


__all__ = [
    "Changes", "Edge", "Outcome", "Plan", "Readiness", "Verdict", "decide", "edge_status", "final_run_state",
    "is_recovered", "or_winner", "resolve_action",
]
