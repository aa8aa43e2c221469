"""A built workflow's :class:`~fuseline_nb.workflow.schema.WorkflowSchema`, made in one pass.

The per-step facts come from each step's shared
:class:`~fuseline_nb.workflow.binding.Shape` (one per function or class),
and the schema objects are filled directly: ``to_schema()`` of a 1→1,000→1
fan-out costs about a µs per step and edge, not a dataclass ``__init__``
per field.

Examples
--------
>>> from fuseline_nb import FunctionStep
>>> from fuseline_nb.workflow.structure import build
>>> def load(path):
...     return path
>>> s = build([FunctionStep(load)])
>>> schema = make_schema(s, "w", "1", "workflow", (), {"load": "f" * 32})
>>> schema.steps[0].inputs, schema.steps[0].target.endswith(":load")
(('path',), True)
"""

from __future__ import annotations

from itertools import repeat
from operator import attrgetter
from typing import Any

from ._schema_parts import _EDGE_FIELDS, _STEP_FIELDS
from .schema import (  # the schema objects' writable twins: filled, then frozen
    WorkflowSchema,
    _EdgeFill,
    _StepFill,
)
from .structure import Structure

_set = object.__setattr__


def make_schema(structure: Structure, workflow_id: str, version: str, name: str,
                policies: tuple[dict[str, Any], ...], fingerprints: dict[str, str] | list[str],
                structure_key: str | None = None) -> WorkflowSchema:
    """The schema of ``structure`` under ``workflow_id`` and ``version``.

    ``fingerprints``: by step name, or a list in the structure's order.
    ``structure_key``, when known, is stored with the schema (its
    :meth:`~WorkflowSchema.structure_key` is then not computed again).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> from fuseline_nb.workflow.structure import build
    >>> a, b = FunctionStep(lambda: 1, name="a"), FunctionStep(lambda: 2, name="b")
    >>> _ = a >> b
    >>> make_schema(build([b]), "w", "1", "w", (), {"a": "", "b": ""}).edges
    (EdgeSchema(source='a', target='b', action='default', group=None),)
    """
    steps = structure.steps
    order = structure.order
    assert structure.shapes is not None  # packing.complete() remakes them
    out: list[Any] = []
    append = out.append
    # The steps, shapes and fingerprints are read side by side in the structure's order (the steps
    # dict and a workflow's fingerprints are made in it): a lookup by name per step would reach into
    # a million-entry table at random. A name that is not the same object falls back to the lookup.
    fps: Any
    if isinstance(fingerprints, list):  # in the structure's order already
        if len(fingerprints) != len(order):
            raise ValueError(f"{len(fingerprints)} fingerprints for {len(order)} steps")
        fps = zip(order, fingerprints, strict=True)
    else:
        fps = fingerprints.items() if len(fingerprints) == len(order) else repeat((None, ""), len(order))
    of_class: dict[type, Any] = {}  # step class -> the policies its body sets (None: none)
    for n, s, shape, (k, fp) in zip(order, steps.values(), structure.shapes, fps, strict=True):
        if k is not n:
            fp = fingerprints[n]  # type: ignore[call-overload]
        if s.name is not n:
            s = steps[n]
        d = s.__dict__  # (the fingerprints read it already: no new dict)
        pol = d.get("policies")
        if pol is None:  # none of its own: its class's (``policies = [...]`` in the class body), if any
            cls = s.__class__
            pol = of_class[cls] if cls in of_class else of_class.setdefault(cls, getattr(cls, "policies", None))
        cache = d["cache"] if "cache" in d else getattr(s, "cache", True)
        append(_StepFill(n, s.kind, shape.target, tuple(map(policy_spec, pol)) if pol else (),
                         shape.conditional, fp, cache is True or bool(cache), shape.reads, shape.inputs))
    edges: list[Any] = [_EdgeFill(u, v, a, group) for (u, v), (actions, group) in structure.sorted_edges()
                        for a in actions]
    schema = WorkflowSchema(
        workflow_id=workflow_id,
        version=version,
        steps=tuple(out),
        edges=tuple(edges),
        outputs=tuple(structure.output_names),
        name=name,
        policies=policies,
    )
    if structure_key is not None:
        _set(schema, "_structure_key", structure_key)  # the cache structure_key() reads
    return schema


#: A schema step's / edge's field values, in the order :func:`make_schema` fills them.
_STEP_ROW, _EDGE_ROW = attrgetter(*_STEP_FIELDS), attrgetter(*_EDGE_FIELDS)


