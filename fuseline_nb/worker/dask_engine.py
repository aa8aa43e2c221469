"""DaskEngine: a broker's steps run as tasks on a ``dask.distributed`` cluster.

The broker stays the one source of truth: it decides what is ready, holds
leases, retries and the history. The engine is one worker to it: it takes
assignments through any :class:`~fuseline_nb.broker.clients.BrokerClient`
and submits each as a Dask task (:func:`~fuseline_nb.worker.dask_task.run_task`),
at most ``max_in_flight`` at a time, and reports each outcome as every
engine does (:func:`~fuseline_nb.worker.engine.report_of`).

Threads: the caller of :meth:`DaskEngine.work` fetches and submits; a
reporter thread takes finished tasks (their outcomes come with Dask's
completion events, see :mod:`~fuseline_nb.worker._dask_flights`), reports
them, keeps the leases of the tasks in flight alive, and stops the tasks of
cancelled runs. Workflows travel once per definition, as a
:class:`~fuseline_nb.worker.dask_task.DefinitionPlugin` the scheduler
installs on every worker, including workers that join later
(:mod:`~fuseline_nb.worker._dask_cluster`).

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

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from ..broker.clients import BrokerClient, LocalBrokerClient
from ..errors import BrokerUnavailableError, StaleReportError, UnknownRunError, WorkerError
from ..workflow.events import Event
from ..workflow.graph import Workflow
from ..workflow.status import Status
from ._dask_cluster import Definitions, connect, import_distributed, keep_definition, quicken
from ._dask_flights import Flight, Flights
from .engine import report_of
from .shipping import load_definition

log = logging.getLogger(__name__)

_STOP = object()


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
        if not isinstance(client, BrokerClient):
            raise TypeError(f"DaskEngine takes a BrokerClient, not {client!r}")
        if max_in_flight is not None and int(max_in_flight) < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight!r}")
        self.client = client
        self.name = name or "dask"
        self.dask, self._own_dask = connect(dask_client)
        quicken(self.dask)
        threads = sum(self.dask.nthreads().values()) or 1
        # many in flight: Dask's scheduler then places them, and one round trip fetches many results
        self.max_in_flight = int(max_in_flight) if max_in_flight is not None else max(64, 4 * threads)
        #: Why the engine stopped running steps, else ``None`` (see :meth:`check`).
        self.error: Exception | None = None
        self.steps_run = 0
        self._lock = threading.RLock()
        token = uuid.uuid4().hex[:8]  # this engine's plugins and topic: another engine's close leaves them
        self._defs = Definitions(self.dask, token)
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._flights = Flights(self.dask, f"fuseline-outcomes-{token}", self._inbox)
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
        with self._lock:
            blob = self._defs.ship(wf)
            if blob is None:  # the cluster holds it already
                return
            try:
                worker_id = self.client.register_worker(self._defs.schemas(), self.name)
            except BaseException:
                self._defs.forget(wf)
                raise
            keep_definition(self.client, key, blob)
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
                if len(self._flights) >= self.max_in_flight:
                    self._wake.wait(poll_interval)
                    continue
                try:
                    if self._fill():
                        continue
                    # idle? The reporter may have reported meanwhile (flights leave the table after
                    # their reports): fetch once more, and finish only if that finds nothing either
                    if not block and not self._flights and not self._fill() and not self._flights:
                        return
                except BrokerUnavailableError as exc:  # a remote broker restarting: try again soon
                    log.warning("%s; trying again in %.1fs", exc, poll_interval)
                    self._stop.wait(poll_interval)
                    continue
                self._wake.wait(poll_interval)
        finally:
            self._inbox.put(_STOP)
            reporter.join()
            self._flights.release()

    def _fill(self) -> bool:
        """Fetch ready steps while there is room and submit them; whether any was."""
        batch: list[Flight] = []
        while self.worker_id and len(self._flights) + len(batch) < self.max_in_flight:
            wid = self.worker_id
            a = self.client.get_step(wid)  # outside self._lock: a remote broker may long-poll
            if a is None:
                break
            self._lease = max(a.expires_at - a.assigned_at, 0.3)
            batch.append(Flight(a, wid, f"{a.step_name}-{uuid.uuid4().hex}"))
            if self._remote:
                break  # submit what we hold before the next (possibly long) poll
        if batch:
            self._flights.submit(batch, self._defs)
        return bool(batch)

    # -- the reporter thread -------------------------------------------------------------
    def _report_loop(self) -> None:
        beat = time.monotonic()
        while True:
            interval = min(self._lease / 3, self.CANCEL_CHECK_SECONDS)
            items = self._flights.take(max(beat + interval - time.monotonic(), 0.01))
            try:
                pushed = {i[1]: i[2] for i in items if isinstance(i, tuple) and i[0] == "out"}
                self._finish([i for i in items if isinstance(i, str)], pushed)
                for run_id in [i[1] for i in items if isinstance(i, tuple) and i[0] == "cancel"]:
                    self.cancel_run(run_id)
                if time.monotonic() >= beat + interval:
                    beat = time.monotonic()
                    self._finish(self._flights.done_keys(), {})  # failed in Dask, cancelled, no event
                    self._flights.release()
                    self._heartbeat()
            except Exception as exc:  # the engine cannot go on: say why in check()
                log.exception("the Dask engine's reporter failed")
                self.error = WorkerError(f"the Dask engine stopped: {type(exc).__name__}: {exc}")
                self._stop.set()
                self._wake.set()
                return
            if _STOP in items:
                return

    def _finish(self, done: list[str], pushed: dict[str, bytes | None]) -> None:
        """Report the tasks that finished (``done``) or sent their outcome (``pushed``)."""
        landed, reports = self._flights.land(done, pushed)
        for f, outcome in reports:
            try:
                self.client.report_step(f.worker_id, report_of(f.assignment, outcome))
            except (StaleReportError, UnknownRunError) as exc:  # the run ended, or the lease passed
                log.info("report refused: %s", exc)
            self.steps_run += 1
        if not landed:
            return
        self._flights.settle(landed)  # after the reports: an empty table means nothing is pending
        if self._retired:
            with self._lock:
                self._retire_idle()
        self._wake.set()

    def _heartbeat(self) -> None:
        """Extend the leases of what is in flight; stop what the broker says was cancelled meanwhile."""
        for wid in self._flights.holders():
            try:
                cancelled = self.client.keep_alive(wid)
            except Exception:
                log.warning("keep-alive for worker %s failed", wid, exc_info=True)
                continue
            if cancelled:  # brokers that cancel runs name the (run id, step) pairs to stop
                self._flights.cancel({(str(r), str(s)) for r, s in cancelled})

    def _retire_idle(self) -> None:
        busy = self._flights.busy()
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
        return self._flights.cancel(self._flights.pairs_of(run_id))

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
        while self._flights and time.monotonic() < deadline:
            time.sleep(0.02)  # a stopped engine has no reporter: let the futures settle
            self._finish(self._flights.done_keys(), {})
        self._flights.abandon()
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
        self._flights.close()
        self._defs.close()
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
                f"{len(self._flights)} in flight, {self.steps_run} run, {len(self._defs)} workflows>")


__all__ = ["DaskEngine", "connect", "import_distributed"]  # the last two live in _dask_cluster
