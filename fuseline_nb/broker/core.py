"""The broker: one writer applying the transitions of its live state to a :class:`RuntimeStorage`.

The live state (:class:`~fuseline_nb.broker.state.LiveState`, documented
field by field in :mod:`fuseline_nb.broker.state`) is changed only by the
transition functions of :mod:`~fuseline_nb.broker.transitions`,
:mod:`~fuseline_nb.broker.leases` and :mod:`~fuseline_nb.broker.resume`;
each returns an :class:`~fuseline_nb.broker.transitions.Effects` (storage
writes, then events), and :meth:`StorageBroker._apply` carries them out:
every write goes to the storage (which may batch it), every event is
recorded and published. Readiness comes from :mod:`fuseline_nb.workflow.rules`,
the same rules ``wf.run`` uses.

All public methods hold one lock, so any thread may call them; mutation is
serialised — one writer.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow, Status
>>> from fuseline_nb.broker import MemoryBroker, StepReport
>>> wf = Workflow(outputs=[FunctionStep(lambda: 7, name="seven")])
>>> broker = MemoryBroker()
>>> wid = broker.register_worker([wf.to_schema()])
>>> run_id = broker.dispatch_workflow(wf.to_schema())
>>> a = broker.get_step(wid)
>>> broker.report_step(wid, StepReport(a.workflow_id, a.instance_id, a.step_name,
...                                    Status.SUCCEEDED, 7, attempt=a.attempt))
>>> broker.get_run(run_id).state
<Status.SUCCEEDED: 'SUCCEEDED'>
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from ..errors import (
    RunNotFoundError,
    StorageClosedError,
)
from ..workflow.events import Event, EventHub
from ..workflow.gcpause import paused_gc
from ..workflow.schema import WorkflowSchema
from ..workflow.value import values_of
from . import leases
from ._applying import Applier
from ._ctrlc import held_ctrl_c
from ._gcfreeze import freeze_for_run, thaw
from ._handing import Handing
from ._outbox import Outbox
from ._reads import HistoryReads
from ._workers import WorkerCalls
from .base import Broker
from .cache import CacheEntry, CacheStore, RunCache
from .resume import resume
from .state import LiveState
from .storage.base import RuntimeStorage
from .storage.memory import MemoryRuntimeStorage
from .transitions import dispatch, register

log = logging.getLogger(__name__)


class StorageBroker(Handing, Applier, WorkerCalls, HistoryReads, Broker):
    """A broker over any :class:`RuntimeStorage`.

    Parameters
    ----------
    storage:
        Where runs are kept (default: a new :class:`MemoryRuntimeStorage`).
        Unfinished runs found in it are resumed: steps that were queued or
        running are queued again; finished steps do not run again.
    lease_seconds:
        How long an assignment may go without a report or a keep-alive
        before it is given to another worker.
    clock:
        Time source (seconds); tests pass a fake one.
    worker_ttl:
        Forget an idle worker not heard from (a fetch, a report or a
        keep-alive) for this many seconds; ``None`` (the default) keeps
        workers until they unregister. A worker running a step is covered
        by its lease instead. Fuseline prunes after 30 s by default; here
        it is opt-in because notebook workers may sit idle for hours.
    cache:
        Whether runs reuse cached results unless ``dispatch_workflow`` says
        otherwise (see :mod:`fuseline_nb.broker.cache`).

    Examples
    --------
    >>> from fuseline_nb.broker.storage import MemoryRuntimeStorage
    >>> broker = StorageBroker(MemoryRuntimeStorage(), lease_seconds=30)
    >>> broker.lease_seconds, broker.status()["active_runs"]
    (30.0, 0)
    """

    def __init__(self, storage: RuntimeStorage | None = None, *, lease_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time, worker_ttl: float | None = None,
                 cache: bool = False) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, not {lease_seconds!r}")
        if worker_ttl is not None and not worker_ttl > 0:
            raise ValueError(f"worker_ttl must be > 0 seconds (or None: never prune), not {worker_ttl!r}")
        self.worker_ttl = None if worker_ttl is None else float(worker_ttl)
        self.storage = storage if storage is not None else MemoryRuntimeStorage()
        self.lease_seconds = float(lease_seconds)
        self._clock = clock
        self._lock = threading.RLock()
        self._hub = EventHub()
        self._state = LiveState(self.lease_seconds)
        self._out = Outbox(self._hub, self._lock, self._ended, self._settle)
        self._closed = False
        self.cache_default = bool(cache)
        self._cache_store: CacheStore | None = None
        s = self.storage
        self._do = self._writes_table()  # what each entry of an Effects' ops calls
        self._lookup: Callable[[list[str]], dict[str, tuple[CacheEntry, Any]]] = \
            lambda keys: self.cache_store.lookup(keys)
        for schema in s.list_workflows():
            register(self._state, schema)  # known already: nothing to write
        for run_id in s.unfinished_runs():
            self._resume(run_id)

    @property
    def max_lease_requeues(self) -> int:
        """A step whose lease passes this many times in a row without a report FAILS
        (``LeaseExpiredError``) instead of being queued again: no run livelocks."""
        return self._state.max_lease_requeues

    @max_lease_requeues.setter
    def max_lease_requeues(self, n: int) -> None:
        self._state.max_lease_requeues = int(n)

    # -- workflows and workers -----------------------------------------------------
    def _register(self, schema: WorkflowSchema, replace: bool = True) -> Any:
        if not isinstance(schema, WorkflowSchema):
            to_schema = getattr(schema, "to_schema", None)
            if not callable(to_schema):
                raise TypeError(f"expected a WorkflowSchema (or a Workflow), not {schema!r}")
            schema = to_schema()
        compiled, fx = register(self._state, schema, replace=replace)
        self._apply(fx)
        return compiled

    def register_workflow(self, workflow: WorkflowSchema) -> list[str]:
        """Know ``workflow`` as its ``(workflow_id, version)``'s definition for the runs dispatched from now on.

        :meth:`dispatch_workflow` does this first; a caller that ships an
        edited workflow to its workers calls it before shipping, so a run of
        the older definition still going (whose later steps the workers now
        run with the newer code) stores no cache entries from then on.
        Returns the ids of those runs when ``workflow`` replaced the key's
        definition now (else ``[]``).

        Raises
        ------
        SchemaMismatchError
            Another structure is registered under the workflow's id and version.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> from fuseline_nb.broker import MemoryBroker
        >>> broker = MemoryBroker()
        >>> broker.register_workflow(Workflow(outputs=[FunctionStep(abs, name="a")], workflow_id="w").to_schema())
        []
        >>> [s.workflow_id for s in broker.list_workflows()]
        ['w']
        """
        with self._lock:
            self._check_open()
            st = self._state
            before = st.compiled.get((workflow.workflow_id, workflow.version))
            with paused_gc():
                compiled = self._register(workflow)
            if before is None or compiled is before:
                return []
            return [rid for rid in st.active.get(compiled.key, ()) if st.runs[rid].compiled is not compiled]

    def register_worker(self, workflows: Iterable[WorkflowSchema], name: str | None = None) -> str:
        """Register a worker that can run ``workflows``; return its id."""
        with self._lock:
            self._check_open()
            if self.worker_ttl is not None:
                self._prune(self._clock())
            with paused_gc():
                # a worker's copy may be older than what was submitted since: it never displaces it
                keys = {self._register(schema, replace=False).key for schema in workflows}
            wid = uuid.uuid4().hex[:12]
            leases.add_worker(self._state, wid, name, keys, self._clock())
            return wid

    def subscribe(self, callback: Callable[[Event], None], *, kinds: Iterable[str] | None = None,
                  batch: bool = False) -> Callable[[], None]:
        """Receive the lifecycle events from now on (called under the broker's lock: be quick).

        ``kinds`` delivers only those (the rest cost the listener nothing);
        ``batch=True`` hands ``callback`` a list of events per delivery (see
        :class:`~fuseline_nb.workflow.events.EventHub`).
        """
        with self._lock:
            if self._out.held or self._out.later:  # made before it subscribed: not for it
                self._out.deliver()
            return self._hub.subscribe(callback, kinds=kinds, batch=batch)

    def deferred_events(self) -> AbstractContextManager[None]:
        """Deliver the events this thread's broker calls make when the block ends (see :meth:`Broker.deferred_events`)."""
        return self._out._block  # (what _out.deferred() answers: one object for every block)

    # -- runs --------------------------------------------------------------------------
    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None, *,
                          cache: bool | None = None, rerun: Iterable[str] = ()) -> str:
        """Start a run of ``workflow`` with ``inputs``; return its run id.

        ``cache`` (default: the broker's ``cache``) reuses the results of
        steps whose keys were seen; the steps in ``rerun`` run anyway. A
        Ctrl-C meanwhile is raised once the run is dispatched whole.
        """
        with held_ctrl_c(), self._lock:
            self._check_open()
            with paused_gc():
                run_id = self._dispatch(workflow, inputs, cache, rerun)
            run = self._state.runs.get(run_id)
            if run is not None:  # a long run: the workflow, schema, plan, records out of the GC's walks
                freeze_for_run(len(run.compiled.plan.order))
            return run_id

    def _dispatch(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None, cache: bool | None,
                  rerun: Iterable[str]) -> str:
        compiled = self._register(workflow)
        compiled.schema.check_inputs(inputs or {})  # MissingInputError before the run exists
        inputs = values_of(inputs)  # made here when the caller passed objects
        run_cache = None
        if self.cache_default if cache is None else cache:
            schema = workflow if isinstance(workflow, WorkflowSchema) else compiled.schema
            run_cache = RunCache(schema, inputs, rerun)
        run_id = uuid.uuid4().hex
        _, fx = dispatch(self._state, compiled, run_id, inputs, self._clock(), run_cache, self._lookup)
        self._apply(fx)
        return run_id

    def cancel_run(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel a run: its unfinished steps become CANCELLED and it ends; see :meth:`Broker.cancel_run`.

        A Ctrl-C meanwhile is raised once the run is cancelled whole.
        """
        with held_ctrl_c(), self._lock:
            self._check_open()
            run = self._state.runs.get(run_id)
            if run is None:
                self._settled()
                info = self.storage.load_run(run_id)
                if info is None:
                    raise RunNotFoundError(run_id)
                log.warning("run %s already ended (%s): nothing to cancel", run_id, info.state.value)
                return False
            self._apply(leases.cancel(self._state, run, reason, self._clock()))
            return True

    def close(self) -> None:
        """Flush and close the storage; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._settled()  # what a deferred block holds (a close from inside one) is written first
            self._closed = True
            thaw()
            self.storage.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosedError(f"{type(self).__name__} is closed")

    # -- restart -------------------------------------------------------------------------
    def _resume(self, run_id: str) -> None:
        info = self.storage.load_run(run_id)
        if info is None:
            return
        compiled = self._state.compiled.get((info.workflow_id, info.version))
        if compiled is None:
            log.error("cannot resume run %s: workflow %s@%s is not in storage", run_id,
                      info.workflow_id, info.version)
            return
        last_seq = max((e.seq for e in self.storage.events(run_id)), default=0)
        self._apply(resume(self._state, compiled, info, last_seq, self._clock()))


class MemoryBroker(StorageBroker):
    """The broker with in-memory storage: nothing survives the process.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.broker.clients import LocalBrokerClient
    >>> from fuseline_nb.worker import ProcessEngine
    >>> wf = Workflow(outputs=[FunctionStep(lambda: 7, name="seven")])
    >>> broker = MemoryBroker()
    >>> client = LocalBrokerClient(broker)
    >>> run_id = client.dispatch_workflow(wf.to_schema())
    >>> ProcessEngine(client, [wf]).work()
    >>> broker.get_run(run_id).steps["seven"].result
    7
    """

    def __init__(self, *, lease_seconds: float = 60.0, clock: Callable[[], float] = time.time,
                 worker_ttl: float | None = None, cache: bool = False) -> None:
        super().__init__(MemoryRuntimeStorage(), lease_seconds=lease_seconds, clock=clock, worker_ttl=worker_ttl,
                         cache=cache)


__all__ = [
    "MemoryBroker",
    "StorageBroker",
]
