"""Checks at the HTTP edge that the wire models cannot express: depth, time ranges, replays.

The pydantic models of :mod:`.wire` check types and sizes; what passes them
is checked here against :mod:`fuseline_nb.limits` before it reaches the
broker, so a value the broker (or its DuckDB history) could not hold is
refused with 422 naming the field instead of breaking later reads. The
functions read messages by attribute only (``steps``, ``policies``,
``kind``/``value``, ``started_at``...), so they serve any model of that
shape.

Examples
--------
>>> from types import SimpleNamespace as NS
>>> deep = 1
>>> for _ in range(100):
...     deep = {"a": deep}
>>> inputs_error({"x": NS(kind="json", value=deep)}, "inputs")[:40]
'inputs.x.value.a.a.a.a.a.a.a.a.a.a.a.a.a'
>>> report_error(NS(started_at=-1e18, finished_at=None, result=None), "report")
'report.started_at: -1e+18 is not a time between 0 and 32503680000 (seconds since 1970)'
>>> fingerprint({"workflow": {"workflow_id": "w"}, "inputs": {}}) == fingerprint({"inputs": {},
...                                                                                "workflow": {"workflow_id": "w"}})
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..limits import depth_error, time_error


def workflow_error(m: Any, where: str) -> str | None:
    """Why a workflow message cannot be accepted (policy configurations nested too deep), or ``None``.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> workflow_error(NS(policies=[], steps=[NS(policies=[{"name": "retry", "config": {}}])]), "w") is None
    True
    """
    for j, p in enumerate(getattr(m, "policies", None) or ()):
        if (err := depth_error(p, f"{where}.policies[{j}]")) is not None:
            return err
    for i, s in enumerate(getattr(m, "steps", None) or ()):
        for j, p in enumerate(getattr(s, "policies", None) or ()):
            if (err := depth_error(p, f"{where}.steps[{i}].policies[{j}]")) is not None:
                return err
    return None


def value_error(v: Any, where: str) -> str | None:
    """Why a wire value cannot be accepted (a JSON value nested too deep), or ``None``.

    A pickled value stays closed in the service, so only JSON values are walked.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> value_error(NS(kind="json", value=[[1]]), "result") is None
    True
    """
    if v is None or getattr(v, "kind", None) != "json":
        return None
    return depth_error(getattr(v, "value", None), f"{where}.value")


def inputs_error(inputs: Mapping[str, Any], where: str) -> str | None:
    """The first input that cannot be accepted, named, or ``None``."""
    for k, v in inputs.items():
        if (err := value_error(v, f"{where}.{k}")) is not None:
            return err
    return None


def report_error(r: Any, where: str) -> str | None:
    """Why a step report cannot be accepted (times out of range, a result too deep), or ``None``."""
    for field in ("started_at", "finished_at"):
        if (err := time_error(getattr(r, field, None), f"{where}.{field}")) is not None:
            return err
    return value_error(getattr(r, "result", None), f"{where}.result")


def fingerprint(body: Any) -> str:
    """A digest of a dispatch (workflow and inputs), to tell a retried request from a reused id.

    Accepts the JSON-able form of the request (``model_dump(mode="json")``).
    """
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()


__all__ = ["fingerprint", "inputs_error", "report_error", "value_error", "workflow_error"]
