"""Values and messages between the broker's dataclasses and the wire models of :mod:`.wire`.

Values (run inputs, step results) travel as plain JSON when they round-trip
exactly, else as base64 cloudpickle. The service decodes pickles to closed
:class:`~fuseline_nb.broker.opaque.Pickled` values (``side="broker"``); only
a client opens them (``side="client"``).

Examples
--------
>>> encode_value([1, "a"])
{'kind': 'json', 'value': [1, 'a']}
>>> v = encode_value((1, 2)); v["kind"]
'pickle'
>>> decode_value(v, side="broker")
<pickled tuple: (1, 2)>
>>> decode_value(v, side="client")
(1, 2)
"""

from __future__ import annotations

import base64
import math
from typing import Any, Literal

from ..limits import safe_text
from ..workflow.runinfo import RunInfo, StepInfo
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status
from .base import LastTask, StepAssignment, StepReport, WorkerInfo
from .opaque import Pickled
from .wire import (
    WIRE_VERSION,
    AssignmentModel,
    JsonValue,
    PickledValue,
    ReportModel,
    RunModel,
    WorkerModel,
    WorkflowModel,
)

_MAX_JSON_INT = 2**53  # larger ints travel pickled, so no client rounds them
_MAX_DEPTH = 64


# -- values -------------------------------------------------------------------------
def _json_plain(v: Any, depth: int = 0) -> bool:
    t = type(v)
    if t is str:  # a lone surrogate (an undecodable file name) is not JSON text: it travels pickled
        return v.isascii() or safe_text(v) == v
    if v is None or t is bool:
        return True
    if t is int:
        return -_MAX_JSON_INT <= v <= _MAX_JSON_INT
    if t is float:
        return math.isfinite(v)
    if depth >= _MAX_DEPTH:
        return False
    if t is list:
        return all(_json_plain(x, depth + 1) for x in v)
    if t is dict:
        return all(type(k) is str and _json_plain(x, depth + 1) for k, x in v.items())
    return False


def encode_value(value: Any) -> dict[str, Any]:
    """The wire form of ``value``: JSON when it round-trips exactly, else a pickle.

    Examples
    --------
    >>> encode_value({"a": 1.5})["kind"], encode_value({1: "a"})["kind"]
    ('json', 'pickle')
    """
    if isinstance(value, Pickled):
        p = value
    elif _json_plain(value):
        return {"kind": "json", "value": value}
    else:
        p = Pickled.dump(value)
    return {"kind": "pickle", "data": base64.b64encode(p.data).decode("ascii"),
            "preview": p.preview, "type_name": p.type_name}


def decode_value(wire: JsonValue | PickledValue | dict[str, Any] | None, *, side: Literal["broker", "client"]) -> Any:
    """The value of a wire form; pickles stay closed on the broker side.

    Examples
    --------
    >>> decode_value({"kind": "json", "value": 3}, side="client")
    3
    """
    if wire is None:
        return None
    if isinstance(wire, dict):
        wire = PickledValue.model_validate(wire) if wire.get("kind") == "pickle" else JsonValue.model_validate(wire)
    if isinstance(wire, JsonValue):
        return wire.value
    p = Pickled(wire.data, wire.preview, wire.type_name)
    return p.load() if side == "client" else p


def _values(d: dict[str, Any] | None) -> dict[str, Any]:
    return {k: encode_value(v) for k, v in (d or {}).items()}


def _decoded(d: dict[str, Any] | None, side: Literal["broker", "client"]) -> dict[str, Any]:
    return {k: decode_value(v, side=side) for k, v in (d or {}).items()}


# -- conversions ------------------------------------------------------------------------
def schema_from_model(m: WorkflowModel) -> WorkflowSchema:
    """The :class:`WorkflowSchema` of a validated model (see :func:`check_schema`)."""
    return WorkflowSchema.from_dict(m.model_dump())


def assignment_to_wire(a: StepAssignment) -> dict[str, Any]:
    """The JSON-ready dict of an :class:`AssignmentModel`."""
    return {"v": WIRE_VERSION, "workflow_id": a.workflow_id, "version": a.version,
            "instance_id": a.instance_id, "step_name": a.step_name, "attempt": a.attempt,
            "assigned_at": a.assigned_at, "expires_at": a.expires_at,
            "inputs": _values(a.inputs), "results": _values(a.results), "winners": dict(a.winners)}


