"""The broker contract: :class:`Broker` and :class:`BrokerClient`.

A broker decides what is ready and holds run state; workers fetch
:class:`StepAssignment` s and send back :class:`StepReport` s. Every client
(in-kernel, process channel, HTTP) speaks these same messages
(:mod:`fuseline_nb.broker.messages`, re-exported here).

Examples
--------
>>> from fuseline_nb.broker import messages
>>> StepReport is messages.StepReport
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from ..errors import TransportUnsupportedError
from ..workflow.events import Event
from ..workflow.runinfo import RunInfo, StepInfo
from ..workflow.schema import WorkflowSchema
from .messages import LastTask, Payload, StepAssignment, StepReport, WorkerInfo
from .registry import Repositories, RepositoryInfo

if TYPE_CHECKING:
    from .state import Assignment

__all__ = [
    "Broker", "BrokerClient", "LastTask", "Payload", "RepositoryInfo", "RunInfo", "StepAssignment", "StepInfo", "StepReport", "WorkerInfo",
]


class _Shared(ABC):
    """What :class:`Broker` and :class:`BrokerClient` both declare: the worker calls, the four reads, the batches."""

    @abstractmethod
    def register_worker(self, workflows: Iterable[WorkflowSchema], name: str | None = None) -> str:
        """Register a worker able to run ``workflows``; return its id.

        A workflow the broker knows under the same id, version and structure
        keeps the broker's definition (the worker's copy may be an older one).
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

    def deferred_events(self) -> AbstractContextManager[None]:
        """A block whose broker calls (this thread's) deliver their events to listeners when it ends.

        Inside ``with broker.deferred_events():`` the events that
        ``report_steps``, ``get_steps`` and every other call of this thread
        make are recorded as always but handed to the listeners
        (``subscribe``) only when the outermost block ends — in the order
        they were made, each once, also when the body raises. A channel
        server answers its worker inside the block, so the answer does not
        wait for the views and the session. Outside a block nothing
        changes; a call of another thread that makes events first delivers
        what is held, so every listener still sees one order. A broker in this process
        (:class:`~fuseline_nb.broker.core.StorageBroker`, and a
        ``LocalBrokerClient`` of one) holds the events; a client whose
        broker is elsewhere (HTTP) has no listeners here: its block changes
        nothing (the default).

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> from fuseline_nb.broker import MemoryBroker
        >>> broker, seen = MemoryBroker(), []
        >>> _ = broker.subscribe(lambda e: seen.append(e.kind))
        >>> with broker.deferred_events():
        ...     _ = broker.dispatch_workflow(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]).to_schema())
        ...     seen
        []
        >>> seen
        ['run_dispatched', 'step_queued']
        """
        return nullcontext()

    # -- batches: what a worker with prefetch asks at once ------------------------------
    def get_steps(self, worker_id: str, n: int) -> list[StepAssignment]:
        """Up to ``n`` ready steps for ``worker_id``: what ``n`` calls of ``get_step`` would return, in order.

        The default calls ``get_step`` until it gives ``None``; a broker in
        this process answers the batch under one lock. Assignments taken
        before an error are returned (they are held); an error before any
        is raised.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> from fuseline_nb.broker import MemoryBroker
        >>> wf = Workflow(outputs=[FunctionStep(lambda: n, name=f"s{n}") for n in range(3)])
        >>> broker = MemoryBroker()
        >>> wid = broker.register_worker([wf.to_schema()])
        >>> _ = broker.dispatch_workflow(wf.to_schema())
        >>> [a.step_name for a in broker.get_steps(wid, 2)], len(broker.get_steps(wid, 5))
        (['s0', 's1'], 1)
        """
        taken: list[StepAssignment] = []
        get = self.get_step
        while len(taken) < n:
            try:
                a = get(worker_id)
            except Exception:
                if taken:
                    return taken
                raise
            if a is None:
                break
            taken.append(a)
        return taken

    def report_steps(self, worker_id: str, reports: Iterable[StepReport]) -> list[Exception | None]:
        """Record several outcomes in order, as that many ``report_step`` calls would.

        Returns one entry per report: ``None`` when it was recorded, else the
        exception ``report_step`` raised for it (``StaleReportError``,
        ``UnknownRunError``...). A refused report does not stop the others.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow, Status
        >>> from fuseline_nb.broker import MemoryBroker, StepReport
        >>> wf = Workflow(outputs=[FunctionStep(lambda: n, name=f"s{n}") for n in range(2)])
        >>> broker = MemoryBroker()
        >>> wid = broker.register_worker([wf.to_schema()])
        >>> run_id = broker.dispatch_workflow(wf.to_schema())
        >>> got = broker.get_steps(wid, 2)
        >>> reports = [StepReport(a.workflow_id, a.instance_id, a.step_name, Status.SUCCEEDED, 1, attempt=a.attempt)
        ...            for a in got]
        >>> [type(e).__name__ if e else e for e in broker.report_steps(wid, reports + reports[:1])]
        [None, None, 'StaleReportError']
        """
        out: list[Exception | None] = []
        report = self.report_step
        for r in reports:
            try:
                report(worker_id, r)
                out.append(None)
            except Exception as exc:  # handed back in the report's place
                out.append(exc)
        return out

    def report_and_get(self, worker_id: str, reports: Iterable[StepReport],
                       n: int) -> tuple[list[Exception | None], list[StepAssignment]]:
        """``(report_steps(worker_id, reports), get_steps(worker_id, n))``: a worker's reports, then its next batch.

        The default makes the two calls; a broker in this process answers
        both under one lock with one application of their effects (same
        history, same events, same order).

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> from fuseline_nb.broker import MemoryBroker
        >>> broker = MemoryBroker()
        >>> wid = broker.register_worker([])
        >>> broker.report_and_get(wid, [], 4)
        ([], [])
        """
        return self.report_steps(worker_id, reports), self.get_steps(worker_id, n)