def same_schema(structure: Structure, known: WorkflowSchema, name: str, policies: tuple[dict[str, Any], ...],
                fingerprints: list[str]) -> bool:
    """Whether :func:`make_schema` would make a schema equal to ``known`` under ``known``'s id and version.

    A cell run again builds the same definition anew; comparing its facts
    with the registered schema's side by side, field by field, tells so
    without making a schema object per step and edge first (and without the
    dataclasses' ``__eq__`` per step). ``fingerprints``: the steps'
    fingerprints in the structure's order. Every field of a step and an edge
    is compared (rows of all :data:`_STEP_FIELDS` / :data:`_EDGE_FIELDS`):
    any difference answers ``False``, and the caller makes its own schema.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> from fuseline_nb.workflow.structure import build
    >>> def load(path):
    ...     return path
    >>> s = build([FunctionStep(load)])
    >>> known = make_schema(s, "w", "1", "workflow", (), {"load": "f" * 32})
    >>> same_schema(s, known, "workflow", (), ["f" * 32]), same_schema(s, known, "workflow", (), ["e" * 32])
    (True, False)
    """
    steps, order, shapes = structure.steps, structure.order, structure.shapes
    assert shapes is not None  # packing.complete() remakes them
    ks = known.steps
    if (len(ks) != len(order) or len(fingerprints) != len(order) or known.name != name
            or known.policies != policies or known.outputs != tuple(structure.output_names)):
        return False
    # Column by column, each a C-level pass; the fields make_schema fills, in _STEP_FIELDS order
    # (a field added there and not here makes the rows' lengths differ: never equal).
    values = list(steps.values())
    if list(map(_NAME, values)) != order:  # the steps dict is in the structure's order
        values = [steps[n] for n in order]
    pols, caches = step_settings(values)
    kinds = list(map(_KIND, values))
    mine = list(zip(order, kinds, map(_TARGET, shapes), pols, map(_CONDITIONAL, shapes), fingerprints, caches,
                    map(_READS, shapes), map(_INPUTS, shapes), strict=True))
    if mine != list(map(_STEP_ROW, ks)):
        return False
    edges = [(u, v, a, group) for (u, v), (actions, group) in structure.sorted_edges() for a in actions]
    return edges == list(map(_EDGE_ROW, known.edges))


_NAME, _KIND, _DICT = attrgetter("name"), attrgetter("kind"), attrgetter("__dict__")
_TARGET, _CONDITIONAL = attrgetter("target"), attrgetter("conditional")
_READS, _INPUTS = attrgetter("reads"), attrgetter("inputs")


def step_settings(values: list[Any]) -> tuple[list[Any], list[bool]]:
    """The ``policies`` (as specs) and the ``cache`` flag of each of ``values`` (steps), as
    :func:`make_schema` records them: a column at a time.

    A step's settings can change on the step object after its workflow made a
    schema (``s.policies.append(RetryPolicy(3))``, ``s.cache = False``); the
    re-submit check compares these columns with the schema's.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> from fuseline_nb.workflow.policies import RetryPolicy
    >>> s = FunctionStep(abs, name="a", policies=[RetryPolicy(2)])
    >>> s.cache = False
    >>> step_settings([s, FunctionStep(len, name="n")])
    ([({'name': 'retry', 'config': {'max_retries': 2, 'wait': 0}},), ()], [False, True])
    """
    dicts = list(map(_DICT, values))
    held = list(map(dict.get, dicts, repeat("policies")))
    of_class = {c: p for c in set(map(type, values)) if (p := getattr(c, "policies", None)) is not None}
    if of_class:  # a step with none of its own has its class's (as make_schema reads them)
        held = [h if h is not None else of_class.get(type(v)) for h, v in zip(held, values, strict=True)]
    if any(held):
        pols: list[Any] = [tuple(map(policy_spec, p)) if p else () for p in held]
    else:
        pols = [()] * len(values)
    caches = [True if c is True else bool(c) for c in map(getattr, values, repeat("cache"), repeat(True))]
    return pols, caches


def policy_spec(policy: Any) -> dict[str, Any]:
    """A policy as data: its ``to_spec()``, or its type's name.

    Examples
    --------
    >>> from fuseline_nb.workflow.policies import RetryPolicy
    >>> policy_spec(RetryPolicy(max_retries=2))
    {'name': 'retry', 'config': {'max_retries': 2, 'wait': 0}}
    >>> policy_spec(object())
    {'type': 'object'}
    """
    spec = getattr(policy, "to_spec", None)
    if callable(spec):
        return dict(spec())
    return {"type": type(policy).__name__}


__all__ = ["make_schema", "policy_spec", "same_schema", "step_settings"]
