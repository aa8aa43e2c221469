"""The schema's parts: a step (:class:`StepSchema`) and an edge (:class:`EdgeSchema`), and how many are made fast.

``step_schema`` / ``edge_schema`` (and unpickling, reading JSON, ``to_schema``)
fill a writable twin with the same slots (``_StepFill``, ``_EdgeFill``) and
switch its class: a frozen dataclass's ``__init__`` pays an
``object.__setattr__`` per field. Public in :mod:`fuseline_nb.workflow.schema`.

Examples
--------
>>> from fuseline_nb.workflow.schema import EdgeSchema, edge_schema
>>> edge_schema("a", "b", "default", None) == EdgeSchema("a", "b")
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from ..limits import Bound, Name, Short

DEFAULT_ACTION = "default"


@dataclass(frozen=True, slots=True)
class StepSchema:
    """One step: its unique name, its kind and where its code lives.

    ``fingerprint`` is the step's code fingerprint
    (:mod:`fuseline_nb.workflow.fingerprint`), ``cache`` whether its results
    may be reused, and ``reads`` the run inputs it reads by name (``None``:
    it may read any of them). The broker builds cache keys from these
    without user code; they are not part of the structure (the workflow id).

    Examples
    --------
    >>> StepSchema("load", kind="function", target="etl:load").name
    'load'
    """

    name: Name
    kind: Annotated[str, Bound(min_length=1, max_length=64)] = "step"  # step | function | async | batch
    target: Annotated[str, Bound(max_length=4096)] = ""  # "module:qualname" of the class or function, for people
    policies: tuple[dict[str, Any], ...] = ()
    conditional: bool = False  # whether a Depends(condition=...) may skip it
    fingerprint: Short = ""
    cache: bool = True
    reads: tuple[Annotated[str, Bound(max_length=4096)], ...] | None = None
    #: Run inputs the step needs (parameters with no dependency and no default).
    inputs: tuple[Name, ...] = ()

    def __str__(self) -> str:
        # A step schema reads as its name, as Fuseline's name-keyed steps do
        # (``f"{step}"`` in a loop over ``schema.steps``).
        return self.name

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {"name": self.name, "kind": self.kind, "target": self.target,
                "policies": [dict(p) for p in self.policies], "conditional": self.conditional,
                "fingerprint": self.fingerprint, "cache": self.cache,
                "reads": None if self.reads is None else list(self.reads), "inputs": list(self.inputs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepSchema:
        """Build from :meth:`to_dict` output."""
        return cls(
            name=d["name"],
            kind=d.get("kind", "step"),
            target=d.get("target", ""),
            policies=tuple(dict(p) for p in d.get("policies", ())),
            conditional=bool(d.get("conditional", False)),
            fingerprint=str(d.get("fingerprint", "")),
            cache=bool(d.get("cache", True)),
            reads=None if d.get("reads") is None else tuple(d["reads"]),
            inputs=tuple(d.get("inputs", ())),
        )


@dataclass(frozen=True, slots=True)
class EdgeSchema:
    """An edge ``source -> target`` taken when ``source`` returns ``action``.

    ``group`` names the OR group on ``target`` the edge belongs to (``None``:
    a plain AND edge).

    Examples
    --------
    >>> EdgeSchema("review", "publish", action="approve").action
    'approve'
    """

    source: Name
    target: Name
    action: Name = DEFAULT_ACTION
    group: Name | None = None

    @property
    def actions(self) -> frozenset[str]:
        """The actions of ``source`` that take this edge (its one action), as a plan's slots name them.

        Examples
        --------
        >>> EdgeSchema("review", "publish", action="approve").actions
        frozenset({'approve'})
        """
        return action_set(self.action)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {"source": self.source, "target": self.target, "action": self.action, "group": self.group}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EdgeSchema:
        """Build from :meth:`to_dict` output."""
        return cls(d["source"], d["target"], d.get("action", DEFAULT_ACTION), d.get("group"))


_ACTION_SETS: dict[str, frozenset[str]] = {}


def action_set(action: str) -> frozenset[str]:
    """``frozenset({action})``, one shared object per action.

    Examples
    --------
    >>> action_set("go") is action_set("go")
    True
    """
    got = _ACTION_SETS.get(action)
    if got is None:
        got = _ACTION_SETS[action] = frozenset((action,))
    return got


_set = object.__setattr__


class _StepFill:
    """A writable twin of :class:`StepSchema` (same slots): filled by plain stores, then made a StepSchema."""

    __slots__ = StepSchema.__slots__  # type: ignore[attr-defined]

    def __init__(self, name: str, kind: str, target: str, policies: tuple[dict[str, Any], ...],
                 conditional: bool, fingerprint: str, cache: bool, reads: tuple[str, ...] | None,
                 inputs: tuple[str, ...]) -> None:
        self.name = name
        self.kind = kind
        self.target = target
        self.policies = policies
        self.conditional = conditional
        self.fingerprint = fingerprint
        self.cache = cache
        self.reads = reads
        self.inputs = inputs
        self.__class__ = StepSchema  # type: ignore[assignment]


class _EdgeFill:
    """A writable twin of :class:`EdgeSchema`, as :class:`_StepFill`."""

    __slots__ = EdgeSchema.__slots__  # type: ignore[attr-defined]

    def __init__(self, source: str, target: str, action: str, group: str | None) -> None:
        self.source = source
        self.target = target
        self.action = action
        self.group = group
        self.__class__ = EdgeSchema  # type: ignore[assignment]


def step_schema(name: str, kind: str, target: str, policies: tuple[dict[str, Any], ...], conditional: bool,
                fingerprint: str, cache: bool, reads: tuple[str, ...] | None, inputs: tuple[str, ...]) -> StepSchema:
    """A :class:`StepSchema` from all its field values in order, without ``__init__``'s setattr per field.

    Examples
    --------
    >>> step_schema("a", "function", "m:f", (), False, "", True, None, ()) == StepSchema("a", "function", "m:f")
    True
    """
    return _StepFill(name, kind, target, policies, conditional, fingerprint, cache, reads,  # type: ignore[return-value]
                     inputs)


def edge_schema(source: str, target: str, action: str, group: str | None) -> EdgeSchema:
    """An :class:`EdgeSchema`, made as :func:`step_schema` makes steps.

    Examples
    --------
    >>> edge_schema("a", "b", "default", None) == EdgeSchema("a", "b")
    True
    """
    return _EdgeFill(source, target, action, group)  # type: ignore[return-value]


#: The fields of StepSchema and EdgeSchema in the order step_schema / edge_schema take them.
_STEP_FIELDS = ("name", "kind", "target", "policies", "conditional", "fingerprint", "cache", "reads", "inputs")
_EDGE_FIELDS = ("source", "target", "action", "group")
