"""Values and messages between the broker's dataclasses and the wire models of :mod:`.wire`.

Values (run inputs, step results) are :class:`~fuseline_nb.workflow.value.Value` s
made where they were born; they travel as their base64 bytes with their
facts (fingerprint, previews) and come out closed on both sides: the
service never opens one, a client opens one when its object is asked for.

Examples
--------
>>> v = encode_value((1, 2)); v["kind"], v["type_name"]
('pickle', 'tuple')
>>> decode_value(v).load()
(1, 2)
"""

from __future__ import annotations

import base64
from typing import Any

import xxhash

from ..limits import safe_text
from ..workflow.runinfo import RunInfo, StepInfo
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status
from ..workflow.value import Value
from .base import LastTask, StepAssignment, StepReport, WorkerInfo
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


# -- values -------------------------------------------------------------------------
def encode_value(value: Any) -> dict[str, Any]:
    """The wire form of a :class:`Value` (an object is made one first): its bytes and facts.

    Examples
    --------
    >>> w = encode_value({"a": 1.5}); w["kind"], w["preview"], w["json_text"]
    ('pickle', "{'a': 1.5}", '{"a": 1.5}')
    """
    v = Value.of(value)
    return {"kind": "pickle", "data": base64.b64encode(v.data).decode("ascii"), "preview": v.preview,
            "type_name": v.type_name, "fingerprint": v.fingerprint, "rich": v.rich, "json_text": v.json}


def decode_value(wire: JsonValue | PickledValue | dict[str, Any] | None) -> Value | None:
    """The :class:`Value` of a wire form, closed (nothing is unpickled here).

    A ``{"kind": "json"}`` form (a client that is not Python) is made a
    value here: its data is plain JSON, so pickling it runs no code.

    Examples
    --------
    >>> decode_value(encode_value((1, 2)))
    <Value tuple: (1, 2)>
    >>> decode_value({"kind": "json", "value": 3}).load()
    3
    """
    if wire is None:
        return None
    if isinstance(wire, dict):
        wire = PickledValue.model_validate(wire) if wire.get("kind") == "pickle" else JsonValue.model_validate(wire)
    if isinstance(wire, JsonValue):
        return Value.of(wire.value)
    fp = wire.fingerprint or xxhash.xxh3_128_hexdigest(wire.data)
    return Value(wire.data, fp, wire.preview, wire.type_name, wire.rich, wire.json_text)


def _values(d: dict[str, Any] | None) -> dict[str, Any]:
    return {k: encode_value(v) for k, v in (d or {}).items()}


def _decoded(d: dict[str, Any] | None) -> dict[str, Any]:
    return {k: decode_value(v) for k, v in (d or {}).items()}


# -- conversions ------------------------------------------------------------------------
def schema_from_model(m: WorkflowModel) -> WorkflowSchema:
    """The :class:`WorkflowSchema` of a validated model (see :func:`check_schema`)."""
    return WorkflowSchema.from_dict(m.model_dump())


def assignment_to_wire(a: StepAssignment) -> dict[str, Any]:
    """The JSON-ready dict of an :class:`AssignmentModel`."""
    return {"v": WIRE_VERSION, "workflow_id": a.workflow_id, "version": a.version,
            "instance_id": a.instance_id, "step_name": a.step_name, "attempt": a.attempt,
            "assigned_at": a.assigned_at, "expires_at": a.expires_at,
            "inputs": _values(a.payload.get("workflow_inputs")), "results": _values(a.payload.get("results")),
            "winners": dict(a.winners), "timeout": a.timeout}


def assignment_from_wire(m: AssignmentModel) -> StepAssignment:
    """The :class:`StepAssignment` of a received model (values closed: the worker opens them)."""
    payload = {"workflow_inputs": _decoded(m.inputs), "results": _decoded(m.results),
               "winners": dict(m.winners)}
    return StepAssignment(m.workflow_id, m.instance_id, m.step_name, payload, m.assigned_at,
                          m.expires_at, m.attempt, m.version, m.timeout)


def report_to_wire(r: StepReport) -> dict[str, Any]:
    """The JSON-ready dict of a :class:`ReportModel` (a str result also names the action)."""
    state = Status(r.state)
    action = r.action if r.action is not None or not isinstance(r.result, str) else str(r.result)
    return {"workflow_id": r.workflow_id, "instance_id": r.instance_id, "step_name": r.step_name,
            "state": state.value, "result": encode_value(r.result) if r.result is not None else None,
            "attempt": r.attempt, "error": safe_text(r.error), "traceback": safe_text(r.traceback),
            "action": safe_text(action),
            "started_at": r.started_at, "finished_at": r.finished_at, "conditions": r.conditions}


def report_from_wire(m: ReportModel) -> StepReport:
    """The :class:`StepReport` of a received model (its value closed)."""
    return StepReport(m.workflow_id, m.instance_id, m.step_name, Status(m.state),
                      decode_value(m.result), m.attempt, m.error, m.traceback,
                      m.action, m.started_at, m.finished_at, m.conditions)


def _step_to_wire(s: StepInfo) -> dict[str, Any]:
    return {"state": Status(s.state).value, "attempts": s.attempts, "worker": s.worker,
            "result": encode_value(s.value) if s.value is not None else None, "error": s.error,
            "traceback": s.traceback, "action": s.action, "skip_reason": s.skip_reason,
            "queued_at": s.queued_at, "started_at": s.started_at, "finished_at": s.finished_at,
            "cached": s.cached, "cached_from": s.cached_from,
            "recovered": s.recovered}


def run_to_wire(r: RunInfo, steps: bool = True) -> dict[str, Any]:
    """The JSON-ready dict of a :class:`RunModel`."""
    return {"v": WIRE_VERSION, "run_id": r.run_id, "workflow_id": r.workflow_id, "version": r.version,
            "state": Status(r.state).value,
            "inputs": _values(r.input_values) if r.input_values is not None else None,
            "created_at": r.created_at, "finished_at": r.finished_at,
            "steps": {n: _step_to_wire(s) for n, s in r.steps.items()} if steps else {}}


def run_from_wire(m: RunModel) -> RunInfo:
    """The :class:`RunInfo` of a received model (values closed: read ``result`` to open one)."""
    steps = {
        n: StepInfo(s.state, s.attempts, s.worker, decode_value(s.result), s.error,
                    s.traceback, s.action, s.skip_reason, s.queued_at, s.started_at, s.finished_at,
                    s.cached, s.cached_from, s.recovered)
        for n, s in m.steps.items()
    }
    inputs = _decoded(m.inputs) if m.inputs is not None else None
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
