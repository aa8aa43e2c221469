"""The HTTP broker API's messages: the broker's own dataclasses, checked by pydantic at the edge.

A message is declared once. :class:`~fuseline_nb.broker.base.StepReport`,
:class:`~fuseline_nb.broker.base.StepAssignment`,
:class:`~fuseline_nb.workflow.runinfo.RunInfo`,
:class:`~fuseline_nb.workflow.schema.WorkflowSchema`,
:class:`~fuseline_nb.workflow.events.Event`,
:class:`~fuseline_nb.broker.base.WorkerInfo` and
:class:`~fuseline_nb.workflow.value.Value` are what the broker, the process
pipe and HTTP all carry; the field bounds are written in those dataclasses
(:class:`fuseline_nb.limits.Bound`), and pydantic validates and writes them
directly (a ``TypeAdapter`` over the dataclass, or a field of an envelope
below). No mirror model, no converter.

What this module adds are the HTTP envelopes: the request bodies and the
small answers, each carrying ``v`` (:data:`WIRE_VERSION`; a message of
another version is refused with 422 naming the field), and
:func:`check_schema`, which refuses at the edge a schema the broker could
not run.

Values travel as ``{"kind": "pickle", "data": <base64 pickle>, "preview",
"type_name", "fingerprint", "rich", "json_text"}`` (a client that is not
Python may send ``{"kind": "json", "value": ...}``); they arrive closed.

Examples
--------
>>> from fuseline_nb.broker.base import StepReport
>>> body = ReportRequest.model_validate_json(
...     '{"v": 2, "worker_id": "w1", "report": {"workflow_id": "wf", "instance_id": "r",'
...     ' "step_name": "s", "state": "FAILED", "error": "ValueError: x"}}')
>>> type(body.report) is StepReport, body.report.state.value, body.report.attempt
(True, 'FAILED', 1)
>>> WorkerRef.model_validate({"v": 2, "worker_id": "w1"}).worker_id
'w1'
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..errors import ImpossibleJoinError
from ..limits import Label, Name
from ..workflow.joins import check_joins
from ..workflow.plan import Plan
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status
from ..workflow.value import Value
from .base import StepAssignment, StepReport

#: The version of every envelope below; bump it on an incompatible change.
#: 2: assignments carry the ``payload`` of :class:`StepAssignment`; reports name their ``workflow_id``.
WIRE_VERSION: Final = 2

Version = Annotated[Literal[2], Field(description="wire format version")]


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(_Envelope):
    """``POST /worker/register``."""

    v: Version = 2
    workflows: list[WorkflowSchema]
    name: Label | None = None


class WorkerRef(_Envelope):
    """``POST /worker/keep-alive`` and ``POST /worker/unregister``."""

    v: Version = 2
    worker_id: Name


class KeptAlive(_Envelope):
    """The answer to a keep-alive: the worker's assignments cancelled meanwhile (stop them)."""

    v: Version = 2
    cancelled: list[tuple[str, str]] = Field(default_factory=list)


class CancelRequest(_Envelope):
    """``POST /runs/{run_id}/cancel``."""

    v: Version = 2
    reason: Annotated[str, Field(max_length=2000)] | None = None


class Cancelled(_Envelope):
    """The answer to a cancel: whether it changed anything, and the run's state now."""

    v: Version = 2
    run_id: str
    cancelled: bool
    state: Status
    message: str


class Registered(_Envelope):
    """The answer to a registration."""

    v: Version = 2
    worker_id: str


class DispatchRequest(_Envelope):
    """``POST /workflow/dispatch``; a repeated ``request_id`` returns the first run id."""

    v: Version = 2
    workflow: WorkflowSchema
    inputs: dict[str, Value] = Field(default_factory=dict)
    request_id: Annotated[str, Field(max_length=128)] | None = None


class Dispatched(_Envelope):
    """The answer to a dispatch."""

    v: Version = 2
    run_id: str


class ReportRequest(_Envelope):
    """``POST /workflow/step``: a report, and optionally the request for the next step."""

    v: Version = 2
    worker_id: Name
    report: StepReport
    next: bool = Field(False, description="answer with this worker's next step, if one is ready")
    wait: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] = 0.0


_report_json = TypeAdapter(StepReport).dump_json


def report_body(worker_id: str, report: StepReport, *, next: bool = False, wait: float = 0.0) -> bytes:
    """The JSON of a :class:`ReportRequest` (what a worker sends per step), written without building the model.

    Examples
    --------
    >>> from fuseline_nb.broker.base import StepReport
    >>> body = report_body("w1", StepReport("wf", "r", "s", Status.SKIPPED), next=True, wait=2)
    >>> m = ReportRequest.model_validate_json(body)
    >>> m.worker_id, m.report.state.value, m.next, m.wait
    ('w1', 'SKIPPED', True, 2.0)
    """
    return b'{"v":%d,"worker_id":%s,"next":%s,"wait":%r,"report":%s}' % (
        WIRE_VERSION, json.dumps(worker_id).encode(), b"true" if next else b"false", float(wait),
        _report_json(report))


class StepAnswer(_Envelope):
    """The worker's next step (``GET /workflow/step``, and a report's answer when ``next`` was asked)."""

    v: Version = 2
    next: StepAssignment | None = None


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

    Checks at least one step, unique step names, edges and outputs that
    name known steps, no cycle, and well-formed retry/timeout policy settings.

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
    if not names:
        raise ValueError("steps: a workflow needs at least one step")
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
    "CancelRequest",
    "Cancelled",
    "DispatchRequest",
    "Dispatched",
    "ErrorModel",
    "KeptAlive",
    "RegisterRequest",
    "Registered",
    "ReportRequest",
    "StepAnswer",
    "WorkerRef",
    "check_schema",
    "report_body",
]
