"""A built :class:`~fuseline_nb.Workflow` against schemas made before: adopt, re-version, or refresh.

A cell run again builds the same definition anew. These helpers compare it
with the schemas already registered (or the one it made itself), and the
workflow's methods act on the answer: :func:`adopt_schema` /
:func:`adopt_unmade` take the registered schema object when it equals the
workflow's own, :func:`own_version` names a version of its own for a
definition whose id and version name another structure, and
:func:`fingerprints_changed` tells whether the step code changed since the
schema was made. Nothing here imports :mod:`.graph`: the workflow is passed in.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="a")], workflow_id="w")
>>> fingerprints_changed(wf, wf.to_schema())
False
>>> again = Workflow(outputs=[FunctionStep(lambda: 1, name="a")], workflow_id="w")
>>> adopt_unmade(again, [wf.to_schema()]), again.to_schema() is wf.to_schema()
(True, True)
>>> other = Workflow(outputs=[FunctionStep(lambda: 2, name="b")], workflow_id="w")
>>> own_version(other.to_schema(), [wf.to_schema()]).startswith("auto-")
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from .fingerprint import _fingerprint_list
from .gcpause import paused_gc
from .schema import WorkflowSchema
from .toschema import policy_spec, same_schema, step_settings

_NAME, _FINGERPRINT = attrgetter("name"), attrgetter("fingerprint")
_POLICIES, _CACHE = attrgetter("policies"), attrgetter("cache")
_AUTO = "auto-"


def own_version(schema: WorkflowSchema, registered: Iterable[WorkflowSchema],
                live: Callable[[], Iterable[tuple[str, str]]] | None = None, base: str = "1") -> str | None:
    """The version of its own for ``schema`` (a definition built without ``version=``), else ``None``
    (it goes under ``base``, its id's version ``"1"``).

    It gets one when the definition registered under ``(its id, base)`` has
    another structure, or other contents (code fingerprints, policies) while
    runs of it are still going (``live()``: the ``(workflow id, version)``
    of the live runs, asked only then): those runs keep the code they started
    with. A definition already registered under its own version keeps it.
    The version is derived from the structure and contents (the same
    definition gets the same version in every process): ``"auto-"`` and 12
    hex digits.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> def build(k):
    ...     return Workflow(outputs=[FunctionStep(lambda: k, name="a")], workflow_id="w")
    >>> one, two = build(1).to_schema(), build(2).to_schema()
    >>> own_version(two, [one]) is None                        # no run of the first is going: "1"
    True
    >>> own_version(two, [one], live=lambda: [("w", "1")]).startswith("auto-")
    True
    """
    wid = schema.workflow_id
    same_id = [k for k in registered if k.workflow_id == wid]
    known = next((k for k in same_id if k.version == base), None)
    if known is not None and known is not schema:
        if known.structure_key() != schema.structure_key():
            return auto_version(schema)
        if not same_contents(known, schema):
            if (wid, base) in set(live() if live is not None else ()):
                return auto_version(schema)
        else:
            return None
    if any(k.version.startswith(_AUTO) for k in same_id):  # one registered already under its own version
        mine = auto_version(schema)
        if any(k.version == mine and same_contents(k, schema) for k in same_id):
            return mine
    return None


def auto_version(schema: WorkflowSchema) -> str:
    """The version of its own a definition built without ``version=`` gets (derived from its structure,
    code fingerprints, policies and name, never from its id or version).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> a = Workflow(outputs=[FunctionStep(abs, name="a")], workflow_id="w").to_schema()
    >>> b = Workflow(outputs=[FunctionStep(abs, name="a")], workflow_id="w", version="7").to_schema()
    >>> auto_version(a) == auto_version(b), auto_version(a)[:5]
    (True, 'auto-')
    """
    body = (schema.structure_key() + repr(sorted(schema.fingerprints().items()))
            + repr([(s.policies, s.cache) for s in schema.steps]) + repr((schema.policies, schema.name)))
    return _AUTO + hashlib.sha256(body.encode()).hexdigest()[:12]


def same_contents(a: WorkflowSchema, b: WorkflowSchema) -> bool:
    """Whether two schemas are the same definition, whatever their versions.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import StepSchema
    >>> same_contents(WorkflowSchema("w", "1", steps=(StepSchema("a"),)),
    ...               WorkflowSchema("w", "auto-1", steps=(StepSchema("a"),)))
    True
    """
    return a is b or (a.workflow_id == b.workflow_id and a.name == b.name and a.outputs == b.outputs
                      and a.policies == b.policies and a.steps == b.steps and a.edges == b.edges)


def adopt_schema(wf: Any, registered: Iterable[WorkflowSchema]) -> bool:
    """Use the registered schema of ``wf``'s id and version when it equals ``wf``'s own.

    A cell run again builds the same definition anew: with the registered
    object as its schema, what follows (the version check, the pool's
    "shipped already?", the broker's register) recognises it by identity
    instead of comparing or digesting every step again. Whether it did.
    """
    schema = wf.to_schema()
    key = (schema.workflow_id, schema.version)
    for known in registered:
        if known is schema:
            return True
        if (known.workflow_id, known.version) == key and known == schema:
            wf._schema_cache = known  # equal edges: the structure remakes them from either
            return True
    return False


def adopt_unmade(wf: Any, registered: Iterable[WorkflowSchema], kind: list[Any] | None = None) -> bool:
    """Before ``wf`` made a schema: use the registered one of its id and version when the
    schema it would make equals it (a cell run again), without making its own. Whether it did.

    The fingerprints are computed now (an edited global or helper gives
    another one); any difference leaves the workflow as it was, to make
    its own schema. ``kind``: see :func:`~fuseline_nb.workflow.fingerprint._fingerprint_list`.
    """
    if wf._schema_cache is not None:
        return False
    key = (wf.workflow_id, wf.version)
    known = next((k for k in registered if (k.workflow_id, k.version) == key), None)
    if known is None:
        return False
    with paused_gc():
        if not same_schema(wf._full(), known, wf.name, tuple(map(policy_spec, wf.policies)),
                           _fingerprint_list(list(wf.steps.values()), kind)):
            return False
    wf._schema_cache = known
    wf._structure.edges = None  # as to_schema(): the schema holds the edges
    return True


def fingerprints_changed(wf: Any, schema: WorkflowSchema, kind: list[Any] | None = None) -> bool:
    """Whether ``schema`` no longer says what ``wf``'s steps run: their fingerprints, computed now,
    differ from those it recorded, or their settings changed on the step objects since (a step's
    ``policies`` or ``cache`` flag, the workflow's ``policies``: the workers' copy and the broker's
    retries, timeouts and cache follow the schema). ``kind``: see
    :func:`~fuseline_nb.workflow.fingerprint._fingerprint_list`."""
    steps, recorded = wf.steps, schema.steps
    values = list(steps.values())
    # side by side: the schema's steps and the workflow's in one order (looked at once per schema: the
    # schema is immutable, and a workflow's steps are named when it is built)
    if len(recorded) == len(steps) and (wf.__dict__.get("_side_by_side") is schema
                                        or list(map(_NAME, recorded)) == list(steps)):
        wf._side_by_side = schema
        now = _fingerprint_list(values, kind)
        one = _one_fingerprint(schema)
        if one and now.count(now[0]) == len(now):  # one fingerprint now, one recorded: one compare
            if now[0] != one:
                return True
        elif now != list(map(_FINGERPRINT, recorded)):
            return True
        return _settings_changed(wf, values, schema, list(recorded))
    if schema.fingerprints() != wf.fingerprints():
        return True
    by_name = {s.name: s for s in recorded}
    return _settings_changed(wf, values, schema, [by_name.get(n) for n in steps])


def _settings_changed(wf: Any, values: list[Any], schema: WorkflowSchema, recorded: list[Any]) -> bool:
    """Whether a step's ``policies`` or ``cache`` flag (``values``, side by side with ``recorded``), or
    the workflow's ``policies``, differ from what ``schema`` recorded."""
    if tuple(map(policy_spec, wf.policies)) != schema.policies or None in recorded:
        return True
    pols, caches = step_settings(values)
    return pols != list(map(_POLICIES, recorded)) or caches != list(map(_CACHE, recorded))


def _one_fingerprint(schema: WorkflowSchema) -> str:
    """The fingerprint every step of ``schema`` recorded, or ``""`` when they differ (found once per schema:
    it is immutable)."""
    one = schema.__dict__.get("_one_fingerprint")
    if one is None:
        fps = list(map(_FINGERPRINT, schema.steps))
        one = fps[0] if fps and fps.count(fps[0]) == len(fps) else ""
        object.__setattr__(schema, "_one_fingerprint", one)  # frozen: not a field, a cache
    return one  # type: ignore[no-any-return]


__all__ = ["adopt_schema", "adopt_unmade", "auto_version", "fingerprints_changed", "own_version", "same_contents"]