class Broker(_Shared):
    """Decides readiness and holds run state; workers talk to it through a client.

    See :class:`fuseline_nb.broker.MemoryBroker` for the implementation.

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> isinstance(MemoryBroker(), Broker)
    True
    """

    @abstractmethod
    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None, *,
                          cache: bool | None = None, rerun: Iterable[str] = ()) -> str:
        """Start a run: enqueue its roots; return the run id.

        ``cache`` reuses cached results (``None``: the broker's default);
        the steps in ``rerun`` run anyway (see :mod:`fuseline_nb.broker.cache`).
        ``workflow`` becomes the definition of its id and version for the runs
        dispatched from now on (an edited policy or step code under the same
        structure replaces the registered one; runs already going keep theirs);
        another structure under a known id and version raises
        :class:`~fuseline_nb.errors.SchemaMismatchError`.
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
    def subscribe(self, callback: Callable[[Event], None], *, kinds: Iterable[str] | None = None) -> Callable[[], None]:
        """Receive every lifecycle event (only those of ``kinds``, if given); returns an unsubscribe function."""

    @abstractmethod
    def events(self, run_id: str) -> list[Event]:
        """The run's lifecycle events so far, in order (what views replay)."""

    def status(self) -> dict[str, Any]:
        """A health summary."""
        return {"status": "ok"}

    # -- shipped definitions: what lets a reopened history resume its runs ---------------
    def store_definition(self, workflow_id: str, version: str, definition: bytes) -> None:
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

    def close(self) -> None:
        """Release resources."""

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BrokerClient(_Shared):
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
    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None) -> str:
        """Start a run; return its id."""

    def cancel_run(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel a run (see :meth:`fuseline_nb.broker.Broker.cancel_run`)."""
        raise TransportUnsupportedError(f"{type(self).__name__} cannot cancel runs; cancel through the "
                                        "Session, the broker or an HttpBrokerClient")

    def held_by(self, worker_id: str) -> list[Assignment]:
        """What ``worker_id`` holds, in hand-out order: the broker's record (a worker pool asks it).

        Only a client of a broker in this process answers it.
        """
        raise TransportUnsupportedError(f"{type(self).__name__} does not answer held_by(); "
                                        "a worker pool needs a LocalBrokerClient")

    def overdue(self) -> tuple[list[Assignment], float | None]:
        """The running steps past their timeout, and seconds until the next passes (see ``held_by``)."""
        raise TransportUnsupportedError(f"{type(self).__name__} does not answer overdue(); "
                                        "a worker pool needs a LocalBrokerClient")

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

    def unregister_worker(self, worker_id: str) -> None:
        """Tell the broker this worker is leaving (its assignments are re-queued)."""

    def close(self) -> None:
        """Release the transport."""

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
