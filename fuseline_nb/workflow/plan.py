"""What the rules work on: a step's :class:`Outcome` and the compiled :class:`Plan`.

:mod:`fuseline_nb.workflow.rules` states the rules over these; this module
holds only the data (and :func:`resolve_action`, which turns a result into
the action a step chose).

Examples
--------
>>> Outcome.succeeded("yes").action
'yes'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import UnknownActionError
from .schema import DEFAULT_ACTION, WorkflowSchema
from .status import SKIP_CONDITION, SKIP_NOT_REACHED, Status


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


class _In(NamedTuple):
    """One incoming slot: the source step, the actions that take the edge, its OR group."""

    source: str
    actions: frozenset[str]
    group: str | None


_DEFAULT = frozenset((DEFAULT_ACTION,))
_NO_ACTIONS: frozenset[str] = frozenset()


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
        """Compile ``schema`` (once per schema object: a plan is only read, so the
        workflow, the broker and the join check share it)."""
        plan = schema.__dict__.get("_plan")
        if plan is None:
            plan = cls._compile(schema)
            object.__setattr__(schema, "_plan", plan)  # frozen: not a field, a cache
        return plan  # type: ignore[no-any-return]

    @classmethod
    def _compile(cls, schema: WorkflowSchema) -> Plan:
        order = [s.name for s in schema.steps]
        merged: dict[tuple[str, str], list[Any]] = {}  # (u, v) -> [actions, group]
        for e in schema.edges:
            m = merged.get((e.source, e.target))
            if m is None:
                merged[(e.source, e.target)] = [(e.action,), e.group]
            else:
                if e.action not in m[0]:
                    m[0] = (*m[0], e.action)
                if m[1] is None:
                    m[1] = e.group
        incoming: dict[str, list[_In]] = {n: [] for n in order}
        successors: dict[str, list[str]] = {n: [] for n in order}
        out: dict[str, set[str]] = {}
        for (u, v), (acts, group) in merged.items():
            actions = _DEFAULT if acts == (DEFAULT_ACTION,) else frozenset(acts)
            incoming[v].append(_In(u, actions, group))
            successors[u].append(v)
            mine = out.get(u)
            if mine is None:
                out[u] = set(actions)
            else:
                mine |= actions
        roots = [n for n in order if not incoming[n]]
        actions_of = dict.fromkeys(order, _NO_ACTIONS)
        for u, acts_u in out.items():
            actions_of[u] = _DEFAULT if acts_u == _DEFAULT else frozenset(acts_u)
        return cls(order, incoming, successors, actions_of, roots)


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


__all__ = ["Outcome", "Plan", "resolve_action"]