def assignment_from_wire(m: AssignmentModel) -> StepAssignment:
    """The :class:`StepAssignment` of a received model (pickles opened: client side)."""
    payload = {"workflow_inputs": _decoded(m.inputs, "client"), "results": _decoded(m.results, "client"),
               "winners": dict(m.winners)}
    return StepAssignment(m.workflow_id, m.instance_id, m.step_name, payload, m.assigned_at,
                          m.expires_at, m.attempt, m.version)


def report_to_wire(r: StepReport) -> dict[str, Any]:
    """The JSON-ready dict of a :class:`ReportModel` (a str result also names the action)."""
    state = Status(r.state)
    action = r.action if r.action is not None or not isinstance(r.result, str) else str(r.result)
    return {"workflow_id": r.workflow_id, "instance_id": r.instance_id, "step_name": r.step_name,
            "state": state.value, "result": encode_value(r.result) if r.result is not None else None,
            "attempt": r.attempt, "error": safe_text(r.error), "traceback": safe_text(r.traceback),
            "action": safe_text(action),
            "started_at": r.started_at, "finished_at": r.finished_at}


def report_from_wire(m: ReportModel) -> StepReport:
    """The :class:`StepReport` of a received model (pickles kept closed: broker side)."""
    return StepReport(m.workflow_id, m.instance_id, m.step_name, Status(m.state),
                      decode_value(m.result, side="broker"), m.attempt, m.error, m.traceback,
                      m.action, m.started_at, m.finished_at)


def _step_to_wire(s: StepInfo) -> dict[str, Any]:
    return {"state": Status(s.state).value, "attempts": s.attempts, "worker": s.worker,
            "result": encode_value(s.result) if s.result is not None else None, "error": s.error,
            "traceback": s.traceback, "action": s.action, "skip_reason": s.skip_reason,
            "queued_at": s.queued_at, "started_at": s.started_at, "finished_at": s.finished_at,
            "cached": s.cached, "cached_from": s.cached_from}


def run_to_wire(r: RunInfo, steps: bool = True) -> dict[str, Any]:
    """The JSON-ready dict of a :class:`RunModel`."""
    return {"v": WIRE_VERSION, "run_id": r.run_id, "workflow_id": r.workflow_id, "version": r.version,
            "state": Status(r.state).value,
            "inputs": _values(r.inputs) if r.inputs is not None else None,
            "created_at": r.created_at, "finished_at": r.finished_at,
            "steps": {n: _step_to_wire(s) for n, s in r.steps.items()} if steps else {}}


def run_from_wire(m: RunModel) -> RunInfo:
    """The :class:`RunInfo` of a received model (pickles opened: client side)."""
    steps = {
        n: StepInfo(s.state, s.attempts, s.worker, decode_value(s.result, side="client"), s.error,
                    s.traceback, s.action, s.skip_reason, s.queued_at, s.started_at, s.finished_at,
                    s.cached, s.cached_from)
        for n, s in m.steps.items()
    }
    inputs = _decoded(m.inputs, "client") if m.inputs is not None else None
    return RunInfo(m.run_id, m.workflow_id, m.state, steps, m.version, inputs, m.created_at, m.finished_at)


def worker_to_wire(w: WorkerInfo) -> dict[str, Any]:
    """The JSON-ready dict of a :class:`WorkerModel`."""
    last = w.last_task
    return {"worker_id": w.worker_id, "connected_at": w.connected_at, "last_seen": w.last_seen,
            "last_task": None if last is None else {
                "workflow_id": last.workflow_id, "instance_id": last.instance_id,
                "step_name": last.step_name, "success": last.success},
            "workflows": list(w.workflows), "name": w.name}


def worker_from_wire(m: WorkerModel) -> WorkerInfo:
    """The :class:`WorkerInfo` of a received model."""
    last = None if m.last_task is None else LastTask(**m.last_task.model_dump())
    return WorkerInfo(m.worker_id, m.connected_at, m.last_seen, last, list(m.workflows), m.name)


__all__ = [
    "assignment_from_wire",
    "assignment_to_wire",
    "decode_value",
    "encode_value",
    "report_from_wire",
    "report_to_wire",
    "run_from_wire",
    "run_to_wire",
    "schema_from_model",
    "worker_from_wire",
    "worker_to_wire",
]
