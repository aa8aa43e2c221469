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

from .plan import Outcome, Plan, resolve_action
from .readiness import Changes, Edge, Readiness, Verdict, edge_status, final_run_state, is_recovered

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


__all__ = [
    "Changes", "Edge", "Outcome", "Plan", "Readiness", "Verdict", "decide", "edge_status", "final_run_state",
    "is_recovered", "or_winner", "resolve_action",
]
