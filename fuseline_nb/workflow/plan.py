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


__all__ = ["Outcome", "Plan", "resolve_action"]
