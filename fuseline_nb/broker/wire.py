"""The typed, versioned messages of the HTTP broker API (pydantic models).

Every request and response body carries ``v`` (:data:`WIRE_VERSION`); a
message of another version is refused with 422 naming the field. Values
(run inputs, step results) travel as a tagged union: ``{"kind": "json",
"value": ...}`` for plain JSON data, else ``{"kind": "pickle", "data":
<base64 cloudpickle>, "preview": ...}`` (see :mod:`.codec`).
:func:`check_schema` refuses, at the edge, a schema the broker could not run.

Examples
--------
>>> ReportModel.model_validate({"instance_id": "r", "step_name": "s", "state": "FAILED"}).attempt
1
>>> WorkerRef.model_validate({"v": 1, "worker_id": "w1"}).worker_id
'w1'
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.functional_validators import BeforeValidator

from ..errors import ImpossibleJoinError
from ..workflow.joins import check_joins
from ..workflow.plan import Plan
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status

#: The version of every message below; bump it on an incompatible change.
WIRE_VERSION: Final = 1

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
    """A :class:`~fuseline_nb.workflow.value.Value`: base64 pickle bytes and its facts (opened only by clients)."""

    kind: Literal["pickle"]
    data: B64Bytes
    preview: Annotated[str, Field(max_length=4096)] = ""
    type_name: Annotated[str, Field(max_length=512)] = ""
    fingerprint: Annotated[str, Field(max_length=128)] = ""
    rich: dict[str, Any] | None = None
    json_text: Annotated[str, Field(max_length=1_000_000)] | None = None


Value = Annotated[JsonValue | PickledValue, Field(discriminator="kind")]


class StepModel(_Msg):
    """One step of a workflow schema."""

    name: Name
    kind: Annotated[str, Field(min_length=1, max_length=64)] = "step"  # step | function | async | batch
    target: Annotated[str, Field(max_length=4096)] = ""
    policies: list[dict[str, Any]] = Field(default_factory=list)
    conditional: bool = False
    fingerprint: Annotated[str, Field(max_length=128)] = ""
    cache: bool = True
    reads: list[Annotated[str, Field(max_length=4096)]] | None = None
    inputs: list[Name] = Field(default_factory=list)


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


class KeptAlive(_Msg):
    """The answer to a keep-alive: the worker's assignments cancelled meanwhile (stop them)."""

    v: Version = 1
    cancelled: list[tuple[str, str]] = Field(default_factory=list)


class CancelRequest(_Msg):
    """``POST /runs/{run_id}/cancel``."""

    v: Version = 1
    reason: Annotated[str, Field(max_length=2000)] | None = None


class Cancelled(_Msg):
    """The answer to a cancel: whether it changed anything, and the run's state now."""

    v: Version = 1
    run_id: str
    cancelled: bool
    state: Status
    message: str


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
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


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
    conditions: Annotated[list[dict[str, Any]], Field(max_length=1024)] | None = None


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
    cached: bool = False
    cached_from: str | None = None
    recovered: bool = False


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


class EventModel(_Msg):
    """One lifecycle event of a run (``GET /runs/{id}/events``)."""

    kind: Literal["run_dispatched", "step_queued", "step_started", "step_finished", "run_finished"]
    run_id: str
    seq: int
    at: float
    step: str | None = None
    state: Status | None = None
    worker: str | None = None
    attempt: int = 0
    detail: dict[str, Any] | None = None


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
    try:
        check_joins(Plan.from_schema(schema))
    except ImpossibleJoinError as exc:
        raise ValueError(f"edges: {exc}") from None


__all__ = [
    "WIRE_VERSION",
    "AssignmentModel",
    "CancelRequest",
    "Cancelled",
    "DispatchRequest",
    "Dispatched",
    "EdgeModel",
    "ErrorModel",
    "EventModel",
    "JsonValue",
    "KeptAlive",
    "LastTaskModel",
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
    "check_schema",
]
