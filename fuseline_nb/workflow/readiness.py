"""The incremental readiness rules: :class:`Readiness` follows one run, finished step by finished step.

:mod:`fuseline_nb.workflow.rules` states the rules (DESIGN.md §3) and
evaluates them from scratch; this module holds the edge and verdict values
and the incremental form, which costs O(out-degree) per finished step and
nothing per step when a run starts.

Examples
--------
>>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
>>> schema = WorkflowSchema("wf", steps=(StepSchema("a"), StepSchema("b"), StepSchema("c")),
...     edges=(EdgeSchema("a", "b", "yes"), EdgeSchema("a", "c", "no")))
>>> r = Readiness(Plan.from_schema(schema))
>>> r.start()
['a']
>>> ch = r.finish("a", Outcome.succeeded("yes"))
>>> ch.ready, ch.skipped
(['b'], ['c'])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._readiness_end import final_run_state, is_recovered
from .plan import _PLAIN, Outcome, Plan
from .schema import DEFAULT_ACTION
from .status import SKIP_CONDITION, Status

_NOT_REACHED = Outcome.not_reached()
_CANCELLED = Outcome.cancelled()
_FAILED = Status.FAILED


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


# Enum members read as module globals: ``Status.SUCCEEDED`` is a class attribute
# lookup through the enum's metaclass, ~20x slower on Python 3.11 (per finished step, per edge).
_SUCCEEDED, _SKIPPED_S, _CANCELLED_S = Status.SUCCEEDED, Status.SKIPPED, Status.CANCELLED
_E_PENDING, _E_ACTIVE, _E_INACTIVE, _E_BROKEN = Edge.PENDING, Edge.ACTIVE, Edge.INACTIVE, Edge.BROKEN
_WAIT, _READY, _SKIP, _CANCEL = Verdict.WAIT, Verdict.READY, Verdict.SKIP, Verdict.CANCEL


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
        return _E_PENDING
    st = outcome.state
    if st is _SUCCEEDED:
        return _E_ACTIVE if outcome.action in actions else _E_INACTIVE
    if st is _SKIPPED_S:
        if outcome.skip_reason == SKIP_CONDITION and DEFAULT_ACTION in actions:
            return _E_ACTIVE
        return _E_INACTIVE
    if st is _FAILED or st is _CANCELLED_S:
        return _E_BROKEN
    return _E_PENDING


@dataclass
class Changes:
    """What one finished step decided downstream (in decision order)."""

    ready: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


_SWEEP_FROM = 4096  # Readiness._open may hold this many finished steps before a sweep
_NONE: tuple[str, ...] = ()  # an empty part of a Changes (shared: read only)
#: what :meth:`Readiness.finish` answers when nothing downstream was decided (shared: tuples, read only)
NOTHING: Changes = Changes(_NONE, _NONE, _NONE)  # type: ignore[arg-type]


class Readiness:
    """Incremental form of :func:`~fuseline_nb.workflow.rules.decide` for one run.

    Feed it each step's :class:`Outcome` in completion order with
    :meth:`finish`; it returns the steps that became ready, and those skipped
    or cancelled (transitively — their outcomes are recorded too). Each step
    is made ready at most once. :attr:`order` numbers every recorded outcome;
    :meth:`cause` says which step decided a skipped or cancelled one.

    A new run costs nothing per step: counters exist only for the steps some
    but not all of whose slots are active (a join waiting), and OR-group
    records only for steps with groups once a member finished.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> s = WorkflowSchema("w", steps=tuple(StepSchema(n) for n in "abc"),
    ...     edges=(EdgeSchema("a", "c", group="g"), EdgeSchema("b", "c", group="g")))
    >>> r = Readiness(Plan.from_schema(s))
    >>> r.start()
    ['a', 'b']
    >>> list(r.finish("a", Outcome.failed()).ready)
    []
    >>> r.finish("b", Outcome.succeeded()).ready
    ['c']
    >>> r.winners("c"), r.recovered("a")
    ({'g': 'b'}, True)
    >>> list(r.finish("c", Outcome.succeeded()).ready), r.run_state()
    ([], <Status.SUCCEEDED: 'SUCCEEDED'>)
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.outcomes: dict[str, Outcome] = {}  # in completion order (see order)
        # steps made ready (or being skipped/cancelled), kept after their outcome until a sweep: a
        # finished step is not taken out one by one (a random access into a big set per step)
        self._open: set[str] = set()
        self._sweep_at = _SWEEP_FROM  # _open's size that makes finish() drop the steps with outcomes
        self.decided = _Decided(self.outcomes, self._open)  # steps made ready, skipped or cancelled
        self._order: dict[str, int] = {}
        self._failed: list[str] = []  # steps with a FAILED outcome, in completion order
        self.cancelled_by_user: set[str] = set()  # steps the user's cancel ended
        self._derived: dict[str, str] = {}  # step skipped/cancelled by the rules -> the step that decided it
        self._winners: dict[str, dict[str, str]] = {}
        self._left: dict[str, int] = {}  # step with some slots active -> slots not yet active
        # step with OR groups -> group -> [unresolved members, first broken member, winner], made when needed
        self._groups: dict[str, dict[str, list[Any]]] = {}

    @property
    def order(self) -> Mapping[str, int]:
        """``step -> completion sequence`` of every recorded outcome (1 first), made when asked.

        The outcomes dict keeps completion order, so a run keeps no number per step.
        """
        if len(self._order) != len(self.outcomes):
            self._order = {n: i for i, n in enumerate(self.outcomes, 1)}
        return self._order

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
        """Record ``outcome`` for ``step`` and propagate it downstream.

        When nothing downstream was decided the answer is one shared empty
        :class:`Changes`, and an empty part of an answer is a shared empty
        tuple (read it, do not change it).
        """
        if step in self.outcomes:
            return NOTHING
        ready: list[str] | None = None  # each made when its first step is decided (a fan-out step decides none)
        skipped: list[str] | None = None
        cancelled: list[str] | None = None
        plan = self.plan
        outcomes, held, successors, labels = self.outcomes, self._open, plan.successors, plan.labels
        left_of, slots, incoming = self._left, plan.slots, plan.incoming
        work = [(step, outcome)]
        while work:
            u, out = work.pop()
            outcomes[u] = out
            state = out.state
            if state is _FAILED:
                self._failed.append(u)
            succ = successors[u]
            if not succ:
                continue
            lab = labels.get(u)
            action = out.action if state is _SUCCEEDED else None
            for i, v in enumerate(succ):
                if v in outcomes or v in held:
                    continue
                actions, group = _PLAIN if lab is None else lab[i]
                if action is not None:  # edge_status of a SUCCEEDED source, inline (every step but failures)
                    status = _E_ACTIVE if action in actions else _E_INACTIVE
                else:
                    status = edge_status(out, actions)
                if group is not None:
                    verdict = self._update(v, u, group, status)
                elif status is _E_BROKEN:
                    verdict = _CANCEL
                elif status is _E_INACTIVE:
                    verdict = _SKIP
                else:  # an active AND slot (_update's last part, inline): ready when it is the last
                    left = left_of.pop(v, None)
                    if left is None:  # the first of its slots to become active
                        left = slots.get(v) or len(incoming[v])
                    if left > 1:
                        left_of[v] = left - 1
                        continue
                    verdict = _READY
                if verdict is _WAIT:
                    continue
                held.add(v)
                if verdict is _READY:
                    if ready is None:
                        ready = [v]
                    else:
                        ready.append(v)
                    continue
                self._derived[v] = self._culprit(v, group, u)
                if verdict is _SKIP:
                    if skipped is None:
                        skipped = []
                    skipped.append(v)
                    work.append((v, _NOT_REACHED))
                else:
                    if cancelled is None:
                        cancelled = []
                    cancelled.append(v)
                    work.append((v, _CANCELLED))
        if ready is None and skipped is None and cancelled is None:
            return NOTHING
        if len(held) > self._sweep_at:  # many made ready since the last sweep: forget those that finished
            held.difference_update([n for n in held if n in outcomes])
            self._sweep_at = max(_SWEEP_FROM, 2 * len(held))
        return Changes(_NONE if ready is None else ready, _NONE if skipped is None else skipped,  # type: ignore[arg-type]
                       _NONE if cancelled is None else cancelled)  # type: ignore[arg-type]

    def _culprit(self, v: str, group: str | None, u: str) -> str:
        if group is not None:
            first_broken = self._groups[v][group][1]
            if first_broken is not None:
                return str(first_broken)
        return u

    def _update(self, v: str, u: str, group: str | None, status: Edge) -> Verdict:
        if group is not None:
            gs = self._groups.get(v)
            if gs is None:
                gs = self._groups[v] = {g: [n, None, None] for g, n in self.plan.groups[v].items()}
            g = gs[group]
            if g[2] is not None:  # the group already has its winner
                return _WAIT
            g[0] -= 1
            if status is _E_ACTIVE:
                g[2] = u
                self._winners.setdefault(v, {})[group] = u
            else:
                if status is _E_BROKEN and g[1] is None:
                    g[1] = u
                if g[0]:
                    return _WAIT
                status = _E_INACTIVE if g[1] is None else _E_BROKEN
        if status is _E_BROKEN:
            return _CANCEL
        if status is _E_INACTIVE:
            return _SKIP
        left = self._left.pop(v, None)
        if left is None:  # the first of its slots to become active
            left = self.plan.slots.get(v) or len(self.plan.incoming[v])
        if left > 1:
            self._left[v] = left - 1
            return _WAIT
        return _READY

    def cancel(self) -> list[str]:
        """The user cancelled the run: every step without an outcome is CANCELLED (returned).

        Ready steps (queued or running) are among them: their late outcomes
        are ignored by :meth:`finish`.
        """
        names = [n for n in self.plan.order if n not in self.outcomes]
        self.cancelled_by_user.update(names)
        for n in names:
            self.outcomes[n] = _CANCELLED
        self._open.clear()
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
        e = next(e for e in self.plan.incoming[step] if e.source == src)
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
        return {n for n in self._failed if self.recovered(n)}

    def run_state(self) -> Status:
        """The final state of the run once :attr:`done` (see :func:`final_run_state`)."""
        failed = {n: self.outcomes[n] for n in self._failed}  # only failures decide; the run's end costs O(failures)
        return final_run_state(failed, self.recovered_failures(), bool(self.cancelled_by_user))


class _Decided(AbstractSet[str]):
    """The steps a :class:`Readiness` decided: those with an outcome, and those made ready without one yet."""

    __slots__ = ("_open", "_outcomes")

    def __init__(self, outcomes: dict[str, Outcome], open_: set[str]) -> None:
        self._outcomes = outcomes
        self._open = open_

    def __contains__(self, step: object) -> bool:
        return step in self._outcomes or step in self._open

    def __iter__(self) -> Iterator[str]:
        yield from self._outcomes
        yield from (n for n in self._open if n not in self._outcomes)

    def __len__(self) -> int:
        return len(self._outcomes) + sum(1 for n in self._open if n not in self._outcomes)

    def add(self, step: str) -> None:
        """Mark ``step`` decided (made ready)."""
        if step not in self._outcomes:
            self._open.add(step)

    def update(self, steps: Iterable[str]) -> None:
        """Mark every step of ``steps`` decided."""
        for n in steps:
            self.add(n)


__all__ = ["Changes", "Edge", "Readiness", "Verdict", "edge_status", "final_run_state", "is_recovered"]
