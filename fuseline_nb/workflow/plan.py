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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..errors import UnknownActionError
from .schema import DEFAULT_ACTION, WorkflowSchema, action_set
from .status import SKIP_CONDITION, SKIP_NOT_REACHED, Status


class StepOrder(list):  # type: ignore[type-arg]
    """A plan's step names in order, with each name's position (made once, on first use, then shared).

    The broker finds a step's record by its position, and a DuckDB history its
    row: both read this one dict (a million-step plan: ~66 MB once, not once per
    reader). Read-only by convention, as the plan is. Pickles as a plain list.

    Examples
    --------
    >>> order = StepOrder(["a", "b"])
    >>> order.positions, order.positions is order.positions
    ({'a': 0, 'b': 1}, True)
    >>> import pickle; type(pickle.loads(pickle.dumps(order))).__name__
    'list'
    """

    __slots__ = ("_positions",)
    _positions: dict[str, int]

    @property
    def positions(self) -> dict[str, int]:
        """Step name -> its index in this order."""
        try:
            return self._positions
        except AttributeError:
            made = self._positions = {n: i for i, n in enumerate(self)}
            return made

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))


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


class _In(Protocol):
    """One incoming slot of a step: its source step, the actions that take the edge, its OR group.

    A plan's ``incoming`` entries are :class:`~fuseline_nb.workflow.schema.EdgeSchema`
    objects or :class:`_Merged` records; only these three attributes are theirs to read.
    """

    @property
    def source(self) -> str: ...  # the step the edge comes from

    @property
    def actions(self) -> frozenset[str]: ...  # the source's actions that take the edge

    @property
    def group(self) -> str | None: ...  # the OR group on the target, or None (an AND edge)


class _Merged(NamedTuple):
    """An incoming slot that is not one schema edge: parallel edges merged, or one shared by many targets."""

    source: str
    actions: frozenset[str]
    group: str | None


_DEFAULT = action_set(DEFAULT_ACTION)
_NO_ACTIONS: frozenset[str] = frozenset()
_NO_GROUP = {None}
_PLAIN = (_DEFAULT, None)  # the label of an ``a >> b`` edge: (actions, group)


class _Actions(Mapping[str, frozenset[str]]):
    """``step -> its outgoing action labels``, stored only for steps with an edge that is not plain."""

    __slots__ = ("_branching", "_successors")

    def __init__(self, branching: dict[str, frozenset[str]], successors: dict[str, tuple[str, ...]]) -> None:
        self._branching = branching
        self._successors = successors

    def __getitem__(self, step: str) -> frozenset[str]:
        got = self._branching.get(step)
        if got is not None:
            return got
        return _DEFAULT if self._successors[step] else _NO_ACTIONS

    def __iter__(self) -> Iterator[str]:
        return iter(self._successors)

    def __len__(self) -> int:
        return len(self._successors)


