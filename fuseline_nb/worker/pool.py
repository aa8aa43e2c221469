"""WorkerPool: worker processes started from the kernel, kept alive and on time.

Each worker is a fresh interpreter (``spawn``, or ``forkserver``; never
``fork`` from a threaded kernel) running :class:`ProcessEngine` over a
:class:`~fuseline_nb.worker.channel.ChannelClient`. Workflows travel by value
(:mod:`~fuseline_nb.worker.shipping`), so steps defined in notebook cells
run there. One :class:`~fuseline_nb.worker.server.ChannelServer` thread in
the kernel serves every worker and watches them; what happens to a process
that dies, a step that passes its ``StepTimeoutPolicy`` or is cancelled, is
the :class:`~fuseline_nb.worker.supervisor.WorkerSupervisor`'s to do (the one
``fuseline-nb worker`` uses too):

* a process that dies (its sentinel fires) is replaced at once, and its
  step goes back to the queue as a new attempt — a step that kills its
  worker ``max_crashes`` times FAILS instead of looping forever;
* a step that passes its ``StepTimeoutPolicy`` has its process killed, is
  reported FAILED with ``TimeoutError`` (its ``RetryPolicy`` still applies)
  and a replacement starts;
* :meth:`WorkerPool.stop` (and an ``atexit`` hook) ends every process.

Several workflows and runs share one pool; :meth:`WorkerPool.add_workflow`
ships another workflow to running workers.

Examples
--------
>>> from fuseline_nb.worker import WorkerPool
>>> from fuseline_nb.broker import MemoryBroker
>>> pool = WorkerPool(MemoryBroker(), [], processes=2)
>>> pool
<WorkerPool 2 processes (spawn), not started, 0 workflows>
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing
import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

from ..broker.base import Broker
from ..broker.clients import BrokerClient, LocalBrokerClient
from ..broker.state import Assignment
from ..errors import WorkerError
from ..workflow.graph import Workflow
from ..workflow.schema import WorkflowSchema
from ._duplex import duplex_pipe
from ._pool_definition import check_schema, same_definition
from ._shipped import keep, serve
from ._unloadable import fail_live, forget, on_load_error
from .channel import WorkflowBlob
from .latency import PREFETCH_DEFAULT
from .mainguard import check_main_guard
from .process import worker_main
from .server import ChannelServer, Endpoint
from .shipping import load_definition, ship
from .supervisor import WorkerSupervisor

log = logging.getLogger(__name__)

_CONTEXTS = ("spawn", "forkserver")


class WorkerPool:
    """``processes`` worker processes serving ``workflows`` for a broker in this process.

    Parameters
    ----------
    broker_or_client:
        A :class:`~fuseline_nb.broker.Broker` (usually) or a
        :class:`~fuseline_nb.broker.clients.BrokerClient`.
    workflows:
        Workflows the workers can run; more can be added later.
    processes:
        Number of worker processes.
    context:
        ``"spawn"`` (default) or ``"forkserver"``.
    max_crashes:
        After a step's worker process died this many times, the step FAILS.
    prefetch:
        Up to how many short steps a worker may hold at once while steps are
        queued (``1``: one at a time); its batches are sized to about 50 ms
        of its recent steps. See :class:`~fuseline_nb.worker.server.ChannelServer`.

    Raises
    ------
    PicklingError
        When a step cannot be sent to a worker process (names the step and object).

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> WorkerPool(MemoryBroker(), [], processes=0)
    Traceback (most recent call last):
    ValueError: a WorkerPool needs processes >= 1, not 0
    """

    def __init__(self, broker_or_client: Broker | BrokerClient, workflows: Iterable[Workflow] = (),
                 processes: int = 2, *, context: str = "spawn", max_crashes: int = 3,
                 poll_interval: float = 0.1, prefetch: int = PREFETCH_DEFAULT) -> None:
        if int(processes) < 1:
            raise ValueError(f"a WorkerPool needs processes >= 1, not {processes!r}")
        if context not in _CONTEXTS:
            raise ValueError(f"unknown start method: {context!r} (must be one of {list(_CONTEXTS)})")
        if isinstance(broker_or_client, BrokerClient):
            self.client = broker_or_client
            self.broker: Broker | None = getattr(broker_or_client, "broker", None)
        elif isinstance(broker_or_client, Broker):
            self.broker, self.client = broker_or_client, LocalBrokerClient(broker_or_client)
        else:
            raise TypeError(f"expected a Broker or a BrokerClient, not {broker_or_client!r}")
        self.processes = int(processes)
        self.context = context
        self.max_crashes = int(max_crashes)
        self.poll_interval = poll_interval
        self.prefetch = int(prefetch)
        self._ctx: Any = multiprocessing.get_context(context)
        self._lock = threading.RLock()
        self._blobs: list[WorkflowBlob] = []
        self._shipped: dict[tuple[str, str], Workflow] = {}
        # The schema the workers hold for each workflow: ``refresh()`` makes a new one when a code
        # fingerprint changed, so "the same schema object" is "the same fingerprints" (no per-step compare)
        self._shipped_schema: dict[tuple[str, str], WorkflowSchema] = {}
        self._blobs_by_key: dict[tuple[str, str], bytes | None] = {}  # the latest blob of each workflow
        self._in_history: dict[tuple[str, str], bool] = {}  # whether the history has a key's last bytes
        self._pruned: set[tuple[str, str]] = set()  # kept there once, maybe pruned since: store again when sent
        # workflows a worker process could not load (dropped): their schema and why, until shipped again
        self._unloadable: dict[tuple[str, str], tuple[WorkflowSchema, str]] = {}
        self._retiring: set[tuple[str, str]] = set()  # versions no run needs: dropped on the serving thread
        self._server: ChannelServer | None = None
        self._sup = WorkerSupervisor(self.client, self._start_process, self.processes, max_crashes=max_crashes,
                                     detach=self._detach, held=self._running)
        self._unsubscribe: Any = None
        self._state = "new"  # new -> running -> stopped
        self._atexit: Any = None
        for wf in workflows:
            self.add_workflow(wf)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> WorkerPool:
        """Start the worker processes and the serving thread; returns ``self``."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"cannot start a WorkerPool that is {self._state}")
            check_main_guard(self.context)
            self._state = "running"
            self._server = ChannelServer(self.client, self, poll_interval=self.poll_interval,
                                         prefetch=self.prefetch)
            if self.broker is not None:
                self._unsubscribe = self.broker.subscribe(self._server.on_event)
            self._server.start()
            try:
                self._sup.start()
            except BaseException:  # e.g. Ctrl-C while the processes start: none may outlive this
                self.stop(timeout=0.0)
                raise
            self._atexit = functools.partial(_stop_at_exit, weakref.ref(self))
            atexit.register(self._atexit)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every worker: idle ones at once, busy ones after their step or ``timeout``.

        A step still running at the deadline is killed and goes back to the
        queue (nothing is lost; with DuckDB history the run can be resumed).
        Idempotent.
        """
        with self._lock:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopping"
            server = self._server
            assert server is not None
        self._sup.stop(server.drain, timeout)
        end = time.monotonic() + 2.0
        while server.endpoints and server.alive and time.monotonic() < end:
            time.sleep(0.01)  # let the server see the sentinels and unregister the workers
        left = list(server.endpoints.values())
        server.close()
        for ep in left:  # gone unseen: they leave the broker too
            self._sup.exited(ep)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._atexit is not None:
            atexit.unregister(self._atexit)
        self._state = "stopped"

    def __enter__(self) -> WorkerPool:
        return self.start() if self._state == "new" else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the pool has been started and not stopped."""
        return self._state == "running"

    def pids(self) -> list[int]:
        """Process ids of the current worker processes."""
        return self._sup.pids()

    @property
    def error(self) -> Exception | None:
        """Why the pool cannot run steps (workers cannot start or load workflows), else ``None``."""
        return self._sup.error

    def worker_names(self) -> dict[str, str]:
        """Broker worker id -> process label (``w1``, ``w2``...) of every worker this pool ran."""
        return dict(self._server.names) if self._server is not None else {}

    def check(self) -> None:
        """Raise :attr:`error` when the pool cannot run steps.

        A run of a workflow the workers could not load that is still live
        (submitted as its load failed) has its queued steps failed here.
        """
        if self._unloadable and self.broker is not None:
            fail_live(self.broker, self.client, self._unloadable)
        if self.error is None and self._state == "running" and self._server is not None \
                and not self._server.alive:
            self._sup.error = WorkerError("the thread serving the worker processes has stopped; see the log")
        if self.error is not None:
            raise self.error

    def __repr__(self) -> str:
        state = {"new": "not started"}.get(self._state, self._state)
        return (f"<WorkerPool {self.processes} processes ({self.context}), {state}, "
                f"{len(self._shipped)} workflows>")

    # -- workflows -------------------------------------------------------------------------
    def add_workflow(self, wf: Workflow, *, refresh: bool = True) -> None:
        """Make ``wf`` runnable by the workers (shipped to running ones at their next request).

        Submitting the same object again costs nothing unless a step's code
        fingerprint changed (an edited global or helper): then it is shipped
        again. A new object under the same id and version (a cell run again)
        replaces the old one in every worker, as long as its structure is
        the same. ``refresh=False``: the caller has just called ``wf.refresh()``
        (``Session.submit`` does).

        Raises
        ------
        PicklingError
            A step holds something that cannot be pickled.
        SchemaMismatchError
            The broker knows another structure under this id and version.
        """
        if refresh and isinstance(wf, Workflow):
            wf.refresh()  # an edited global or helper changes a fingerprint: ship again
        key = (wf.workflow_id, wf.version) if isinstance(wf, Workflow) else None
        with self._lock:
            self._retiring.discard(key)  # type: ignore[arg-type]  # (None: not a Workflow, refused below)
            if key is not None and self._shipped.get(key) is wf and \
                    self._shipped_schema.get(key) is wf.to_schema():
                return self._keep(key, wf) if key in self._pruned else None
            if key is not None and same_definition(self._shipped.get(key), wf):
                self._shipped[key] = wf  # a cell run again, nothing changed: the workers' copy will do
                self._shipped_schema[key] = wf.to_schema()  # equal to the shipped one
                return self._keep(key, wf) if key in self._pruned else None
            check_schema(self.client, wf)
            key, blob = ship(wf)
            self._unloadable.pop(key, None)  # (shipped again: the workers try it again)
            self._shipped_schema[key] = wf.to_schema()
            if self._blobs_by_key.get(key) == blob:
                self._shipped[key] = wf
                return self._keep(key, wf) if key in self._pruned else None
            self._blobs.append((key, blob))
            self._blobs_by_key[key] = blob
            self._in_history.pop(key, None)
            self._shipped[key] = wf
            self._store(key, blob)
        if self._server is not None:
            self._server.wake()

    def add_blob(self, key: tuple[str, str], blob: bytes) -> Workflow:
        """Ship workflow bytes as :func:`~fuseline_nb.worker.shipping.ship` made them (a stored definition).

        The bytes are unpickled here first, so a definition that cannot be
        loaded (a step's module missing) is refused before any worker sees it.
        Returns the rebuilt workflow.

        Raises
        ------
        PicklingError
            The bytes cannot be unpickled in this process (names the error).

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> from fuseline_nb.broker import MemoryBroker
        >>> from fuseline_nb.worker.shipping import ship
        >>> pool = WorkerPool(MemoryBroker(), [], processes=1)
        >>> pool.add_blob(*ship(Workflow(outputs=[FunctionStep(len, name="n")], workflow_id="w"))).workflow_id
        'w'
        >>> pool
        <WorkerPool 1 processes (spawn), not started, 1 workflows>
        """
        wf = load_definition(key, blob)
        with self._lock:
            self._retiring.discard(key)
            self._unloadable.pop(key, None)
            if self._blobs_by_key.get(key) != blob:
                self._blobs.append((key, blob))
                self._blobs_by_key[key] = blob
                self._in_history[key] = False  # (a stored definition shipped again: not known to be the latest)
            self._shipped[key] = wf
            self._shipped_schema[key] = wf.to_schema()
        if self._server is not None:
            self._server.wake()
        return wf

    def _store(self, key: tuple[str, str], blob: bytes) -> None:
        """Keep the shipped bytes in the broker's history (once per definition), so a reopened
        file resumes its runs; a history that cannot keep them costs the resume, not the run."""
        if self.broker is not None:
            keep(self.broker.store_definition, self.broker.stored_definition, key, blob, self._in_history,
                 self._pruned)

    def _keep(self, key: tuple[str, str], wf: Workflow) -> None:
        """Store again bytes the history may have pruned (a workflow edited, then back): its run must resume."""
        self._store(key, self._blobs_by_key.get(key) or ship(wf)[1])

    def workflow_blobs(self) -> list[WorkflowBlob]:
        """The shipped workflows, oldest first (the server's view, asked before each answer).

        Bytes the broker's history keeps are let go once every live process
        has them, and read back before a new process is served (see
        :mod:`._shipped`).
        """
        if self._retiring:
            with self._lock:
                for key in self._retiring:
                    self._drop(key)
                self._retiring.clear()
        server, broker, blobs = self._server, self.broker, self._blobs
        if server is not None and broker is not None and blobs:
            serve(blobs, [ep.shipped for ep in list(server.endpoints.values())], broker.stored_definition,
                  lambda key: ship(self._shipped[key])[1], self._in_history, self._pruned, self._blobs_by_key)
        return blobs

    # -- processes (the supervisor starts, replaces and kills them) ------------------------
    def _start_process(self, label: str) -> Endpoint:
        assert self._server is not None
        parent, child = duplex_pipe(self._ctx)  # two one-way pipes: cheaper than a socket pair (see _duplex)
        proc = self._ctx.Process(
            target=worker_main, args=(child, label, os.getpid(), logging.getLogger().level),
            name=f"fuseline-{label}", daemon=False,
        )
        proc.start()
        child.close()
        ep = Endpoint(label, parent, proc)
        self._server.add(ep)
        return ep

    def _detach(self, ep: Any) -> None:
        if self._server is not None:
            self._server.remove(ep)

    # -- called by the server thread -------------------------------------------------------
    def on_exit(self, ep: Endpoint) -> None:
        """A worker process ended: re-queue (or fail) its step, start a replacement."""
        self._sup.exited(ep)

    def _running(self, ep: Endpoint) -> Assignment | None:
        """The step ``ep``'s process runs, as the broker records it (the first it holds)."""
        if ep.worker_id is None:
            return None
        held = self.client.held_by(ep.worker_id)
        return held[0] if held else None

    def on_timeout(self, ep: Endpoint, held: Assignment) -> None:
        """The broker says ``held`` passed its timeout: kill its process, fail the attempt, replace the worker."""
        self._sup.timed_out(ep, held)

    def on_cancel(self, ep: Endpoint) -> None:
        """The broker says ``ep`` holds a step of a cancelled run: kill the process (no report), replace it."""
        self._sup.cancelled(ep)

    on_load_error = on_load_error  # a worker could not load the shipped workflow ``key`` (see _unloadable)

    def retire(self, keys: Iterable[tuple[str, str]]) -> None:
        """Let go of shipped versions no run needs (``(workflow id, version)``): bytes and definitions; no new
        process is sent them (running ones keep their copy); submitting one again ships it again."""
        with self._lock:
            self._retiring.update(k for k in keys if k in self._shipped)
        if self._server is not None:
            self._server.wake()  # the serving thread drops them at its next look: its counts stay exact
        else:
            self.workflow_blobs()

    def _drop(self, key: tuple[str, str]) -> None:  # (under the lock, on the serving thread)
        self._blobs = forget(key, self._blobs, self._server.endpoints.values() if self._server else (),
                             (self._shipped, self._shipped_schema, self._blobs_by_key, self._in_history), self._pruned)

    def keep_leases(self) -> None:
        """Extend the leases of the steps live worker processes hold (a step may hold the GIL)."""
        self._sup.keep_leases()


def _stop_at_exit(ref: weakref.ReferenceType[WorkerPool]) -> None:
    pool = ref()
    if pool is not None:
        pool.stop(timeout=1.0)


__all__ = ["WorkerPool"]
