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
from ..limits import Bound, Label, Name
from ._schema_parts import (  # the steps and edges (re-exported: public here)
    _EDGE_FIELDS,
    _STEP_FIELDS,
    EdgeSchema,
    StepSchema,
    _EdgeFill,
    _StepFill,
    action_set,
    edge_schema,
    step_schema,
)
from ._schema_parts import DEFAULT_ACTION as DEFAULT_ACTION  # (its users import it from here)
from .columns import Column
from .shipped import _shipped_schema, refer_to_shipped, remember_shipped


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
        # (every field but the policies' dicts is immutable: a column of equal values travels as one)
        steps = tuple(Column(self.steps, attrgetter(f), by_value=f != "policies") for f in _STEP_FIELDS)
        edges = tuple(Column(self.edges, attrgetter(f), by_value=True) for f in _EDGE_FIELDS)
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
        needed = self.__dict__.get("_needed")
        if needed is None:  # the schema is immutable: which steps need which input is worked out once
            needed = {}
            for s in self.steps:
                for name in s.inputs:
                    needed.setdefault(name, []).append(s.name)
            object.__setattr__(self, "_needed", needed)  # frozen: not a field, a cache
        return {name: list(steps) for name, steps in needed.items() if name not in inputs}

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


def key_digest(text: str) -> str:
    """The structure key of a canonical structure text: its SHA-256, in hex.

    Examples
    --------
    >>> len(key_digest("{}"))
    64
    """
    return hashlib.sha256(text.encode()).hexdigest()


_set = object.__setattr__


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
