"""The messages between a broker and its workers: assignments, reports, worker facts.

These dataclasses are the messages on every transport: called directly
(``LocalBrokerClient``), pickled on the process pipe, validated at the HTTP
edge (pydantic reads their annotations). :mod:`fuseline_nb.broker.base`
re-exports them.

Examples
--------
>>> from fuseline_nb import Status
>>> r = StepReport("wf", "run-1", "load", Status.SUCCEEDED, result=[1, 2], attempt=1)
>>> r.run_id
'run-1'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict, get_type_hints

from ..limits import Bound, Label, Name, Time
from ..workflow.status import Status
from ..workflow.value import MaybeValue, Value, opened_all

__all__ = ["LastTask", "Payload", "StepAssignment", "StepReport", "WorkerInfo"]


class Payload(TypedDict):
    """What a :class:`StepAssignment` carries besides its address.

    Examples
    --------
    >>> Payload(workflow_inputs={}, results={"load": Value.of([1])}, winners={})["results"]["load"].preview
    '[1]'
    """

    #: The run's inputs by name.
    workflow_inputs: dict[str, Value]
    #: Results of finished predecessors by step name.
    results: dict[str, Value]
    #: For each OR group on the step, the member whose result it receives.
    winners: dict[str, str]


class _AsTypedDict:
    """``Annotated`` metadata: pydantic reads a ``typing.TypedDict`` (it wants ``typing_extensions``' before 3.12)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from typing_extensions import TypedDict as PydanticTypedDict  # pydantic's own dependency

        return handler.generate_schema(PydanticTypedDict(source.__name__, get_type_hints(source)))  # type: ignore[operator]


@dataclass
class StepAssignment:
    """One step of one run handed to one worker.

    ``payload`` holds ``workflow_inputs`` (the run's inputs), ``results``
    (results of finished predecessors, by step name) — both as closed
    :class:`~fuseline_nb.workflow.value.Value` s, opened by :attr:`inputs` and
    :attr:`results` in the worker that runs the step — and ``winners`` (for
    each OR group on the step, the member whose result it receives).
    ``attempt`` counts from 1; the worker must echo it in its report.

    Examples
    --------
    >>> a = StepAssignment("wf", "run-1", "load", {"workflow_inputs": {}, "results": {}},
    ...                    assigned_at=0.0, expires_at=60.0, attempt=1)
    >>> a.run_id, a.inputs
    ('run-1', {})
    """

    workflow_id: str
    instance_id: str
    step_name: str
    payload: Annotated[Payload, _AsTypedDict()]
    assigned_at: float
    expires_at: float
    attempt: int = 1
    version: str = "1"
    #: The step's ``StepTimeoutPolicy`` seconds (the broker knows them; transports need not work them out).
    timeout: float | None = None

    @property
    def run_id(self) -> str:
        """The run id (Fuseline calls it the instance id)."""
        return self.instance_id

    def __reduce__(self) -> tuple[Any, ...]:  # positional fields: a smaller, quicker pickle on the pipe
        return (StepAssignment, (self.workflow_id, self.instance_id, self.step_name, self.payload,
                                 self.assigned_at, self.expires_at, self.attempt, self.version, self.timeout))

    @property
    def inputs(self) -> dict[str, Any]:
        """The run's inputs, opened (the payload holds them as closed :class:`Value` s)."""
        return opened_all(self.payload.get("workflow_inputs", {}), "the run input")

    @property
    def results(self) -> dict[str, Any]:
        """Results of finished predecessors by step name, opened (see :attr:`inputs`)."""
        return opened_all(self.payload.get("results", {}), "the result of step")

    @property
    def winners(self) -> dict[str, str]:
        """OR group id → member whose result the group passes on."""
        return self.payload.get("winners", {})


@dataclass
class StepReport:
    """What a worker tells the broker about one attempt.

    ``state`` is SUCCEEDED, FAILED or SKIPPED (its condition said no).
    ``result`` is a :class:`~fuseline_nb.workflow.value.Value` made by the
    worker (a direct caller may pass the object; the broker then makes the
    value). ``action`` carries the returned action string (workers set it
    when the result is a ``str``); by default the broker reads it from a
    ``str`` result.

    Examples
    --------
    >>> StepReport("wf", "r", "s", Status.FAILED, error="ValueError: x").error
    'ValueError: x'
    """

    workflow_id: Label
    instance_id: Name
    step_name: Name
    state: Status
    result: MaybeValue = None
    attempt: Annotated[int, Bound(ge=1, le=2**31)] = 1
    error: str | None = None
    traceback: str | None = None
    action: str | None = None
    started_at: Time | None = None
    finished_at: Time | None = None
    #: Condition checks made before running: ``{"dependency", "value", "passed"}`` dicts.
    conditions: Annotated[list[dict[str, Any]] | None, Bound(max_length=1024)] = None

    def __reduce__(self) -> tuple[Any, ...]:  # positional fields: a smaller, quicker pickle on the pipe
        state = self.state._value_ if self.state.__class__ is Status else self.state  # a str: no enum call
        return (_report, (self.workflow_id, self.instance_id, self.step_name, state, self.result,
                             self.attempt, self.error, self.traceback, self.action, self.started_at,
                             self.finished_at, self.conditions))

    @property
    def run_id(self) -> str:
        """The run id (Fuseline calls it the instance id)."""
        return self.instance_id


_STATES: dict[str, Status] = {s.value: s for s in Status}


def _report(workflow_id: str, instance_id: str, step_name: str, state: str, *rest: Any) -> StepReport:
    """A :class:`StepReport` back from its pickle (the state travels as its text)."""
    return StepReport(workflow_id, instance_id, step_name, _STATES.get(state) or Status(state), *rest)


@dataclass
class LastTask:
    """The last step a worker reported.

    Examples
    --------
    >>> LastTask("wf", "r", "s", True).success
    True
    """

    workflow_id: str
    instance_id: str
    step_name: str
    success: bool


@dataclass
class WorkerInfo:
    """A registered worker, as :meth:`Broker.list_workers` reports it.

    Examples
    --------
    >>> WorkerInfo("w1", 0.0, 0.0).last_task is None
    True
    """

    worker_id: str
    connected_at: float
    last_seen: float
    last_task: LastTask | None = None
    workflows: list[str] = field(default_factory=list)
    name: str | None = None
