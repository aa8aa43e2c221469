"""The serialisable description of a workflow: what the broker needs, no user code.

A :class:`WorkflowSchema` names every step and edge. Brokers decide readiness
from it alone; workers map step names back to the step objects they hold.

Examples
--------
>>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
>>> s = WorkflowSchema("wf", "1", steps=(StepSchema("a"), StepSchema("b")),
...                    edges=(EdgeSchema("a", "b"),), outputs=("b",))
>>> WorkflowSchema.from_json(s.to_json()) == s
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Annotated, Any

from ..errors import MissingInputError
from ..limits import Bound, Label, Name, Short
from .columns import Column
from .shipped import _shipped_schema, refer_to_shipped, remember_shipped

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


@dataclass(frozen=True)
class WorkflowSchema:
    """A workflow as data: id, version, steps (in a topological order) and edges.

    Examples
    --------
    >>> s = WorkflowSchema("wf", "1", steps=(StepSchema("a"),))
    >>> s.step_names
    ('a',)
    >>> s.to_dict()["workflow_id"]
    'wf'
    """

    workflow_id: Name
    version: Annotated[str, Bound(min_length=1, max_length=128)] = "1"
    steps: tuple[StepSchema, ...] = ()
    edges: tuple[EdgeSchema, ...] = ()
    outputs: tuple[Name, ...] = ()
    name: Label = ""
    policies: tuple[dict[str, Any], ...] = field(default=())

    def __reduce__(self) -> tuple[Any, ...]:
        ref = self.__dict__.get("_shipped_from")
        if ref is not None:  # a worker's copy of a schema its kernel shipped: named, not sent back
            return _shipped_schema, ref
        # Steps and edges as columns, one list per field made while pickling (no tuple per step kept
        # alive by the pickler's memo; a name or fingerprint shared by many steps is one object,
        # pickled once), with the structure key when known: a 1M-step schema crosses a pipe in a second.
        steps = tuple(Column(self.steps, attrgetter(f)) for f in _STEP_FIELDS)
        edges = tuple(Column(self.edges, attrgetter(f)) for f in _EDGE_FIELDS)
        return _schema_from_columns, (self.workflow_id, self.version, steps, edges, self.outputs, self.name,
                                      self.policies, self.__dict__.get("_structure_key"))

    @property
    def step_names(self) -> tuple[str, ...]:
        """The step names in the schema's (topological) order."""
        return tuple(s.name for s in self.steps)

    def fingerprints(self) -> dict[str, str]:
        """``{step: code fingerprint}`` as carried by the schema.

        Examples
        --------
        >>> WorkflowSchema("wf", steps=(StepSchema("a", fingerprint="ab12"),)).fingerprints()
        {'a': 'ab12'}
        """
        return {s.name: s.fingerprint for s in self.steps}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (the wire and YAML form)."""
        return {
            "workflow_id": self.workflow_id,
            "version": self.version,
            "name": self.name,
            "steps": [s.to_dict() for s in self.steps],
            "edges": [e.to_dict() for e in self.edges],
            "outputs": list(self.outputs),
            "policies": [dict(p) for p in self.policies],
        }

    def to_yaml(self) -> str:
        """The YAML text ``wf.export(path)`` writes (steps keyed by name).

        Examples
        --------
        >>> schema = WorkflowSchema("w", steps=(StepSchema("load"),), outputs=("load",))
        >>> print(schema.to_yaml().splitlines()[4])
          load:
        """
        from .exporters import YamlExporter  # imports yaml: load on first use

        return YamlExporter().dumps(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkflowSchema:
        """Build from :meth:`to_dict` output (or its JSON/YAML round trip)."""
        return cls(
            workflow_id=str(d["workflow_id"]),
            version=str(d.get("version", "1")),
            steps=tuple(StepSchema.from_dict(s) for s in d.get("steps", ())),
            edges=tuple(EdgeSchema.from_dict(e) for e in d.get("edges", ())),
            outputs=tuple(d.get("outputs", ())),
            name=d.get("name", ""),
            policies=tuple(dict(p) for p in d.get("policies", ())),
        )

    def to_json(self) -> str:
        """Serialise to a JSON string: ``json.dumps(self.to_dict(), sort_keys=True)``, written directly."""
        from ._schema_json import dumps

        return dumps(self)

    @classmethod
    def from_json(cls, text: str) -> WorkflowSchema:
        """Parse :meth:`to_json` output (older definitions without some keys read with their defaults)."""
        from ._schema_json import loads

        return loads(text, cls, _StepFill, _EdgeFill)  # type: ignore[no-any-return]

    def missing_inputs(self, inputs: Mapping[str, Any]) -> dict[str, list[str]]:
        """``{input: [steps needing it]}`` for every needed input not in ``inputs``.

        Examples
        --------
        >>> s = WorkflowSchema("w", steps=(StepSchema("a", inputs=("x",)), StepSchema("b", inputs=("x", "y"))))
        >>> s.missing_inputs({"y": 1})
        {'x': ['a', 'b']}
        """
        missing: dict[str, list[str]] = {}
        for s in self.steps:
            for name in s.inputs:
                if name not in inputs:
                    missing.setdefault(name, []).append(s.name)
        return missing

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Raise :class:`~fuseline_nb.errors.MissingInputError` naming every missing input.

        Examples
        --------
        >>> s = WorkflowSchema("w", steps=(StepSchema("a", inputs=("x",)),))
        >>> s.check_inputs({"x": 1})
        >>> s.check_inputs({})
        Traceback (most recent call last):
        fuseline_nb.errors.MissingInputError: step 'a' needs input 'x': pass it in the run's inputs, e.g. wf.run({'x': ...})
        """
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"run inputs must be a dict of input names to values, not {type(inputs).__name__} "
                f"{inputs!r}: e.g. wf.run({{'x': 1}})"
            )
        missing = self.missing_inputs(inputs)
        if missing:
            raise MissingInputError.of(missing)

    def structure_key(self) -> str:
        """A digest of what defines the workflow (not its id): names, kinds, edges, outputs (computed once).

        Two schemas have the same key exactly when their structure is the same
        (the SHA-256 of a canonical JSON text, so a million-step key is 64
        characters, not megabytes).

        Examples
        --------
        >>> a = WorkflowSchema("x", steps=(StepSchema("a"),))
        >>> a.structure_key() == WorkflowSchema("y", "2", steps=(StepSchema("a"),)).structure_key()
        True
        """
        key = self.__dict__.get("_structure_key")
        if key is None:
            key = self._structure_key()
            object.__setattr__(self, "_structure_key", key)  # frozen: not a field, a cache
        return key  # type: ignore[no-any-return]

    def _structure_key(self) -> str:
        body = {
            "steps": sorted((s.name, s.kind, s.conditional) for s in self.steps),
            "edges": sorted(
                (e.source, e.target, e.action, e.group or "") for e in self.edges
            ),
            "outputs": sorted(self.outputs),
        }
        return key_digest(json.dumps(body, sort_keys=True))

    def differences(self, other: WorkflowSchema) -> list[str]:
        """Describe how ``other`` differs from this schema, for error messages.

        Examples
        --------
        >>> a = WorkflowSchema("wf", steps=(StepSchema("x"),))
        >>> b = WorkflowSchema("wf", steps=(StepSchema("y"),))
        >>> a.differences(b)
        ["steps only in the registered schema: ['x']", "steps only in the new schema: ['y']"]
        """
        out: list[str] = []
        mine, theirs = set(self.step_names), set(other.step_names)
        if mine - theirs:
            out.append(f"steps only in the registered schema: {sorted(mine - theirs)}")
        if theirs - mine:
            out.append(f"steps only in the new schema: {sorted(theirs - mine)}")
        e1 = {(e.source, e.target, e.action, e.group) for e in self.edges}
        e2 = {(e.source, e.target, e.action, e.group) for e in other.edges}
        if e1 - e2:
            out.append(f"edges only in the registered schema: {sorted(e1 - e2, key=str)}")
        if e2 - e1:
            out.append(f"edges only in the new schema: {sorted(e2 - e1, key=str)}")
        k1 = {s.name: (s.kind, s.conditional) for s in self.steps}
        k2 = {s.name: (s.kind, s.conditional) for s in other.steps}
        changed = sorted(n for n in mine & theirs if k1[n] != k2[n])
        if changed:
            out.append(f"steps whose kind or condition changed: {changed}")
        if sorted(self.outputs) != sorted(other.outputs):
            out.append(f"outputs {sorted(self.outputs)} != {sorted(other.outputs)}")
        return out


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


