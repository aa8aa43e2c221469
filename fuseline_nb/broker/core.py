"""The broker: one writer over a :class:`RuntimeStorage`, with leases and events.

State of a live run lives in memory (:class:`LiveRun`); every change is
handed to the storage, which may batch it. Readiness comes from
:mod:`fuseline_nb.workflow.rules`, the same rules ``wf.run`` uses.

Per step the broker does: assign (attempt += 1, lease deadline), report
(validate the attempt, resolve the action, feed the rules), enqueue what
became ready. An assignment whose lease passes without a report or a
keep-alive goes back to the queue as a new attempt; a report from the old
attempt is then refused with :class:`~fuseline_nb.errors.StaleReportError`.
A FAILED report is retried while the step's ``RetryPolicy`` allows.

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

import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import (
    RunNotFoundError,
    SchemaMismatchError,
    StaleReportError,
    StorageClosedError,
    UnknownActionError,
    UnknownRunError,
    UnknownWorkerError,
)
from ..workflow.events import Event, EventHub
from ..workflow.rules import Changes, Outcome, resolve_action
from ..workflow.runinfo import RunInfo
from ..workflow.schema import WorkflowSchema
from ..workflow.status import SKIP_CONDITION, SKIP_NOT_REACHED, Status
from ..workflow.value import Value, preview, values_of
from ._fuseline_store import FuselineStoreView
from .base import Broker, LastTask, Payload, StepAssignment, StepReport, WorkerInfo
from .cache import CacheEntry, CacheStore, CacheView, MemoryCacheStore, RunCache, new_entry, serve
from .live import Compiled, Key, LiveRun, Worker, copy_info, succeeded
from .registry import idle_workers
from .storage.base import RuntimeStorage
from .storage.memory import MemoryRuntimeStorage

log = logging.getLogger(__name__)

class StorageBroker(Broker):
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

    #: A step whose lease passes this many times in a row without a report FAILS
    #: (``LeaseExpiredError``) instead of being queued again: no run livelocks.
    max_lease_requeues: int = 3

    def __init__(self, storage: RuntimeStorage | None = None, *, lease_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time, worker_ttl: float | None = None,
                 cache: bool = False) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, not {lease_seconds!r}")
        if worker_ttl is not None and not worker_ttl > 0:
            raise ValueError(f"worker_ttl must be > 0 seconds (or None: never prune), not {worker_ttl!r}")
        self.worker_ttl = None if worker_ttl is None else float(worker_ttl)
        self._pruned: dict[str, float] = {}  # worker id -> when it was pruned
        self.storage = storage if storage is not None else MemoryRuntimeStorage()
        self.lease_seconds = float(lease_seconds)
        self._clock = clock
        self._lock = threading.RLock()
        self._hub = EventHub()
        self._compiled: dict[Key, Compiled] = {}
        self._runs: dict[str, LiveRun] = {}
        self._active: dict[Key, dict[str, None]] = {}  # ordered set of live run ids per workflow
        self._workers: dict[str, Worker] = {}
        self._leases: list[tuple[float, str, str, int]] = []
        self._delayed: list[tuple[float, str, str]] = []  # retries waiting for RetryPolicy.wait
        self._expired: dict[tuple[str, str], int] = {}  # (run, step) -> leases expired in a row
        self._closed = False
        self.cache_default = bool(cache)
        self._run_caches: dict[str, RunCache] = {}
        self._cache_store: CacheStore | None = None
        for schema in self.storage.list_workflows():
            self._compiled[(schema.workflow_id, schema.version)] = Compiled(schema)
        for run_id in self.storage.unfinished_runs():
            self._resume(run_id)

    # -- workflows and workers -----------------------------------------------------
    def _register(self, schema: WorkflowSchema) -> Compiled:
        if not isinstance(schema, WorkflowSchema):
            to_schema = getattr(schema, "to_schema", None)
            if not callable(to_schema):
                raise TypeError(f"expected a WorkflowSchema (or a Workflow), not {schema!r}")
            schema = to_schema()
        key = (schema.workflow_id, schema.version)
        known = self._compiled.get(key)
        if known is not None:
            if schema is not known.schema and known.structure_key() != schema.structure_key():
                diff = "; ".join(known.schema.differences(schema))
                raise SchemaMismatchError(
                    f"workflow {schema.workflow_id!r} version {schema.version!r} is already "
                    f"registered with a different definition ({diff}): give the new "
                    "definition another version or workflow_id"
                )
            return known
        compiled = Compiled(schema)
        self._compiled[key] = compiled
        self.storage.register_workflow(schema)
        return compiled

    def register_worker(self, workflows: Iterable[WorkflowSchema], name: str | None = None) -> str:
        """Register a worker that can run ``workflows``; return its id."""
        with self._lock:
            self._check_open()
            if self.worker_ttl is not None:
                self._prune(self._clock())
            keys = set()
            for schema in workflows:
                c = self._register(schema)
                keys.add((c.schema.workflow_id, c.schema.version))
            now = self._clock()
            wid = uuid.uuid4().hex[:12]
            # The name is what views, events and SQL (steps.worker) show: the caller's
            # (a pool's w1, w2...), else the first free w<N>.
            if not name:
                used = {w.info.name for w in self._workers.values()}
                name = next(f"w{n}" for n in itertools.count(1) if f"w{n}" not in used)
            info = WorkerInfo(wid, now, now, None, sorted(f"{k[0]}@{k[1]}" for k in keys), name)
            self._workers[wid] = Worker(info, keys)
            return wid

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker; its unfinished assignments go back to the queue at once."""
        with self._lock:
            worker = self._workers.pop(worker_id, None)
            if worker is None:
                return
            for run_id, step in list(worker.assigned):
                run = self._runs.get(run_id)
                if run is not None and step in run.assigned:
                    self._requeue_assignment(run, step, "worker gone")

    def _prune(self, now: float) -> None:
        """Forget idle workers whose keep-alives stopped (``worker_ttl``)."""
        assert self.worker_ttl is not None
        seen = ((wid, w.info.last_seen, bool(w.assigned)) for wid, w in self._workers.items())
        for wid in idle_workers(seen, now, self.worker_ttl):
            log.warning("worker %s pruned: not heard from for over %s s", wid, self.worker_ttl)
            del self._workers[wid]
            self._pruned[wid] = now

    def _worker(self, worker_id: str) -> Worker:
        try:
            w = self._workers[worker_id]
        except KeyError:
            if worker_id in self._pruned:
                raise UnknownWorkerError(
                    f"worker {worker_id!r} was pruned: not heard from for over {self.worker_ttl} s "
                    "(worker_ttl); register it again"
                ) from None
            raise UnknownWorkerError(
                f"unknown worker: {worker_id!r} (register it first; a restarted broker forgets workers)"
            ) from None
        w.info.last_seen = self._clock()
        return w

    def keep_alive(self, worker_id: str) -> list[tuple[str, str]]:
        """Mark the worker alive and extend the lease of each of its assignments.

        Returns the ``(run id, step)`` assignments it held that were cancelled
        since its last keep-alive: it should stop running them.
        """
        with self._lock:
            if self.worker_ttl is not None:
                self._prune(self._clock())
            worker = self._worker(worker_id)
            cancelled, worker.cancelled = worker.cancelled, []
            deadline = self._clock() + self.lease_seconds
            for run_id, step in worker.assigned:
                run = self._runs.get(run_id)
                if run is None or step not in run.assigned:
                    continue
                wid, att, _ = run.assigned[step]
                run.assigned[step] = (wid, att, deadline)
                heapq.heappush(self._leases, (deadline, run_id, step, att))
            return cancelled

    def list_workers(self) -> list[WorkerInfo]:
        """Registered workers (idle ones past ``worker_ttl`` are pruned first)."""
        with self._lock:
            if self.worker_ttl is not None:
                self._prune(self._clock())
            return [w.info for w in self._workers.values()]

    def list_workflows(self) -> list[WorkflowSchema]:
        """Registered workflow schemas."""
        with self._lock:
            return [c.schema for c in self._compiled.values()]

    def get_workflow(self, workflow_id: str, version: str) -> WorkflowSchema | None:
        """The schema of a registered workflow, or of one kept in the history; ``None`` if unknown."""
        with self._lock:
            compiled = self._compiled.get((workflow_id, version))
            if compiled is not None:
                return compiled.schema
            return self.storage.get_workflow(workflow_id, version)

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Receive every lifecycle event (called under the broker's lock: be quick)."""
        return self._hub.subscribe(callback)

    # -- runs --------------------------------------------------------------------------
    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None, *,
                          cache: bool | None = None, rerun: Iterable[str] = ()) -> str:
        """Start a run of ``workflow`` with ``inputs``; return its run id.

        ``cache`` (default: the broker's ``cache``) reuses the results of
        steps whose keys were seen; the steps in ``rerun`` run anyway.
        """
        with self._lock:
            self._check_open()
            compiled = self._register(workflow)
            compiled.schema.check_inputs(inputs or {})  # MissingInputError before the run exists
            run_id = uuid.uuid4().hex
            now = self._clock()
            inputs = values_of(inputs)  # made here when the caller passed objects
            run = LiveRun(run_id, compiled, inputs, now)
            self.storage.create_run(run_id, compiled.schema.workflow_id, compiled.schema.version,
                                    inputs, compiled.plan.order, now)
            self._runs[run_id] = run
            self._active.setdefault(run.key, {})[run_id] = None
            if self.cache_default if cache is None else cache:
                schema = workflow if isinstance(workflow, WorkflowSchema) else compiled.schema
                self._run_caches[run_id] = RunCache(schema, inputs, rerun)
            self._emit(run, now, "run_dispatched", None, None, None, 0,
                       {"workflow_id": compiled.schema.workflow_id})
            self._apply(run, Changes(ready=run.tracker.start()), now)
            return run_id

    def get_step(self, worker_id: str) -> StepAssignment | None:
        """The next ready step ``worker_id`` can run, or ``None``."""
        with self._lock:
            if self._closed:
                self._check_open()
            if self.worker_ttl is not None:
                self._prune(self._clock())
                if worker_id in self._pruned:  # as in Fuseline: a pruned worker gets nothing
                    log.warning("get_step from pruned worker %s: nothing given; register it again", worker_id)
                    return None
            worker = self._workers.get(worker_id) or self._worker(worker_id)
            now = worker.info.last_seen = self._clock()
            if (self._leases and self._leases[0][0] <= now) or (self._delayed and self._delayed[0][0] <= now):
                self._expire(now)
            for key in worker.keys:
                for run_id in self._active.get(key, ()):
                    run = self._runs[run_id]
                    while (step := self.storage.fetch_next(run_id)) is not None:
                        if step in run.assigned or step in run.tracker.outcomes:
                            log.debug("dropping duplicate queue entry %r of run %s", step, run_id)
                            continue  # a duplicate entry never runs a step twice
                        if step not in run.infos:
                            log.warning("dropping queue entry %r of run %s: the workflow has no such step",
                                        step, run_id)
                            continue
                        return self._assign(run, step, worker, now)
            return None

    def report_step(self, worker_id: str, report: StepReport) -> None:
        """Record one attempt's outcome; refuse a report for a superseded attempt."""
        with self._lock:
            if self._closed:
                self._check_open()
            worker = self._workers.get(worker_id) or self._worker(worker_id)
            now = worker.info.last_seen = self._clock()
            run = self._runs.get(report.instance_id)
            if run is None:
                if self.storage.load_run(report.instance_id) is None:
                    raise UnknownRunError(f"unknown run: {report.instance_id!r}")
                raise StaleReportError(
                    f"report for step {report.step_name!r} refused: run {report.instance_id!r} has ended"
                )
            step = report.step_name
            held = run.assigned.get(step)
            if held is None or held[0] != worker_id or held[1] != report.attempt:
                raise StaleReportError(
                    f"report for step {step!r} attempt {report.attempt} of run {run.run_id!r} "
                    f"refused: that attempt is no longer assigned to worker {worker_id!r} "
                    "(its lease expired and the step was queued again)"
                )
            del run.assigned[step]
            worker.assigned.discard((run.run_id, step))
            if self._expired:
                self._expired.pop((run.run_id, step), None)  # a report: the lease count starts over
            state = report.state
            if state.__class__ is not Status:
                state = Status(state)
            worker.info.last_task = LastTask(run.key[0], run.run_id, step, state is not Status.FAILED)
            self._complete(run, step, state, report, now)

    def cancel_run(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel a run: its unfinished steps become CANCELLED and it ends; see :meth:`Broker.cancel_run`."""
        with self._lock:
            self._check_open()
            run = self._runs.get(run_id)
            if run is None:
                info = self.storage.load_run(run_id)
                if info is None:
                    raise RunNotFoundError(run_id)
                log.warning("run %s already ended (%s): nothing to cancel", run_id, info.state.value)
                return False
            now = self._clock()
            held = run.assigned
            run.assigned = {}
            for step, (wid, _, _) in held.items():
                worker = self._workers.get(wid)
                if worker is not None:
                    worker.assigned.discard((run_id, step))
                    worker.cancelled.append((run_id, step))  # told at its next keep-alive
            detail: dict[str, Any] = {"cause": "run cancelled"}
            if reason:
                detail["reason"] = reason
            for step in run.tracker.cancel():
                step_info = run.infos[step]
                running = step in held
                step_info.state, step_info.finished_at = Status.CANCELLED, now
                self.storage.save_step(run_id, step, step_info)
                self._emit(run, now, "step_finished", step, Status.CANCELLED,
                           held[step][0] if running else None, step_info.attempts if running else 0, detail)
            log.info("run %s cancelled (%d step(s) were running)%s", run_id, len(held),
                     f": {reason}" if reason else "")
            self._finish_run(run, now)
            return True

    def get_run(self, run_id: str) -> RunInfo:
        """The run's :class:`RunInfo` (RUNNING until it ends)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                steps = {n: copy_info(i) for n, i in run.infos.items()}
                return RunInfo(run_id, run.key[0], Status.RUNNING, steps, run.key[1],
                               dict(run.inputs), run.created_at)
            info = self.storage.load_run(run_id)
            if info is None:
                raise RunNotFoundError(run_id)
            return info

    def list_runs(self) -> list[RunInfo]:
        """Every run the storage knows, oldest first (without step records)."""
        with self._lock:
            return self.storage.list_runs()

    def unfinished_runs(self) -> list[tuple[str, str, str]]:
        """``(run id, workflow id, version)`` of the live runs (resumed or running), oldest first."""
        with self._lock:
            return [(run_id, *run.key) for run_id, run in self._runs.items()]

    def store_definition(self, workflow_id: str, version: str, definition: bytes) -> None:
        """Keep the shipped workflow bytes in the storage (a DuckDB file keeps them; memory does not)."""
        self.storage.put_definition(workflow_id, version, definition)

    def stored_definition(self, workflow_id: str, version: str) -> bytes | None:
        """The workflow bytes the storage kept for ``(workflow_id, version)``, or ``None``."""
        return self.storage.get_definition(workflow_id, version)

    def events(self, run_id: str) -> list[Event]:
        """The run's lifecycle events, in order."""
        with self._lock:
            return self.storage.events(run_id)

    def status(self) -> dict[str, Any]:
        """Counts of workers, live runs and queued retries."""
        with self._lock:
            return {"status": "ok", "workers": len(self._workers), "active_runs": len(self._runs),
                    "workflows": len(self._compiled)}

    def close(self) -> None:
        """Flush and close the storage; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.storage.close()

    @property
    def _store(self) -> FuselineStoreView:
        """Fuseline's ``broker._store`` calls, keyed by (workflow, instance, step)."""
        return FuselineStoreView(self)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosedError(f"{type(self).__name__} is closed")

    # -- transitions -----------------------------------------------------------------
    def _emit(self, run: LiveRun, at: float, kind: Any, step: str | None, state: Status | None,
              worker: str | None, attempt: int, detail: dict[str, Any] | None) -> None:
        run.seq = seq = run.seq + 1
        event = Event(kind, run.run_id, seq, at, step, state, worker, attempt, detail)
        self.storage.record_event(event)
        if self._hub.has_subscribers:
            self._hub.publish(event)

    def _enqueue(self, run: LiveRun, steps: list[str], now: float,
                 detail: dict[str, Any] | None = None) -> None:
        storage, run_id, infos = self.storage, run.run_id, run.infos
        for step in steps:
            info = infos[step]
            info.queued_at = now
            storage.enqueue(run_id, step)
            storage.save_step(run_id, step, info)
            self._emit(run, now, "step_queued", step, Status.PENDING, None, 0, detail)

    def _assign(self, run: LiveRun, step: str, worker: Worker, now: float) -> StepAssignment:
        info = run.infos[step]
        info.attempts = attempt = info.attempts + 1
        info.state = Status.RUNNING
        wid = worker.info.worker_id
        info.worker = label = worker.info.name or wid
        info.started_at = now
        info.finished_at = None
        deadline = now + self.lease_seconds
        run_id = run.run_id
        run.assigned[step] = (wid, attempt, deadline)
        worker.assigned.add((run_id, step))
        heapq.heappush(self._leases, (deadline, run_id, step, attempt))
        self.storage.save_step(run_id, step, info)
        self._emit(run, now, "step_started", step, Status.RUNNING, label, attempt, None)
        done = run.results
        results = {src: done[src] for src in run.compiled.sources[step] if src in done}
        payload: Payload = {"workflow_inputs": run.inputs, "results": results, "winners": run.tracker.winners(step)}
        return StepAssignment(run.key[0], run_id, step, payload, now, deadline, attempt, run.key[1],
                              run.compiled.timeouts.get(step))

    def _expire(self, now: float) -> None:
        leases = self._leases
        while leases and leases[0][0] <= now:
            _, run_id, step, attempt = heapq.heappop(leases)
            run = self._runs.get(run_id)
            held = run.assigned.get(step) if run is not None else None
            if run is None or held is None or held[1] != attempt or held[2] > now:
                continue  # reported, superseded, or extended by a keep-alive
            self._lease_expired(run, step, attempt, now)
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, run_id, step = heapq.heappop(delayed)
            run = self._runs.get(run_id)
            if run is not None:
                self._enqueue(run, [step], now, {"reason": "retry"})

    def _lease_expired(self, run: LiveRun, step: str, attempt: int, now: float) -> None:
        """Queue a step whose lease passed again, or FAIL it after ``max_lease_requeues`` in a row."""
        key = (run.run_id, step)
        n = self._expired[key] = self._expired.get(key, 0) + 1
        if n < self.max_lease_requeues:
            self._requeue_assignment(run, step, "lease expired")
            return
        del self._expired[key]
        wid = run.assigned.pop(step)[0]
        w = self._workers.get(wid)
        if w is not None:
            w.assigned.discard(key)
        error = (f"LeaseExpiredError: step {step!r} went {n} leases of {self.lease_seconds:g} s in a row "
                 "without a report (its worker hung or died unseen, or the step held the GIL so no "
                 "keep-alive got out); not queued again: raise lease_seconds, or give the step a "
                 "StepTimeoutPolicy")
        log.warning("step %r of run %s: %s", step, run.run_id, error)
        report = StepReport(run.key[0], run.run_id, step, Status.FAILED, attempt=attempt, error=error,
                            finished_at=now)
        self._complete(run, step, Status.FAILED, report, now, retryable=False)

    def _requeue_assignment(self, run: LiveRun, step: str, reason: str) -> None:
        wid, attempt, _ = run.assigned.pop(step)
        w = self._workers.get(wid)
        if w is not None:
            w.assigned.discard((run.run_id, step))
        info = run.infos[step]
        info.state = Status.PENDING
        label, info.worker = info.worker or wid, None
        log.warning("step %r of run %s attempt %d: %s; queued again", step, run.run_id, attempt, reason)
        now = self._clock()
        # the lost attempt ends (one step_finished per attempt), then the step is queued again
        self._emit(run, now, "step_finished", step, Status.FAILED, label, attempt,
                   {"error": reason, "retry": attempt, "lost": True})
        self._emit(run, now, "step_queued", step, Status.PENDING, label, attempt, {"reason": reason})
        info.queued_at = now
        self.storage.enqueue(run.run_id, step)
        self.storage.save_step(run.run_id, step, info)

    def _complete(self, run: LiveRun, step: str, state: Status, report: StepReport, now: float,
                  retryable: bool = True) -> None:
        info = run.infos[step]
        info.finished_at = report.finished_at or now
        if report.started_at:
            info.started_at = report.started_at
        value = report.result
        if state is Status.SUCCEEDED:
            candidate = report.action
            if candidate is None:  # a worker names the action a str result chose; a direct caller may not
                candidate = json.loads(value.json) if value.__class__ is Value and value.type_name == "str" \
                    and value.json else value
            if value is not None and value.__class__ is not Value:
                value = Value.of(value)  # a direct caller's object: made into a value here, once
            if value is not None:  # named in the error if the notebook cannot open it
                value.origin = f"the result of step {step!r} of run {run.run_id}"
            try:
                info.action = resolve_action(run.compiled.plan, step, candidate)
            except UnknownActionError as exc:
                state, report.error, retryable = Status.FAILED, f"UnknownActionError: {exc}", False
        if state is Status.FAILED:
            if report.error and report.error.startswith("ValueLoadError:"):
                retryable = False  # the step never ran: a retry would read the same bytes
            fails = run.failures.get(step, 0) + 1
            run.failures[step] = fails
            max_attempts, wait = run.compiled.retries.get(step, (1, 0))
            info.error, info.traceback = report.error or "failed", report.traceback
            if retryable and fails < max_attempts:
                # this attempt ends (one step_finished per attempt); the retry is a new queueing
                self._emit(run, now, "step_finished", step, Status.FAILED, info.worker, info.attempts,
                           {"error": info.error, "retry": fails})
                info.state = Status.PENDING
                self.storage.save_step(run.run_id, step, info)
                if wait:
                    heapq.heappush(self._delayed, (now + wait, run.run_id, step))
                else:
                    self._enqueue(run, [step], now, {"reason": "retry"})
                return
            outcome = Outcome.failed()
        elif state is Status.SKIPPED:
            outcome = Outcome.skipped_by_condition()
            info.skip_reason = SKIP_CONDITION
        elif state is Status.SUCCEEDED:
            outcome = succeeded(info.action or "default")
            info.error = info.traceback = None
            run.results[step] = info.result = value
            self.storage.set_result(run.run_id, step, value)
            cache = self._run_caches.get(run.run_id)
            if cache is not None:
                entry = new_entry(cache, run.run_id, step, info.action, value, now)
                if entry is not None:
                    self.cache_store.put(entry, value)
        else:
            raise ValueError(f"a report's state must be SUCCEEDED, FAILED or SKIPPED, not {state}")
        info.state = state
        self.storage.save_step(run.run_id, step, info)
        detail: dict[str, Any] = {"action": info.action, "error": info.error, "skip_reason": info.skip_reason}
        if report.conditions:
            detail["conditions"] = report.conditions
        if state is Status.SUCCEEDED and value is not None:
            detail["result_preview"] = value.preview  # for traces and views only
        if run.run_id in self._run_caches:
            detail["cached"] = False  # a run with caching on says so on every step_finished
        self._emit(run, now, "step_finished", step, state, info.worker, info.attempts, detail)
        self._apply(run, run.tracker.finish(step, outcome), now)

    def _apply(self, run: LiveRun, changes: Changes, now: float) -> None:
        if changes.skipped or changes.cancelled:
            self._record_derived(run, changes, now)
        ready = changes.ready
        if ready and run.run_id in self._run_caches:
            ready = serve(self, run, ready, now)
        if ready:
            self._enqueue(run, ready, now)
        if run.tracker.done:
            self._finish_run(run, now)

    def _finish_run(self, run: LiveRun, now: float) -> None:
        tracker = run.tracker
        recovered = tracker.recovered_failures()
        for name in recovered:
            info = run.infos[name]
            if not info.recovered:
                info.recovered = True
                self.storage.save_step(run.run_id, name, info)
        state = tracker.run_state()
        self.storage.finalize_run(run.run_id, state, now)
        self._emit(run, now, "run_finished", None, state, None, 0, {"workflow_id": run.key[0]})
        del self._runs[run.run_id]
        self._active[run.key].pop(run.run_id, None)
        self._run_caches.pop(run.run_id, None)

    def _complete_cached(self, run: LiveRun, step: str, entry: CacheEntry, result: Any,
                         now: float) -> list[str]:
        """Record a cache hit as the step's SUCCEEDED outcome; return the steps it made ready."""
        info = run.infos[step]
        info.state, info.action, info.cached, info.cached_from = Status.SUCCEEDED, entry.action, True, entry.run_id
        info.queued_at = info.started_at = info.finished_at = now
        run.results[step] = info.result = result
        self.storage.set_result(run.run_id, step, result)
        self.storage.save_step(run.run_id, step, info)
        detail: dict[str, Any] = {"action": info.action, "error": None, "skip_reason": None, "cached": True,
                                  "cached_from": entry.run_id}
        if self._hub.has_subscribers:
            detail["result_preview"] = preview(result)
        self._emit(run, now, "step_finished", step, Status.SUCCEEDED, None, 0, detail)
        changes = run.tracker.finish(step, succeeded(entry.action or "default"))
        if changes.skipped or changes.cancelled:
            self._record_derived(run, changes, now)
        return list(changes.ready)

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

    # -- restart -------------------------------------------------------------------------
    def _resume(self, run_id: str) -> None:
        info = self.storage.load_run(run_id)
        if info is None:
            return
        compiled = self._compiled.get((info.workflow_id, info.version))
        if compiled is None:
            log.error("cannot resume run %s: workflow %s@%s is not in storage", run_id,
                      info.workflow_id, info.version)
            return
        now = self._clock()
        run = LiveRun(run_id, compiled, values_of(info.input_values), info.created_at or now)
        self._runs[run_id] = run
        self._active.setdefault(run.key, {})[run_id] = None
        run.seq = max((e.seq for e in self.storage.events(run_id)), default=0)
        for name, stored in info.steps.items():
            if name in run.infos:
                run.infos[name] = stored
        run.tracker.start()
        primary = [
            (s.finished_at or 0.0, n) for n, s in info.steps.items()
            if s.state in (Status.SUCCEEDED, Status.FAILED)
            or (s.state is Status.SKIPPED and s.skip_reason == SKIP_CONDITION)
        ]
        for _, name in sorted(primary):
            s = run.infos[name]
            if s.state is Status.SUCCEEDED:
                run.results[name] = s.value if s.value is None or s.value.__class__ is Value \
                    else Value.of(s.value)
                outcome = succeeded(s.action or "default")
            elif s.state is Status.FAILED:
                outcome = Outcome.failed()
            else:
                outcome = Outcome.skipped_by_condition()
            # ready steps are queued below, all at once; derived skips/cancels are
            # recorded now (only those the storage had not seen yet)
            self._record_derived(run, run.tracker.finish(name, outcome), now)
        if run.tracker.done:
            self._finish_run(run, now)
            return
        pending = [n for n in compiled.plan.order if n in run.tracker.decided and n not in run.tracker.outcomes]
        for n in pending:
            run.infos[n].state = Status.PENDING
            run.infos[n].worker = None
        log.info("resuming run %s: %d step(s) queued again", run_id, len(pending))
        self._enqueue(run, pending, now)

    def _record_derived(self, run: LiveRun, changes: Changes, now: float) -> None:
        """Record the skips and cancels the rules derived (a step already in that state is left)."""
        for names, state in ((changes.skipped, Status.SKIPPED), (changes.cancelled, Status.CANCELLED)):
            for n in names:
                info = run.infos[n]
                if info.state is not state:
                    info.state, info.finished_at = state, now
                    if state is Status.SKIPPED:
                        info.skip_reason = SKIP_NOT_REACHED
                    self.storage.save_step(run.run_id, n, info)
                    detail: dict[str, Any] = {"skip_reason": info.skip_reason, **run.tracker.cause(n)}
                    self._emit(run, now, "step_finished", n, state, None, 0, detail)


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
