"""The broker contract: :class:`Broker`, and the messages that cross it.

A broker decides what is ready and holds run state; workers fetch
:class:`StepAssignment` s and send back :class:`StepReport` s. Every client
(in-kernel, process channel, HTTP) speaks these same messages.

Examples
--------
>>> from fuseline_nb import Status
>>> r = StepReport("wf", "run-1", "load", Status.SUCCEEDED, result=[1, 2], attempt=1)
>>> r.run_id
'run-1'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict, get_type_hints

from ..errors import TransportUnsupportedError
from ..limits import Bound, Label, Name, Time
from ..workflow.events import Event
from ..workflow.runinfo import RunInfo, StepInfo
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status
from ..workflow.value import MaybeValue, Value, opened_all
from .registry import Repositories, RepositoryInfo

__all__ = [
    "Broker", "BrokerClient", "LastTask", "Payload", "RepositoryInfo", "RunInfo", "StepAssignment", "StepInfo", "StepReport", "WorkerInfo",
]


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


class Broker(ABC):
    """Decides readiness and holds run state; workers talk to it through a client.

    See :class:`fuseline_nb.broker.MemoryBroker` for the implementation.

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> isinstance(MemoryBroker(), Broker)
    True
    """

    @abstractmethod
    def register_worker(self, workflows: Iterable[WorkflowSchema], name: str | None = None) -> str:
        """Register a worker able to run ``workflows``; return its id."""

    @abstractmethod
    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None, *,
                          cache: bool | None = None, rerun: Iterable[str] = ()) -> str:
        """Start a run: enqueue its roots; return the run id.

        ``cache`` reuses cached results (``None``: the broker's default);
        the steps in ``rerun`` run anyway (see :mod:`fuseline_nb.broker.cache`).
        """

    @abstractmethod
    def get_step(self, worker_id: str) -> StepAssignment | None:
        """The next ready step this worker can run, or ``None``."""

    @abstractmethod
    def report_step(self, worker_id: str, report: StepReport) -> None:
        """Record an attempt's outcome and enqueue what became ready."""

    @abstractmethod
    def keep_alive(self, worker_id: str) -> list[tuple[str, str]] | None:
        """Mark the worker alive and extend the leases of its assignments.

        Returns the ``(run id, step)`` assignments of this worker that were
        cancelled meanwhile (the worker should stop them), or ``None``.
        """

    @abstractmethod
    def cancel_run(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel a run; ``True`` when it was cancelled, ``False`` when it had already ended.

        Pending and queued steps become CANCELLED (cause ``"run cancelled"``),
        running steps' workers are told to stop, late reports are refused and
        the run ends CANCELLED. Cancelling an ended run changes nothing (and
        logs that it did not).

        Raises
        ------
        RunNotFoundError
            No run has this id.
        """

    @abstractmethod
    def list_workers(self) -> list[WorkerInfo]:
        """Registered workers."""

    @abstractmethod
    def list_workflows(self) -> list[WorkflowSchema]:
        """Registered workflow schemas."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunInfo:
        """The :class:`RunInfo` of a run (RUNNING until it ends)."""

    @abstractmethod
    def list_runs(self) -> list[RunInfo]:
        """Every known run, oldest first (steps omitted for finished runs)."""

    @abstractmethod
    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Receive every lifecycle event; returns an unsubscribe function."""

    @abstractmethod
    def events(self, run_id: str) -> list[Event]:
        """The run's lifecycle events so far, in order (what views replay)."""

    def status(self) -> dict[str, Any]:
        """A health summary."""
        return {"status": "ok"}

    # -- shipped definitions: what lets a reopened history resume its runs ---------------
    def store_definition(self, workflow_id: str, version: str, definition: bytes) -> None:  # noqa: B027
        """Keep the workflow bytes shipped to workers (once per definition; the latest wins).

        A broker whose history outlives the process (a DuckDB file) keeps
        them beside the schema; others keep nothing.
        """

    def unfinished_runs(self) -> list[tuple[str, str, str]]:
        """``(run id, workflow id, version)`` of every run this broker holds unfinished, oldest first.

        Right after a history file is opened these are the runs it resumed.

        Examples
        --------
        >>> from fuseline_nb.broker import MemoryBroker
        >>> MemoryBroker().unfinished_runs()
        []
        """
        return []

    def stored_definition(self, workflow_id: str, version: str) -> bytes | None:
        """The bytes kept by :meth:`store_definition`, or ``None``.

        Examples
        --------
        >>> from fuseline_nb.broker import MemoryBroker
        >>> broker = MemoryBroker()
        >>> broker.store_definition("wf", "1", b"..."); broker.stored_definition("wf", "1") is None
        True
        """
        return None

    # -- repositories: Fuseline's directory of where workflow code lives -------------
    def _repositories(self) -> Repositories:
        repos = self.__dict__.get("_repository_registry")
        if repos is None:
            repos = self.__dict__.setdefault("_repository_registry", Repositories())
        return repos

    def register_repository(self, repo: RepositoryInfo) -> None:
        """Register (or replace, by name) a :class:`RepositoryInfo`.

        Repositories live in the broker's memory, like its workers.

        Examples
        --------
        >>> from fuseline_nb.broker import MemoryBroker, RepositoryInfo
        >>> broker = MemoryBroker()
        >>> broker.register_repository(RepositoryInfo("etl", "https://example.com/etl.git", ["etl:wf"], {}))
        >>> broker.get_repository("etl").workflows, broker.get_repository("nope")
        (['etl:wf'], None)
        """
        self._repositories().register(repo)

    def get_repository(self, name: str) -> RepositoryInfo | None:
        """The repository registered as ``name``, or ``None``."""
        return self._repositories().get(name)

    def list_repositories(self, page: int = 1, page_size: int = 50) -> list[RepositoryInfo]:
        """One page of repositories, in registration order (pages count from 1)."""
        return self._repositories().page(page, page_size)

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release resources."""

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BrokerClient(ABC):
    """The broker as workers and notebooks see it.

    Examples
    --------
    >>> from fuseline_nb.broker.clients import LocalBrokerClient
    >>> issubclass(LocalBrokerClient, BrokerClient)
    True

    It lives beside :class:`Broker` so that every client module (``clients``,
    ``http_client``, the process channel) imports it from here: no import circle.
    """

    @abstractmethod
    def register_worker(self, workflows: Iterable[WorkflowSchema], name: str | None = None) -> str:
        """Register a worker for ``workflows``; return its id."""

    @abstractmethod
    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None) -> str:
        """Start a run; return its id."""

    @abstractmethod
    def get_step(self, worker_id: str) -> StepAssignment | None:
        """The next ready step for this worker, or ``None``."""

    @abstractmethod
    def report_step(self, worker_id: str, report: StepReport) -> None:
        """Report one attempt's outcome."""

    @abstractmethod
    def keep_alive(self, worker_id: str) -> list[tuple[str, str]] | None:
        """Heartbeat: extend this worker's leases; returns its assignments cancelled meanwhile."""

    def cancel_run(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel a run (see :meth:`fuseline_nb.broker.Broker.cancel_run`)."""
        raise TransportUnsupportedError(f"{type(self).__name__} cannot cancel runs; cancel through the "
                                        "Session, the broker or an HttpBrokerClient")

    @abstractmethod
    def list_workers(self) -> list[WorkerInfo]:
        """Registered workers."""

    @abstractmethod
    def list_workflows(self) -> list[WorkflowSchema]:
        """Registered workflow schemas."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunInfo:
        """The :class:`RunInfo` of a run."""

    @abstractmethod
    def list_runs(self) -> list[RunInfo]:
        """Every run, oldest first."""

    @abstractmethod
    def status(self) -> dict[str, Any]:
        """Broker health summary."""

    # -- repositories: optional for a transport (workers never need them) -----------------
    def register_repository(self, repo: RepositoryInfo) -> None:
        """Register a :class:`~fuseline_nb.broker.RepositoryInfo` with the broker."""
        raise TransportUnsupportedError(f"{type(self).__name__} does not carry repositories; "
                                        "use a LocalBrokerClient or an HttpBrokerClient")

    def get_repository(self, name: str) -> RepositoryInfo | None:
        """The repository registered as ``name``, or ``None``."""
        raise TransportUnsupportedError(f"{type(self).__name__} does not carry repositories; "
                                        "use a LocalBrokerClient or an HttpBrokerClient")

    def list_repositories(self, page: int = 1, page_size: int = 50) -> list[RepositoryInfo]:
        """One page of repositories, in registration order."""
        raise TransportUnsupportedError(f"{type(self).__name__} does not carry repositories; "
                                        "use a LocalBrokerClient or an HttpBrokerClient")

    def unregister_worker(self, worker_id: str) -> None:  # noqa: B027 - optional for transports
        """Tell the broker this worker is leaving (its assignments are re-queued)."""

    def close(self) -> None:  # noqa: B027
        """Release the transport."""

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
