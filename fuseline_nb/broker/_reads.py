"""What a :class:`~fuseline_nb.broker.core.StorageBroker` answers without changing anything.

Runs (live ones from the broker's memory, ended ones from the storage),
events, stored definitions, counts, and the result cache. Every method takes
the broker's lock, so a reader never sees a transition half applied.

Examples
--------
>>> from fuseline_nb.broker import MemoryBroker
>>> MemoryBroker().status()["active_runs"], MemoryBroker().list_runs()
(0, [])
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import RunNotFoundError, StorageClosedError
from ..workflow.events import Event
from ..workflow.runinfo import RunInfo, StepInfo
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status
from . import leases
from ._ended import EndedSteps
from ._fuseline_store import FuselineStoreView
from .cache import CacheStore, CacheView, MemoryCacheStore
from .state import Assignment, LiveState, Worker
from .storage.base import RuntimeStorage


class HistoryReads:
    """The read side of :class:`~fuseline_nb.broker.core.StorageBroker` (a base class of it).

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> issubclass(MemoryBroker, HistoryReads)
    True
    """

    storage: RuntimeStorage
    _lock: threading.RLock
    _state: LiveState
    _closed: bool
    _cache_store: CacheStore | None
    _clock: Callable[[], float]

    if TYPE_CHECKING:  # the broker's own (_applying.Applier)
        def _settled(self) -> None: ...

    @property
    def _workers(self) -> dict[str, Worker]:
        """Fuseline's ``broker._workers`` (worker id -> its record), for code written against Fuseline."""
        return self._state.workers

    @property
    def _store(self) -> FuselineStoreView:
        """Fuseline's ``broker._store`` calls, keyed by (workflow, instance, step)."""
        return FuselineStoreView(self)  # type: ignore[arg-type]

    def held_by(self, worker_id: str) -> list[Assignment]:
        """What ``worker_id`` holds, in hand-out order (a worker process runs the first): the broker's record.

        Each :class:`~fuseline_nb.broker.state.Assignment` names the run,
        step, attempt, the step's ``timeout`` and whether its run was
        ``cancelled`` meanwhile. An unknown worker holds nothing. Pools ask
        this (and :meth:`overdue`) instead of keeping their own record.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> from fuseline_nb.broker import MemoryBroker
        >>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")])
        >>> broker = MemoryBroker()
        >>> wid = broker.register_worker([wf.to_schema()])
        >>> run_id = broker.dispatch_workflow(wf.to_schema())
        >>> a = broker.get_step(wid)
        >>> [(h.step, h.attempt, h.cancelled) for h in broker.held_by(wid)], broker.held_by("nobody")
        ([('one', 1, False)], [])
        """
        with self._lock:
            worker = self._state.workers.get(worker_id)
            return list(worker.held.values()) if worker is not None else []

    def overdue(self) -> tuple[list[Assignment], float | None]:
        """The running steps past their ``StepTimeoutPolicy``, and seconds until the next one passes.

        A step's timeout counts from when it became the first its worker
        holds. The broker only names them: the pool stops the process and
        reports the attempt FAILED.

        Examples
        --------
        >>> from fuseline_nb.broker import MemoryBroker
        >>> MemoryBroker().overdue()
        ([], None)
        """
        with self._lock:
            return leases.overdue(self._state.workers.values(), self._clock())

    def list_workflows(self) -> list[WorkflowSchema]:
        """Registered workflow schemas."""
        with self._lock:
            return [c.schema for c in self._state.compiled.values()]

    def get_workflow(self, workflow_id: str, version: str) -> WorkflowSchema | None:
        """The schema of a registered workflow, or of one kept in the history; ``None`` if unknown."""
        with self._lock:
            compiled = self._state.compiled.get((workflow_id, version))
            if compiled is not None:
                return compiled.schema
            self._settled()
            return self.storage.get_workflow(workflow_id, version)

    def get_run(self, run_id: str) -> RunInfo:
        """The run's :class:`RunInfo` (RUNNING until it ends)."""
        with self._lock:
            run = self._state.runs.get(run_id)
            state = Status.RUNNING
            ended = False
            if run is None and run_id in self._state.ending:  # asked by a run_finished subscriber
                run = self._state.ending[run_id]
                state = run.tracker.run_state()
                ended = True
            if run is not None and not ended and self._closed:  # its live record stopped changing at close
                raise StorageClosedError(
                    f"{type(self).__name__} is closed: run {run_id!r} had not ended; a broker (Session) "
                    "opened on its history file resumes it, ask that one")
            if run is not None:
                infos, order = run.infos, run.compiled.plan.order
                if ended:  # its records change no more and the broker drops them now: made once, not copied
                    steps = {n: infos.get(n) or StepInfo() for n in order}
                else:
                    steps = {n: infos.copy(n) for n in order}
                return RunInfo(run_id, run.key[0], state, steps, run.key[1],
                               dict(run.inputs), run.created_at)
            self._settled()  # what a deferred block holds: written before the history is read
            info = self.storage.load_run(run_id)
            if info is None:
                raise RunNotFoundError(run_id)
            return info

    def _final_record(self, run_id: str) -> RunInfo | None:
        """For a ``run_finished`` listener that keeps it: the ended run's record, its steps made when read.

        :meth:`get_run` makes a ``StepInfo`` per step at once; this one keeps
        the run's compact records (:class:`~fuseline_nb.broker._ended.EndedSteps`),
        which the broker is dropping. ``None`` when the run is not ending.
        """
        with self._lock:
            run = self._state.ending.get(run_id)
            if run is None:
                return None
            return RunInfo(run_id, run.key[0], run.tracker.run_state(), EndedSteps(run.infos),  # type: ignore[arg-type]
                           run.key[1], dict(run.inputs), run.created_at)

    def list_runs(self) -> list[RunInfo]:
        """Every run the storage knows, oldest first (without step records)."""
        with self._lock:
            self._settled()
            return self.storage.list_runs()

    def unfinished_runs(self) -> list[tuple[str, str, str]]:
        """``(run id, workflow id, version)`` of the live runs (resumed or running), oldest first."""
        with self._lock:
            return [(run_id, *run.key) for run_id, run in self._state.runs.items()]

    def store_definition(self, workflow_id: str, version: str, definition: bytes) -> None:
        """Keep the shipped workflow bytes in the storage (a DuckDB file keeps them; memory does not)."""
        with self._lock:
            self._settled()
        self.storage.put_definition(workflow_id, version, definition)

    def stored_definition(self, workflow_id: str, version: str) -> bytes | None:
        """The workflow bytes the storage kept for ``(workflow_id, version)``, or ``None``."""
        return self.storage.get_definition(workflow_id, version)

    def events(self, run_id: str) -> list[Event]:
        """The run's lifecycle events, in order."""
        with self._lock:
            self._settled()
            return self.storage.events(run_id)

    def status(self) -> dict[str, Any]:
        """Counts of workers, live runs and registered workflows."""
        with self._lock:
            st = self._state
            return {"status": "ok", "workers": len(st.workers), "active_runs": len(st.runs),
                    "workflows": len(st.compiled)}

    @property
    def cache_store(self) -> CacheStore:
        """Where cached results live: the storage's own store, or memory."""
        if self._cache_store is None:
            make = getattr(self.storage, "cache_store", None)
            self._cache_store = make() if callable(make) else MemoryCacheStore()
        return self._cache_store

    @property
    def cache(self) -> CacheView:
        """The result cache: ``len``, ``entries()``, ``clear(step=None, older_than=None)``."""
        with self._lock:
            return CacheView(self.cache_store)


__all__ = ["HistoryReads"]
