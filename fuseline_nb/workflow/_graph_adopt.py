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
from collections.abc import Iterable
from operator import attrgetter
from typing import Any

from .fingerprint import _fingerprint_list
from .gcpause import paused_gc
from .schema import WorkflowSchema
from .toschema import policy_spec, same_schema, step_settings

_NAME, _FINGERPRINT = attrgetter("name"), attrgetter("fingerprint")
_POLICIES, _CACHE = attrgetter("policies"), attrgetter("cache")


def own_version(schema: WorkflowSchema, registered: Iterable[WorkflowSchema]) -> str | None:
    """The version of its own for ``schema`` when a registered schema of its id and version has another
    structure, else ``None``: derived from its structure and code fingerprints (the same definition
    gets the same version in every process)."""
    clash = any(k is not schema and (k.workflow_id, k.version) == (schema.workflow_id, schema.version)
                and k.structure_key() != schema.structure_key() for k in registered)
    if not clash:
        return None
    body = schema.structure_key() + repr(sorted(schema.fingerprints().items()))
    return "auto-" + hashlib.sha256(body.encode()).hexdigest()[:12]


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


__all__ = ["adopt_schema", "adopt_unmade", "fingerprints_changed", "own_version"]