def key_digest(text: str) -> str:
    """The structure key of a canonical structure text: its SHA-256, in hex.

    Examples
    --------
    >>> len(key_digest("{}"))
    64
    """
    return hashlib.sha256(text.encode()).hexdigest()


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


def _schema_from_columns(workflow_id: str, version: str, steps: tuple[list[Any], ...],
                         edges: tuple[list[Any], ...], outputs: tuple[str, ...], name: str,
                         policies: tuple[dict[str, Any], ...], key: str | None) -> WorkflowSchema:
    """A schema pickled as columns (:meth:`WorkflowSchema.__reduce__`); stored definitions name it."""
    schema = WorkflowSchema(workflow_id, version, tuple(map(_StepFill, *steps)),  # type: ignore[arg-type]
                            tuple(map(_EdgeFill, *edges)),  # type: ignore[arg-type]
                            outputs, name, policies)
    if key is not None:
        _set(schema, "_structure_key", key)
    return schema


def _rebuild_schema(workflow_id: str, version: str, steps: list[tuple[Any, ...]],
                    edges: list[tuple[Any, ...]], outputs: tuple[str, ...], name: str,
                    policies: tuple[dict[str, Any], ...], key: str | None) -> WorkflowSchema:
    """A schema pickled a row per step (bytes stored before columns: a history file's definitions)."""
    schema = WorkflowSchema(workflow_id, version, tuple([_StepFill(*s) for s in steps]),  # type: ignore[misc]
                            tuple([_EdgeFill(*e) for e in edges]),  # type: ignore[misc]
                            outputs, name, policies)
    if key is not None:
        _set(schema, "_structure_key", key)
    return schema

__all__ = [
    "EdgeSchema",
    "StepSchema",
    "WorkflowSchema",
    "action_set",
    "edge_schema",
    "key_digest",
    "refer_to_shipped",
    "remember_shipped",
    "step_schema",
]
