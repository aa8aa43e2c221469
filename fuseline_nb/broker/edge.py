"""Checks at the HTTP edge that field bounds cannot express: depth, time ranges, replays.

The bounds written in the messages' dataclasses (:class:`fuseline_nb.limits.Bound`)
check types and sizes when pydantic validates a request; what passes them
is checked here against :mod:`fuseline_nb.limits` before it reaches the
broker, so a value the broker (or its DuckDB history) could not hold is
refused with 422 naming the field instead of breaking later reads. (A JSON
value nested too deep is refused where it becomes a
:class:`~fuseline_nb.workflow.value.Value`.) The functions read messages by
attribute only, so they serve any object of that shape.

Examples
--------
>>> from types import SimpleNamespace as NS
>>> from fuseline_nb.workflow.status import Status
>>> report_error(NS(state=Status.FAILED, started_at=-1e18, finished_at=None, conditions=None), "report")
'report.started_at: -1e+18 is not a time between 0 and 32503680000 (seconds since 1970)'
>>> report_error(NS(state=Status.RUNNING, started_at=None, finished_at=None, conditions=None), "report")
"report.state: a report says SUCCEEDED, FAILED or SKIPPED, not 'RUNNING'"
>>> fingerprint({"workflow": {"workflow_id": "w"}, "inputs": {}}) == fingerprint({"inputs": {},
...                                                                                "workflow": {"workflow_id": "w"}})
True
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from ..limits import depth_error, time_error
from ..workflow.status import Status

#: The states a worker may report.
REPORTED: Final = frozenset({Status.SUCCEEDED, Status.FAILED, Status.SKIPPED})


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


def report_error(r: Any, where: str) -> str | None:
    """Why a step report cannot be accepted (a state no worker reports, times out of range), or ``None``."""
    if r.state not in REPORTED:
        return f"{where}.state: a report says SUCCEEDED, FAILED or SKIPPED, not {Status(r.state).value!r}"
    for field in ("started_at", "finished_at"):
        if (err := time_error(getattr(r, field, None), f"{where}.{field}")) is not None:
            return err
    if r.conditions:
        return depth_error(r.conditions, f"{where}.conditions")
    return None


def fingerprint(body: Any) -> str:
    """A digest of a dispatch (workflow and inputs), to tell a retried request from a reused id.

    Accepts any JSON-able form of the request.
    """
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()


__all__ = ["REPORTED", "fingerprint", "report_error", "workflow_error"]
