"""DaskEngine: a broker's steps run as tasks on a ``dask.distributed`` cluster.

The broker stays the one source of truth: it decides what is ready, holds
leases, retries and the history. The engine is one worker to it: it takes
assignments through any :class:`~fuseline_nb.broker.clients.BrokerClient`
and submits each as a Dask task (:func:`~fuseline_nb.worker.dask_task.run_task`),
at most ``max_in_flight`` at a time, and reports each outcome as every
engine does (:func:`~fuseline_nb.worker.engine.report_of`).

Threads: the caller of :meth:`DaskEngine.work` fetches and submits; a
reporter thread takes finished tasks (from Dask's callbacks), reports them,
keeps the leases of the tasks in flight alive, and stops the tasks of
cancelled runs. Workflows travel once per definition, as a
:class:`~fuseline_nb.worker.dask_task.DefinitionPlugin` the scheduler
installs on every worker, including workers that join later.

Failures of the cluster, not of the step:

* a Dask worker lost mid-step: Dask runs the task again elsewhere; the
  broker still holds the same attempt (its lease kept alive by this
  engine), so the history records the step once. After Dask's
  ``allowed-failures`` the step FAILS with ``WorkerCrashedError``;
* a cancelled run: its queued tasks are cancelled and its running steps are
  interrupted on their workers (:func:`~fuseline_nb.worker.dask_task.interrupt`);
* this engine gone: the broker re-queues its steps when their leases expire.

Examples
--------
>>> from fuseline_nb.worker.dask_engine import DaskEngine
>>> DaskEngine.__name__
'DaskEngine'
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from ..broker.base import StepAssignment
from ..broker.clients import BrokerClient, LocalBrokerClient
from ..errors import BrokerUnavailableError, StaleReportError, UnknownRunError, WorkerError
from ..running.execute import StepOutcome
from ..workflow.events import Event
from ..workflow.graph import Workflow
from ..workflow.policies import timeout_seconds
from ..workflow.status import Status
from .engine import report_of
from .shipping import load_definition, ship

log = logging.getLogger(__name__)

_HINT = 'DaskEngine needs dask.distributed: pip install "fuseline-nb[dask]"'
_STOP = object()


def import_distributed() -> Any:
    """The ``distributed`` module, or an ImportError that says how to install it.

    Examples
    --------
    >>> import_distributed().__name__
    'distributed'
    """
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(f"{_HINT} ({exc})") from exc
    return distributed


def connect(dask: Any) -> tuple[Any, bool]:
    """A ``distributed.Client`` for ``dask`` (a Client, a cluster, or a scheduler address).

    Returns the client and whether it was made here (then its owner closes it).

    Examples
    --------
    >>> connect(3)
    Traceback (most recent call last):
    TypeError: dask= takes a distributed.Client, a cluster or a scheduler address such as 'tcp://10.0.0.5:8786', not 3
    """
    if isinstance(dask, str):
        return import_distributed().Client(dask), True
    if hasattr(dask, "submit") and hasattr(dask, "register_plugin"):
        return dask, False
    if isinstance(getattr(dask, "scheduler_address", None), str):  # a LocalCluster, a dask-jobqueue cluster...
        return import_distributed().Client(dask), True
    raise TypeError("dask= takes a distributed.Client, a cluster or a scheduler address such as "
                    f"'tcp://10.0.0.5:8786', not {dask!r}")


class _Definition:
    """A workflow as shipped to the cluster: its plugin id and the timeouts of its steps."""

    __slots__ = ("definition_id", "timeouts", "workflow")

    def __init__(self, workflow: Workflow, definition_id: str) -> None:
        self.workflow = workflow
        self.definition_id = definition_id
        self.timeouts = {n: timeout_seconds(s.policies) for n, s in workflow.steps.items()}


class _Flight:
    """One assignment running as a Dask task."""

    __slots__ = ("assignment", "cancelled", "future", "key", "worker_id")

    def __init__(self, assignment: StepAssignment, worker_id: str, key: str) -> None:
        self.assignment = assignment
        self.worker_id = worker_id
        self.key = key
        self.future: Any = None
        self.cancelled = False


class DaskEngine:
    """Runs a broker's steps as Dask tasks; one worker to the broker.

    Parameters
    ----------
    client:
        Any :class:`~fuseline_nb.broker.clients.BrokerClient`.
    workflows:
        The :class:`Workflow` objects to run (more with :meth:`add_workflow`).
    dask_client:
        A ``distributed.Client``, a cluster object, or a scheduler address.
    max_in_flight:
        Most steps submitted to Dask at once (default: four times the
        cluster's threads, at least 64). Steps in flight count as RUNNING for
        the broker (their durations are measured on the Dask workers).
    name:
        The worker name the broker shows (default ``"dask"``).

    Raises
    ------
    ImportError
        ``distributed`` is not installed (the message says how to install it).

    Examples
    --------
    >>> from distributed import Client, LocalCluster                      # doctest: +SKIP
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.broker.clients import LocalBrokerClient
    >>> wf = Workflow(outputs=[FunctionStep(lambda: 6 * 7, name="answer")])
    >>> client = LocalBrokerClient(MemoryBroker())
    >>> run_id = client.dispatch_workflow(wf.to_schema())
    >>> with LocalCluster(n_workers=1) as cluster, Client(cluster) as dask:  # doctest: +SKIP
    ...     DaskEngine(client, [wf], dask).work()
    ...     client.get_run(run_id).steps["answer"].result
    42
    """

    #: Longest time between keep-alives while steps are in flight (so a cancel is seen soon).
    CANCEL_CHECK_SECONDS = 0.5

    def __init__(self, client: BrokerClient, workflows: Iterable[Workflow], dask_client: Any, *,
                 max_in_flight: int | None = None, name: str | None = None) -> None:
        import_distributed()
        from . import dask_task

        self._task = dask_task
        if not isinstance(client, BrokerClient):
            raise TypeError(f"DaskEngine takes a BrokerClient, not {client!r}")
        if max_in_flight is not None and int(max_in_flight) < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight!r}")
        self.client = client
        self.name = name or "dask"
        self.dask, self._own_dask = connect(dask_client)
        threads = sum(self.dask.nthreads().values()) or 1
        # many in flight: Dask's scheduler then places them, and one round trip fetches many results
        self.max_in_flight = int(max_in_flight) if max_in_flight is not None else max(64, 4 * threads)
        #: Why the engine stopped running steps, else ``None`` (see :meth:`check`).
        self.error: Exception | None = None
        self.steps_run = 0
        self._lock = threading.RLock()
        self._defs: dict[tuple[str, str], _Definition] = {}
        self._fingerprints: dict[tuple[str, str], dict[str, str]] = {}  # what the cluster holds
        self._plugins: list[str] = []
        self._token = uuid.uuid4().hex[:8]  # this engine's plugins: another engine's close leaves them
        self._flight: dict[str, _Flight] = {}
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retired: set[str] = set()  # ids registered before the last add_workflow, until idle
        self.worker_id = ""
        self._lease = 60.0
        self._remote = not isinstance(client, LocalBrokerClient)
        self._unsubscribe = self._listen()
        for wf in workflows:  # none is fine: add_workflow() before the first run
            self.add_workflow(wf)

    # -- workflows -----------------------------------------------------------------------
    def add_workflow(self, wf: Workflow, *, refresh: bool = True) -> None:
        """Ship ``wf`` to the cluster (once per definition) and serve it.

        Raises
        ------
        PicklingError
            A step holds something that cannot be pickled.
        SchemaMismatchError
            The broker knows another structure under this id and version.
        """
        if not isinstance(wf, Workflow):
            raise TypeError(f"expected a Workflow, not {wf!r}")
        if refresh:  # (False: the caller just refreshed, as Session.submit does)
            wf.refresh()  # an edited global or helper changes a fingerprint: ship again
        key = (wf.workflow_id, wf.version)
        fingerprints = wf.to_schema().fingerprints()
        with self._lock:
            known = self._defs.get(key)
            if known is not None and known.workflow is wf and self._fingerprints.get(key) == fingerprints:
                return
            self._fingerprints[key] = fingerprints
            _, blob = ship(wf)
            definition_id = hashlib.sha256(blob).hexdigest()[:24]
            if known is not None and known.definition_id == definition_id:
                known.workflow = wf
                return
            plugin = self._task.DefinitionPlugin(definition_id, blob, self._token)
            self.dask.register_plugin(plugin, name=plugin.name)
            self._plugins.append(plugin.name)
            schemas = [d.workflow.to_schema() for k, d in self._defs.items() if k != key] + [wf.to_schema()]
            worker_id = self.client.register_worker(schemas, self.name)
            self._defs[key] = _Definition(wf, definition_id)
            self._store(key, blob)
            if self.worker_id:
                self._retired.add(self.worker_id)
            self.worker_id = worker_id
        self._wake.set()

    def add_blob(self, key: tuple[str, str], blob: bytes) -> Workflow:
        """Serve workflow bytes as :func:`~fuseline_nb.worker.shipping.ship` made them (a stored
        definition: what lets a reopened history resume its runs on Dask). Returns the workflow.

        Raises
        ------
        PicklingError
            The bytes cannot be unpickled in this process (names the error);
            nothing reaches the cluster then.
        """
        wf = load_definition(key, blob)
        self.add_workflow(wf, refresh=False)
        return wf

    def _store(self, key: tuple[str, str], blob: bytes) -> None:
        """Keep the shipped bytes in a broker in this process (a DuckDB file keeps them), so a
        reopened file resumes its runs with workers; failing to costs the resume, not the run."""
        broker = getattr(self.client, "broker", None)
        if broker is None:
            return
        try:
            broker.store_definition(key[0], key[1], blob)
        except Exception as exc:
            log.warning("could not keep workflow %r version %r in the history (%s: %s): its unfinished "
                        "runs will resume only when it is submitted again", key[0], key[1],
                        type(exc).__name__, exc)

    # -- the loop ------------------------------------------------------------------------
    def work(self, *, block: bool = False, poll_interval: float = 1.0) -> None:
        """Submit ready steps to Dask and report them until none is ready or running
        (``block=False``) or until :meth:`stop` (``block=True``).
        """
        self._stop.clear()
        reporter = threading.Thread(target=self._report_loop, name="fuseline-dask-reporter", daemon=True)
        reporter.start()
        try:
            while not self._stop.is_set():
                self._wake.clear()
                if len(self._flight) >= self.max_in_flight:
                    self._wake.wait(poll_interval)
                    continue
                try:
                    if self._fill():
                        continue
                except BrokerUnavailableError as exc:  # a remote broker restarting: try again soon
                    log.warning("%s; trying again in %.1fs", exc, poll_interval)
                    self._stop.wait(poll_interval)
                    continue
                if not block and not self._flight:
                    return
                self._wake.wait(poll_interval)
        finally:
            self._inbox.put(_STOP)
            reporter.join()

    def _fill(self) -> bool:
        """Fetch ready steps while there is room and submit them; whether any was."""
        batch: list[_Flight] = []
        while self.worker_id and len(self._flight) + len(batch) < self.max_in_flight:
            wid = self.worker_id
            a = self.client.get_step(wid)  # outside the lock: a remote broker may long-poll
            if a is None:
                break
            self._lease = max(a.expires_at - a.assigned_at, 0.3)
            batch.append(_Flight(a, wid, f"{a.step_name}-{uuid.uuid4().hex}"))
            if self._remote:
                break  # submit what we hold before the next (possibly long) poll
        if batch:
            with self._lock:  # the reporter must not see a flight before its future is set
                self._submit(batch)
        return bool(batch)

    def _submit(self, batch: list[_Flight]) -> None:
        defs, timeouts, keys, parcels = [], [], [], []
        for f in batch:
            a = f.assignment
            d = self._defs.get((a.workflow_id, a.version))
            defs.append(d.definition_id if d is not None else "")
            timeouts.append(d.timeouts.get(a.step_name) if d is not None else None)
            keys.append(f.key)
            parcels.append(a)
            self._flight[f.key] = f
        if len(batch) == 1:
            futures = [self.dask.submit(self._task.run_task, defs[0], keys[0], parcels[0], timeouts[0],
                                        key=keys[0], pure=False)]
        else:
            futures = self.dask.map(self._task.run_task, defs, keys, parcels, timeouts, key=keys, pure=False)
        for f, fut in zip(batch, futures, strict=True):
            f.future = fut
            fut.add_done_callback(lambda _fut, k=f.key: self._inbox.put(k))

    # -- the reporter thread -------------------------------------------------------------
    def _report_loop(self) -> None:
        beat = time.monotonic()
        while True:
            interval = min(self._lease / 3, self.CANCEL_CHECK_SECONDS)
            items = self._take(max(beat + interval - time.monotonic(), 0.01))
            try:
                self._finish([i for i in items if isinstance(i, str)])
                for run_id in [i[1] for i in items if isinstance(i, tuple)]:
                    self.cancel_run(run_id)
                if time.monotonic() >= beat + interval:
                    beat = time.monotonic()
                    self._heartbeat()
            except Exception as exc:  # the engine cannot go on: say why in check()
                log.exception("the Dask engine's reporter failed")
                self.error = WorkerError(f"the Dask engine stopped: {type(exc).__name__}: {exc}")
                self._stop.set()
                self._wake.set()
                return
            if _STOP in items:
                return

    def _take(self, timeout: float) -> list[Any]:
        """What the inbox holds: wait up to ``timeout`` for one item, then take the rest without waiting."""
        try:
            items = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(items) < 1024:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return items

    def _finish(self, keys: list[str]) -> None:
        """Report the finished tasks ``keys``, fetching their results in one round trip."""
        with self._lock:
            flights = [f for k in keys if (f := self._flight.get(k)) is not None]
        live = [f for f in flights if not f.cancelled]
        for f, outcome in zip(live, self._outcomes(live), strict=True):
            try:
                self.client.report_step(f.worker_id, report_of(f.assignment, outcome))
            except (StaleReportError, UnknownRunError) as exc:  # the run ended, or the lease passed
                log.info("report refused: %s", exc)
            self.steps_run += 1
        if not flights:
            return
        with self._lock:
            for f in flights:
                self._flight.pop(f.key, None)
            if self._retired:
                self._retire_idle()
        self._wake.set()

    def _outcomes(self, flights: list[_Flight]) -> list[StepOutcome]:
        ok = [f for f in flights if f.future.status == "finished"]
        try:
            got = dict(zip([f.key for f in ok], self.dask.gather([f.future for f in ok]), strict=True))
        except Exception:  # e.g. a worker holding a result died meanwhile: one at a time below
            got = {}
        return [self._outcome(f, got.get(f.key)) for f in flights]

    def _outcome(self, f: _Flight, got: StepOutcome | None) -> StepOutcome:
        """The task's outcome (its result a Value, passed to the broker unopened), or why there is none."""
        if got is not None:
            return got
        try:
            return f.future.result()  # type: ignore[no-any-return]
        except Exception as exc:
            return self._lost(f, exc, time.time())

    def _lost(self, f: _Flight, exc: Exception, now: float) -> StepOutcome:
        name = f.assignment.step_name
        if type(exc).__name__ == "KilledWorker":
            return StepOutcome(Status.FAILED, None, "WorkerCrashedError",
                               f"the Dask workers running step {name!r} died too often (Dask's "
                               f"distributed.scheduler.allowed-failures): {exc}", None, now, now)
        return StepOutcome(Status.FAILED, None, "WorkerError",
                           f"the Dask task of step {name!r} did not return ({type(exc).__name__}: {exc}); "
                           "see the Dask dashboard and worker logs", None, now, now)

    def _heartbeat(self) -> None:
        """Extend the leases of what is in flight; stop what the broker says was cancelled meanwhile."""
        with self._lock:
            wids = {f.worker_id for f in self._flight.values() if not f.cancelled}
        for wid in wids:
            try:
                cancelled = self.client.keep_alive(wid)
            except Exception:
                log.warning("keep-alive for worker %s failed", wid, exc_info=True)
                continue
            if cancelled:  # brokers that cancel runs name the (run id, step) pairs to stop
                self._cancel({(str(r), str(s)) for r, s in cancelled})

    def _retire_idle(self) -> None:
        busy = {f.worker_id for f in self._flight.values()}
        for wid in [w for w in self._retired if w not in busy]:
            self._retired.discard(wid)
            try:
                self.client.unregister_worker(wid)
            except Exception:
                log.info("could not unregister worker %s", wid, exc_info=True)

    # -- cancelling ----------------------------------------------------------------------
    def _listen(self) -> Any:
        broker = getattr(self.client, "broker", None)
        subscribe = getattr(broker, "subscribe", None)
        if subscribe is None:
            return None
        wake, inbox = self._wake, self._inbox

        def on_event(event: Event) -> None:  # called under the broker's lock: stay quick
            if event.kind == "step_queued":
                wake.set()
            elif event.kind == "run_finished" and event.state is Status.CANCELLED:
                inbox.put(("cancel", event.run_id))

        return subscribe(on_event)

    def cancel_run(self, run_id: str) -> int:
        """Stop this engine's tasks of run ``run_id``; return how many there were.

        Queued tasks are cancelled; running steps are interrupted on their Dask
        workers. No report is sent for them. A broker that cancels a run tells
        the engine itself (an event in this process, or the answer to a
        keep-alive), so this is for stopping work the broker does not know of.
        """
        with self._lock:
            pairs = {(f.assignment.run_id, f.assignment.step_name) for f in self._flight.values()
                     if f.assignment.run_id == run_id}
        return self._cancel(pairs)

    def _cancel(self, pairs: set[tuple[str, str]]) -> int:
        with self._lock:
            flights = [f for f in self._flight.values() if not f.cancelled
                       and (f.assignment.run_id, f.assignment.step_name) in pairs]
            for f in flights:
                f.cancelled = True
        if not flights:
            return 0
        keys = [f.key for f in flights]
        self.dask.cancel([f.future for f in flights if f.future is not None])
        try:
            self.dask.run(self._task.interrupt, keys, on_error="ignore")
        except Exception:
            log.warning("could not interrupt %d cancelled step(s) on the Dask workers", len(keys), exc_info=True)
        log.info("%d cancelled step(s) stopped on Dask: %s", len(keys), sorted(pairs))
        return len(keys)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> DaskEngine:
        """Run :meth:`work` (``block=True``) on a background thread; returns ``self``."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="fuseline-dask-engine", daemon=True)
                self._thread.start()
        return self

    def _serve(self) -> None:
        try:
            self.work(block=True, poll_interval=0.5)
        except Exception as exc:
            log.exception("the Dask engine stopped")
            self.error = WorkerError(f"the Dask engine stopped: {type(exc).__name__}: {exc}")

    def check(self) -> None:
        """Raise :attr:`error` when the engine cannot run steps."""
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = 5.0) -> None:
        """Stop fetching; let running tasks finish for ``timeout`` s, then hand the rest back.

        Steps still running at the deadline are cancelled on Dask and go back
        to the broker's queue (this engine leaves the broker). Idempotent.
        """
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(max(deadline - time.monotonic(), 0.1))
        while self._flight and time.monotonic() < deadline:
            time.sleep(0.02)  # a stopped engine has no reporter: let the futures settle
            self._finish([k for k, f in list(self._flight.items()) if f.future is not None and f.future.done()])
        with self._lock:
            left = list(self._flight.values())
            self._flight.clear()
        if left:
            self.dask.cancel([f.future for f in left if f.future is not None])
        for wid in {self.worker_id, *self._retired} - {""}:
            try:
                self.client.unregister_worker(wid)  # its unfinished steps go back to the queue
            except Exception:
                log.info("could not unregister worker %s", wid, exc_info=True)
        self._retired.clear()
        self.close()

    def close(self) -> None:
        """Forget the definitions on the cluster; close the Dask client if this engine made it."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        plugins, self._plugins = self._plugins, []
        for name in plugins:
            try:
                self.dask.unregister_worker_plugin(name)
            except Exception:
                log.info("could not remove plugin %s", name, exc_info=True)
        if self._own_dask:
            self._own_dask = False
            self.dask.close()

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address (``None`` when the cluster serves none)."""
        return getattr(self.dask, "dashboard_link", None)

    def worker_names(self) -> dict[str, str]:
        """Broker worker id -> name of every id this engine registered."""
        return {wid: self.name for wid in {self.worker_id, *self._retired} if wid}

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = getattr(getattr(self.dask, "scheduler", None), "address", "?")
        return (f"<DaskEngine {where}: "
                f"{len(self._flight)} in flight, {self.steps_run} run, {len(self._defs)} workflows>")


__all__ = ["DaskEngine", "connect", "import_distributed"]