class Plan:
    """A schema compiled for the rules: incoming and outgoing edges per step.

    Parallel edges ``u -> v`` with different actions are one edge taken on
    any of them. ``incoming[v]`` holds ``v``'s slots (objects with
    ``source``, ``actions`` and ``group``), ``successors[u]`` the steps ``u``
    feeds, and ``labels[u]`` — only for a step with an edge that is not a
    plain ``u >> v`` — each successor's ``(actions, group)``. Equal tuples
    are one object: the steps of a 1→N→1 fan-out share their incoming and
    outgoing tuples, so a plan costs two dict entries per step.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> p = Plan.from_schema(WorkflowSchema("w", steps=(StepSchema("a"), StepSchema("b")),
    ...                                     edges=(EdgeSchema("a", "b"),)))
    >>> p.roots, p.successors["a"], p.actions["a"], p.incoming["b"][0].source
    (['a'], ('b',), frozenset({'default'}), 'a')
    """

    __slots__ = ("__weakref__", "actions", "groups", "incoming", "labels", "order", "roots",
                 "slots", "successors")

    def __init__(self, order: list[str], incoming: dict[str, tuple[_In, ...]],
                 successors: dict[str, tuple[str, ...]],
                 labels: dict[str, tuple[tuple[frozenset[str], str | None], ...]],
                 branching: dict[str, frozenset[str]], groups: dict[str, dict[str, int]],
                 roots: list[str]) -> None:
        self.order = order
        self.incoming = incoming
        self.successors = successors
        self.labels = labels
        self.actions: Mapping[str, frozenset[str]] = _Actions(branching, successors)
        #: Steps with OR groups: step -> group -> members; ``slots`` their slot counts (plain edges + groups).
        self.groups = groups
        self.slots = {v: sum(1 for e in incoming[v] if e.group is None) + len(gs) for v, gs in groups.items()}
        self.roots = roots

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
        # The two tables that group the edges (by target, by source) become ``incoming`` and
        # ``successors``: each step's entry is replaced in place by its final value (and steps without
        # edges are added at the end), so every step costs two entries, not four (a large workflow's
        # compile is bound by these name-keyed tables). Their order is therefore the edges' order; the
        # steps' order is ``order``.
        order = StepOrder([s.name for s in schema.steps])
        incoming: dict[str, Any] = {}  # v -> its one edge, or a list of them; then its slots
        successors: dict[str, Any] = {}  # u -> its one edge, or a list of them; then its successors
        for e in schema.edges:  # both sides written out: no function call per edge in this hot loop
            v = e.target
            got = incoming.get(v)
            if got is None:
                incoming[v] = e
            elif got.__class__ is list:
                got.append(e)
            else:
                incoming[v] = [got, e]
            u = e.source
            got = successors.get(u)
            if got is None:
                successors[u] = e
            elif got.__class__ is list:
                got.append(e)
            else:
                successors[u] = [got, e]
        fed, feeding = len(incoming), len(successors)  # steps with edges in, with edges out
        shared: dict[Any, Any] = {}  # a step's one incoming edge -> that edge (seen once) or the shared slot
        single: dict[str, tuple[str]] = {}  # a step's one successor -> the shared tuple
        labels: dict[str, tuple[tuple[frozenset[str], str | None], ...]] = {}
        branching: dict[str, frozenset[str]] = {}
        groups: dict[str, dict[str, int]] = {}
        roots: list[str] = []
        ends = 0  # steps without successors
        last_source: str | None = None  # the source whose plain slot the step before took from ``shared``
        last_slot: Any = None
        last_target: str | None = None  # the join whose shared 1-tuple the step before took from ``single``
        last_tuple: tuple[str, ...] = ()
        for n in order:
            got = incoming.get(n)
            if got is None:
                incoming[n] = ()
                roots.append(n)
            elif got.__class__ is not list:
                group = got.group
                u = got.source
                if u is last_source and group is None and got.action == DEFAULT_ACTION:
                    incoming[n] = last_slot  # a fan-out's next step: the slot its neighbour took
                elif (out := successors[u]).__class__ is not list and (
                        out.__class__ is not tuple or len(out) == 1):
                    incoming[n] = (got,)  # the source feeds only this step: nothing to share
                else:
                    key = u if group is None and got.action == DEFAULT_ACTION else (u, got.action, group)
                    one = shared.get(key)
                    if one is None:  # the first step fed by this edge: its own schema edge
                        shared[key] = got
                        one = (got,)
                    else:
                        if one.__class__ is not tuple:  # the second: one slot for every step it feeds
                            one = shared[key] = (_Merged(u, action_set(got.action), group),)
                        if key is u:  # a plain edge: the source's next plain steps take it at once
                            last_source, last_slot = u, one
                    incoming[n] = one
                if group is not None:
                    groups[n] = {group: 1}
            else:
                sources = [e.source for e in got]
                slots = tuple(got) if len(set(sources)) == len(sources) else _merge(got, "source")
                incoming[n] = slots
                named = [e.group for e in slots if e.group is not None]
                if named:
                    g = groups[n] = {}
                    for group in named:
                        g[group] = g.get(group, 0) + 1
            got = successors.get(n)
            if got is None:
                successors[n] = ()
                ends += 1
                continue
            if got.__class__ is not list:
                v = got.target
                if v is last_target:  # a fan-in's next source: the tuple its neighbour took
                    successors[n] = last_tuple
                elif (into := incoming[v]).__class__ is not list and (
                        into.__class__ is not tuple or len(into) == 1):
                    successors[n] = (v,)  # only this step feeds v: nothing to share
                else:
                    one = single.get(v)
                    if one is None:
                        one = single[v] = (v,)
                    successors[n] = last_tuple = one
                    last_target = v
                if got.group is not None or got.action != DEFAULT_ACTION:
                    labels[n] = ((action_set(got.action), got.group),)
                    branching[n] = action_set(got.action)
            else:
                targets = [e.target for e in got]
                if len(set(targets)) == len(targets):  # no parallel edges: each the schema's own
                    successors[n] = tuple(targets)
                    if {e.action for e in got} == _DEFAULT and {e.group for e in got} == _NO_GROUP:
                        continue
                    outs: Any = got
                else:
                    outs = _merge(got, "target")
                    successors[n] = tuple(e.target for e in outs)
                labels[n] = tuple((e.actions, e.group) for e in outs)
                acts = frozenset().union(*(e.actions for e in outs))
                branching[n] = _DEFAULT if acts == _DEFAULT else acts
        if len(order) - len(roots) != fed or len(order) - ends != feeding:
            missing = (set(incoming) | set(successors)) - set(order)
            raise KeyError(f"edges name steps the schema does not have: {sorted(missing)}")
        return cls(order, incoming, successors, labels, branching, groups, roots)


def _merge(edges: list[Any], end: str) -> tuple[Any, ...]:
    """``edges`` into (or out of) one step, parallel ones (same ``end``) merged into one taken on any action.

    Unmerged edges stay the schema's own objects.
    """
    seen: dict[str, int] = {}
    slots: list[Any] = []
    for e in edges:
        other = getattr(e, end)
        at = seen.get(other)
        if at is None:
            seen[other] = len(slots)
            slots.append(e)
            continue
        m = slots[at]
        acts = m.actions | {e.action} if e.action not in m.actions else m.actions
        merged = _Merged(m.source, acts, m.group if m.group is not None else e.group)
        slots[at] = _MergedOut(e.target, merged) if end == "target" else merged
    return tuple(slots)


class _MergedOut(NamedTuple):
    """An outgoing merged edge (its target, and the merged slot's fields)."""

    target: str
    slot: _Merged

    @property
    def source(self) -> str:
        return self.slot.source

    @property
    def actions(self) -> frozenset[str]:
        return self.slot.actions

    @property
    def group(self) -> str | None:
        return self.slot.group


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
    if result.__class__ is not str:  # a str subclass (a StrEnum member) names an action by its text
        result = str.__str__(result)
    acts = plan.actions[step]
    if result in acts:
        return result
    if not acts or DEFAULT_ACTION in acts:
        return DEFAULT_ACTION
    raise UnknownActionError(step, result, acts)


__all__ = ["Outcome", "Plan", "StepOrder", "resolve_action"]
