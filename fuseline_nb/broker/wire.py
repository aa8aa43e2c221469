"""The typed, versioned messages of the HTTP broker API (pydantic models).

Every request and response body carries ``v`` (:data:`WIRE_VERSION`); a
message of another version is refused with 422 naming the field. Values
(run inputs, step results) travel as a tagged union: ``{"kind": "json",
"value": ...}`` for plain JSON data (it round-trips exactly), else
``{"kind": "pickle", "data": <base64 cloudpickle>, "preview": ...}``.

Decoding has two sides. The service decodes pickles to closed
:class:`~fuseline_nb.broker.opaque.Pickled` values (``side="broker"``); only
a client decodes them to objects (``side="client"``).

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
import binascii
import math
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.functional_validators import BeforeValidator

from ..workflow.runinfo import RunInfo, StepInfo
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status
from .base import LastTask, StepAssignment, StepReport, WorkerInfo
from .opaque import Pickled

#: The version of every message below; bump it on an incompatible change.
WIRE_VERSION: Final = 1
_MAX_JSON_INT = 2**53  # larger ints travel pickled, so no client rounds them
_MAX_DEPTH = 64

Version = Annotated[Literal[1], Field(description="wire format version")]
Name = Annotated[str, Field(min_length=1, max_length=512)]
Time = Annotated[float, Field(allow_inf_nan=False)]


def _b64decode(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if not isinstance(v, str):
        raise ValueError("must be a base64 string")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"is not valid base64 ({exc})") from None


B64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64decode),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JsonValue(_Msg):
    """A value that is plain JSON."""

    kind: Literal["json"]
    value: Any = None


class PickledValue(_Msg):
    """A value as base64 cloudpickle bytes (opened only by clients)."""

    kind: Literal["pickle"]
    data: B64Bytes
    preview: Annotated[str, Field(max_length=4096)] = ""
    type_name: Annotated[str, Field(max_length=512)] = ""


Value = Annotated[JsonValue | PickledValue, Field(discriminator="kind")]


class StepModel(_Msg):
    """One step of a workflow schema."""

    name: Name
    kind: Annotated[str, Field(min_length=1, max_length=64)] = "step"  # step | function | async | batch
    target: Annotated[str, Field(max_length=4096)] = ""
    policies: list[dict[str, Any]] = Field(default_factory=list)
    conditional: bool = False


class EdgeModel(_Msg):
    """An edge ``source -> target`` taken on ``action``; ``group`` names an OR group."""

    source: Name
    target: Name
    action: Name = "default"
    group: Name | None = None


class WorkflowModel(_Msg):
    """A workflow schema (``WorkflowSchema.to_dict()``)."""

    workflow_id: Name
    version: Annotated[str, Field(min_length=1, max_length=128)] = "1"
    name: Annotated[str, Field(max_length=512)] = ""
    steps: Annotated[list[StepModel], Field(min_length=1)]
    edges: list[EdgeModel] = Field(default_factory=list)
    outputs: list[Name] = Field(default_factory=list)
    policies: list[dict[str, Any]] = Field(default_factory=list)


class RegisterRequest(_Msg):
    """``POST /worker/register``."""

    v: Version = 1
    workflows: list[WorkflowModel]
    name: Annotated[str, Field(max_length=512)] | None = None


class WorkerRef(_Msg):
    """``POST /worker/keep-alive`` and ``POST /worker/unregister``."""

    v: Version = 1
    worker_id: Name


class Registered(_Msg):
    """The answer to a registration."""

    v: Version = 1
    worker_id: str


class DispatchRequest(_Msg):
    """``POST /workflow/dispatch``; a repeated ``request_id`` returns the first run id."""

    v: Version = 1
    workflow: WorkflowModel
    inputs: dict[str, Value] = Field(default_factory=dict)
    request_id: Annotated[str, Field(max_length=128)] | None = None


class Dispatched(_Msg):
    """The answer to a dispatch."""

    v: Version = 1
    run_id: str


class AssignmentModel(_Msg):
    """One step of one run handed to one worker."""

    v: Version = 1
    workflow_id: str
    version: str
    instance_id: str
    step_name: str
    attempt: int
    assigned_at: float
    expires_at: float
    inputs: dict[str, Value]
    results: dict[str, Value]
    winners: dict[str, str]


class ReportModel(_Msg):
    """What a worker says about one attempt."""

    workflow_id: Annotated[str, Field(max_length=512)] = ""
    instance_id: Name
    step_name: Name
    state: Literal["SUCCEEDED", "FAILED", "SKIPPED"]
    result: Value | None = None
    attempt: Annotated[int, Field(ge=1, le=2**31)] = 1
    error: str | None = None
    traceback: str | None = None
    action: str | None = None  # the returned action string, when ``result`` is opaque
    started_at: Time | None = None
    finished_at: Time | None = None


class ReportRequest(_Msg):
    """``POST /workflow/step``: a report, and optionally the request for the next step."""

    v: Version = 1
    worker_id: Name
    report: ReportModel
    next: bool = Field(False, description="answer with this worker's next step, if one is ready")
    wait: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] = 0.0


class ReportAnswer(_Msg):
    """The answer to a report: the next assignment when ``next`` was asked and one is ready."""

    v: Version = 1
    next: AssignmentModel | None = None


class StepInfoModel(_Msg):
    """One step of a run."""

    state: Status
    attempts: int = 0
    worker: str | None = None
    result: Value | None = None
    error: str | None = None
    traceback: str | None = None
    action: str | None = None
    skip_reason: str | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


class RunModel(_Msg):
    """A run and its steps."""

    v: Version = 1
    run_id: str
    workflow_id: str
    version: str
    state: Status
    inputs: dict[str, Value] | None = None
    created_at: float | None = None
    finished_at: float | None = None
    steps: dict[str, StepInfoModel] = Field(default_factory=dict)


class LastTaskModel(_Msg):
    """The last step a worker reported."""

    workflow_id: str
    instance_id: str
    step_name: str
    success: bool


class WorkerModel(_Msg):
    """A registered worker."""

    worker_id: str
    connected_at: float
    last_seen: float
    last_task: LastTaskModel | None = None
    workflows: list[str] = Field(default_factory=list)
    name: str | None = None


class ErrorModel(BaseModel):
    """Every error answer: a stable ``error`` code, a ``detail`` sentence, field errors."""

    error: str
    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


# -- values -------------------------------------------------------------------------
def _json_plain(v: Any, depth: int = 0) -> bool:
    t = type(v)
    if v is None or t is str or t is bool:
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


# -- schemas ------------------------------------------------------------------------------
def _check_policy(where: str, p: dict[str, Any]) -> None:
    name, cfg = p.get("name"), p.get("config", {})
    if not isinstance(name, str):
        raise ValueError(f"{where}.name: must be a string, not {name!r}")
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}.config: must be an object, not {cfg!r}")

    def number(key: str, low: float, default: Any) -> None:
        v = cfg.get(key, default)
        if type(v) not in (int, float) or not math.isfinite(v) or v < low:
            raise ValueError(f"{where}.config.{key}: must be a number >= {low}, not {v!r}")

    if name == "retry":
        number("max_retries", 1, 1)
        number("wait", 0, 0)
        if cfg.get("max_retries", 1) > 10_000 or cfg.get("wait", 0) > 86_400:
            raise ValueError(f"{where}.config: max_retries <= 10000 and wait <= 86400 seconds")
    elif name == "timeout":
        number("seconds", 1e-3, None)


def check_schema(schema: WorkflowSchema) -> None:
    """Refuse a schema the broker could not run, naming the culprit.

    Checks unique step names, edges and outputs that name known steps, no
    cycle, and well-formed retry/timeout policy settings.

    Raises
    ------
    ValueError
        With the path of the bad field first, e.g. ``edges[0].target: ...``.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import EdgeSchema, StepSchema
    >>> check_schema(WorkflowSchema("w", steps=(StepSchema("a"),), edges=(EdgeSchema("a", "b"),)))
    Traceback (most recent call last):
    ...
    ValueError: edges[0].target: unknown step 'b' (steps: ['a'])
    """
    names = schema.step_names
    known: set[str] = set()
    for i, n in enumerate(names):
        if n in known:
            raise ValueError(f"steps[{i}].name: step {n!r} appears twice (step names must be unique)")
        known.add(n)
    succ: dict[str, set[str]] = {n: set() for n in names}
    for i, e in enumerate(schema.edges):
        for end in ("source", "target"):
            if getattr(e, end) not in known:
                raise ValueError(f"edges[{i}].{end}: unknown step {getattr(e, end)!r} (steps: {sorted(known)})")
        succ[e.source].add(e.target)
    for i, o in enumerate(schema.outputs):
        if o not in known:
            raise ValueError(f"outputs[{i}]: unknown step {o!r} (steps: {sorted(known)})")
    for i, s in enumerate(schema.steps):
        for j, p in enumerate(s.policies):
            _check_policy(f"steps[{i}].policies[{j}]", p)
    indeg = dict.fromkeys(names, 0)
    for targets in succ.values():
        for t in targets:
            indeg[t] += 1
    ready = [n for n, d in indeg.items() if d == 0]
    while ready:
        for t in succ[ready.pop()]:
            indeg[t] -= 1
            if indeg[t] == 0:
                ready.append(t)
    looped = sorted(n for n, d in indeg.items() if d > 0)
    if looped:
        raise ValueError(f"edges: the workflow has a cycle through steps {looped}")


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
            "attempt": r.attempt, "error": r.error, "traceback": r.traceback, "action": action,
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
            "queued_at": s.queued_at, "started_at": s.started_at, "finished_at": s.finished_at}


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
                    s.traceback, s.action, s.skip_reason, s.queued_at, s.started_at, s.finished_at)
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
    "WIRE_VERSION",
    "AssignmentModel",
    "DispatchRequest",
    "Dispatched",
    "EdgeModel",
    "ErrorModel",
    "JsonValue",
    "PickledValue",
    "RegisterRequest",
    "Registered",
    "ReportAnswer",
    "ReportModel",
    "ReportRequest",
    "RunModel",
    "StepInfoModel",
    "StepModel",
    "Value",
    "WorkerModel",
    "WorkerRef",
    "WorkflowModel",
    "assignment_from_wire",
    "assignment_to_wire",
    "check_schema",
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
