"""The build-time check: refuse an AND join that can never run.

An AND join runs only when every slot is active (DESIGN.md §3). A step
chooses one action per run, so a join whose slots need *different* actions
of the same branching step — ``(g - "a") >> x >> j`` and
``(g - "b") >> y >> j`` — is skipped on every run. That is always a mistake
(the user meant to merge the branches), so building the workflow refuses it
and shows the OR form. Edges from one step under several actions into the
same target are one slot, and stay legal.

For each step we keep what reaching it *requires*: for some branching steps,
the set of actions one of which they must choose. A plain slot from ``u``
requires what ``u`` requires, plus ``u``'s edge actions when ``u`` branches;
an OR group requires only what all its members require; an AND join requires
what all its slots require — and two slots requiring disjoint actions of one
step is the contradiction.

Examples
--------
>>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
>>> from fuseline_nb.workflow.rules import Plan
>>> s = WorkflowSchema("w", steps=tuple(StepSchema(n) for n in ("g", "x", "y", "j")),
...     edges=(EdgeSchema("g", "x", "a"), EdgeSchema("g", "y", "b"),
...            EdgeSchema("x", "j"), EdgeSchema("y", "j")))
>>> impossible_join(Plan.from_schema(s))
('j', 'g', ('x', frozenset({'a'})), ('y', frozenset({'b'})))
"""

from __future__ import annotations

from collections.abc import Mapping
from graphlib import TopologicalSorter

from ..errors import ImpossibleJoinError
from .rules import Plan
from .schema import DEFAULT_ACTION

Needs = Mapping[str, frozenset[str]]  # branching step -> actions one of which it must choose
_NONE: dict[str, frozenset[str]] = {}

Conflict = tuple[str, str, tuple[str, frozenset[str]], tuple[str, frozenset[str]]]


def impossible_join(plan: Plan) -> Conflict | None:
    """The first AND join (in step order) whose slots need different actions of one step.

    Returns ``(join, branching step, (source, actions), (other source, actions))``
    or ``None`` when every join can run.
    """
    branching = {u for u, acts in plan.actions.items() if acts - {DEFAULT_ACTION}}
    needs: dict[str, Needs] = {}
    for v in _upstream_first(plan):
        slots: list[tuple[str, Needs]] = []
        groups: dict[str, list[tuple[str, Needs]]] = {}
        for e in plan.incoming[v]:
            need = needs[e.source]
            if e.source in branching:
                need = {**need, e.source: e.actions}
            if e.group is None:
                slots.append((e.source, need))
            else:
                groups.setdefault(e.group, []).append((e.source, need))
        for members in groups.values():
            slots.append((" | ".join(src for src, _ in members), _either([n for _, n in members])))
        merged: dict[str, tuple[str, frozenset[str]]] = {}
        for source, need in slots:
            for g, acts in need.items():
                seen = merged.get(g)
                if seen is None:
                    merged[g] = (source, acts)
                    continue
                both = seen[1] & acts
                if not both:
                    return v, g, seen, (source, acts)
                merged[g] = (seen[0], both)
        needs[v] = {g: acts for g, (_, acts) in merged.items()} if merged else _NONE
    return None


def _upstream_first(plan: Plan) -> list[str]:
    """The steps with every step before its successors (a schema's order need not be one)."""
    sorter = TopologicalSorter({v: [e.source for e in inc] for v, inc in plan.incoming.items()})
    return list(sorter.static_order())


def _either(members: list[Needs]) -> Needs:
    """What an OR group needs: only what every member needs (any of their actions)."""
    common = set(members[0]).intersection(*members[1:])
    return {g: frozenset().union(*(m[g] for m in members)) for g in common}


def check_joins(plan: Plan) -> None:
    """Raise :class:`~fuseline_nb.errors.ImpossibleJoinError` for an AND join that can never run.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> g, x, y, j = (FunctionStep(lambda: None, name=n) for n in ("g", "x", "y", "j"))
    >>> _ = (g - "a") >> x >> j
    >>> _ = (g - "b") >> y >> j
    >>> Workflow(outputs=[j])
    Traceback (most recent call last):
    fuseline_nb.errors.ImpossibleJoinError: step 'j' can never run: it is an AND join (every input must be reached), but its input from 'x' needs step 'g' to choose action 'a' and its input from 'y' needs action 'b', and 'g' chooses one action per run. To run 'j' on whichever branch was taken, merge the branches with an OR group: (x | y) >> j, or one parameter Depends(x, y)
    """
    found = impossible_join(plan)
    if found is not None:
        join, branch, (src_a, acts_a), (src_b, acts_b) = found
        raise ImpossibleJoinError(join, branch, _label(acts_a), _label(acts_b), src_a, src_b)


def _label(actions: frozenset[str]) -> str:
    return "/".join(sorted(actions))


__all__ = [
    "check_joins",
    "impossible_join",
]
