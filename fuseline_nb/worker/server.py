"""The kernel side of the process channel: one thread serving every worker pipe.

:class:`ChannelServer` runs a ``selectors`` loop over the pool's pipes, the
worker processes' sentinels and a wake-up pipe. For each request it calls
the broker (through a :class:`~fuseline_nb.broker.clients.BrokerClient`) and
answers; a worker that asks for work when nothing is ready is parked until a
step is queued. It notices at once when a process dies (its sentinel), and
asks the broker — the one record of what each worker holds — which running
step passed its ``StepTimeoutPolicy`` (``overdue``) and which worker holds a
step of a cancelled run (``held_by``); it hands each to its supervisor (the
:class:`~fuseline_nb.worker.pool.WorkerPool`), which stops the process the
broker named.

Examples
--------
>>> from fuseline_nb.worker.server import ChannelServer
>>> ChannelServer.__name__
'ChannelServer'
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import AbstractContextManager
from typing import Any

from ..broker.base import StepReport
from ..broker.clients import BrokerClient
from ..workflow.events import Event
from ..workflow.status import Status
from ._pipeforms import assignment_wire
from ._watch import Watch
from .endpoint import Endpoint, Reply, Supervisor
from .latency import PREFETCH_DEFAULT, Spin, batch_size, spin_seconds, spin_until
from .requests import Requests

log = logging.getLogger(__name__)


class ChannelServer(Requests):
    """Serves the pipes of one pool from a single daemon thread.

    Parameters
    ----------
    client:
        How to reach the broker (a ``LocalBrokerClient`` in a kernel).
    supervisor:
        The pool: supplies workflows, handles exits and timeouts.
    poll_interval:
        How often parked workers ask the broker again even without a wake-up
        (delayed retries and expired leases surface this way).
    prefetch:
        Up to how many assignments a worker may hold at once. More than one
        is handed out only while steps are queued and the worker's recent
        steps were short, as many as keep it busy for about 50 ms
        (see :func:`~fuseline_nb.worker.latency.batch_size`): fast fan-outs
        then cost one round trip per batch, and a long step never holds
        others back for long.

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.broker.clients import LocalBrokerClient
    >>> class Pool:
    ...     def workflow_blobs(self): return []
    >>> server = ChannelServer(LocalBrokerClient(MemoryBroker()), Pool())
    >>> server.alive, server.prefetch
    (False, 64)
    >>> server.close()
    """

    def __init__(self, client: BrokerClient, supervisor: Supervisor, *, poll_interval: float = 0.1,
                 prefetch: int = PREFETCH_DEFAULT) -> None:
        self.client = client
        self.supervisor = supervisor
        self.poll_interval = poll_interval
        self.prefetch = max(1, int(prefetch))
        self.endpoints: dict[str, Endpoint] = {}
        #: Broker worker id -> process label (``w1``...), kept after the process ends.
        self.names: dict[str, str] = {}
        self.backlog = 0  # hint: steps queued but not started (from broker events)
        self._sel = Watch()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, ("wake", None))
        self._pending: list[Endpoint] = []
        self._pending_lock = threading.Lock()
        self._cancels = False  # a held step's run was cancelled: ask the broker who holds it
        self._parked: dict[str, Endpoint] = {}
        self._timing = False  # a step with a timeout was handed out: ask the broker what is overdue
        self._next_due = 0.0  # time.monotonic() when the broker's next step timeout passes
        self._next_poll = 0.0
        # The kernel sees each worker process live: it keeps their leases alive itself, so a step
        # holding the GIL past its lease (no heartbeat gets out) is not queued again and again.
        lease = getattr(getattr(client, "broker", None), "lease_seconds", 60.0)
        self._beat_every = max(float(lease) / 3, 0.05)
        self._next_beat = time.monotonic() + self._beat_every
        self._dirty = False
        self._draining = False
        self._closing = False
        #: How long to look for the next request without sleeping after handing out work.
        self.spin = Spin(spin_seconds())
        self._spin_until = 0.0  # spin (see _spin) until then
        self._handed_at = 0.0  # when the spin after the last hand-out began (0: no spin pending)
        self._thread = threading.Thread(target=self._loop, name="fuseline-channel", daemon=True)
        self.ident: int | None = None
        self._handlers = self.handlers()
        self._deferred = client.deferred_events
        self._blobs: list[Any] | None = None  # the pool's workflows, asked again after wake(), a process change, a send
        # a broker's block is one reusable object (StorageBroker's is): entered per request without asking again
        block = client.deferred_events()
        self._block: AbstractContextManager[None] | None = block if client.deferred_events() is block else None
    # -- control, from any thread ---------------------------------------------------------
    def start(self) -> None:
        """Start the serving thread."""
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the serving thread runs."""
        return self._thread.is_alive()

    def add(self, ep: Endpoint) -> None:
        """Start serving ``ep`` (picked up by the loop at its next turn)."""
        with self._pending_lock:
            self._pending.append(ep)
        self.wake()

    def wake(self) -> None:
        """Make the loop look at parked workers and pending endpoints now."""
        self._dirty = True
        self._blobs = None  # the pool may have new workflows (it wakes the loop when it adds one)
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):  # full (a wake-up is pending anyway) or closed
            pass

    def on_event(self, event: Event) -> None:
        """The pool's broker listener (runs under the broker's lock: must stay quick).

        Counts the queued steps and wakes parked workers; a held step of a
        cancelled run has its process stopped.
        """
        kind = event.kind
        if kind == "step_queued":
            self.backlog += 1
            if self._parked and threading.get_ident() != self.ident:
                self.wake()
        elif kind == "step_started":
            self.backlog -= 1
        elif kind == "step_finished" and event.state is Status.CANCELLED and event.worker is not None \
                and event.step is not None:
            self.cancel(event.run_id, event.step)

    def cancel(self, run_id: str, step: str) -> None:
        """A held step's run was cancelled: the loop stops the process the broker says holds it (any thread)."""
        self._cancels = True
        self.wake()

    def _stop_cancelled(self) -> None:
        self._cancels = False
        held_by = self.client.held_by
        for ep in list(self.endpoints.values()):
            if ep.worker_id is not None and any(a.cancelled for a in held_by(ep.worker_id)):
                self.supervisor.on_cancel(ep)

    def drain(self) -> None:
        """Answer every get with ``stop`` from now on (workers then exit)."""
        self._draining = True
        self.wake()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and close every pipe; idempotent."""
        self._closing = True
        self.wake()
        if self._thread.is_alive() and threading.get_ident() != self.ident:
            self._thread.join(timeout)
        for ep in list(self.endpoints.values()):
            self.remove(ep)
        try:
            self._sel.close()
        finally:
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def remove(self, ep: Endpoint) -> None:
        """Stop serving ``ep`` and close its pipe."""
        self._blobs = None
        self.endpoints.pop(ep.label, None)
        self._parked.pop(ep.label, None)
        for obj in (ep.conn, getattr(ep.process, "sentinel", None)):
            if obj is None:
                continue
            try:
                self._sel.unregister(obj)
            except (KeyError, ValueError, OSError):
                pass
        try:
            ep.reader.close()  # (the reader keeps the pipe's number: it closes it)
        except OSError:
            pass

    # -- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        self.ident = threading.get_ident()
        while not self._closing:
            try:
                self._turn()
            except Exception:  # never let one bad turn leave the workers unserved
                log.exception("the worker channel server failed a turn; going on")
                time.sleep(0.05)

    def _turn(self) -> None:
        if self._pending:  # appended before the wake-up byte is written, so never missed
            self._take_pending()
        if self._cancels:
            self._stop_cancelled()
        try:
            ready = self._spin() if self._spin_until else None
            if not ready:
                ready = self._sel.wait(self._wait_time())
        except OSError:  # a descriptor closed under us: look again
            return
        if self._handed_at:  # did the spin after the last hand-out catch the next request?
            self.spin.took(time.perf_counter() - self._handed_at)
            self._handed_at = 0.0
        endpoints = self.endpoints
        for kind, ep in ready:
            if kind == "conn":
                if ep.label in endpoints:
                    self._readable(ep)
            elif kind == "wake":
                self._drain_wake()
            elif kind == "sentinel" and ep.label in endpoints:
                self._died(ep)
        if self._timing or self._parked or self._next_beat <= time.monotonic():
            now = time.monotonic()
            if now >= self._next_beat:
                self._keep_leases(now)
            if self._timing and now >= self._next_due:
                self._check_deadlines(now)
            if self._parked and (self.backlog > 0 or self._dirty or now >= self._next_poll):
                self._serve_parked(now)

    def _spin(self) -> list[Any]:
        """Look for the next request without sleeping, for a moment after handing out work."""
        until, self._spin_until = self._spin_until, 0.0
        wait = self._sel.wait
        return spin_until(lambda: wait(0), until - time.perf_counter(), self.spin)

    def _take_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for ep in pending:
            self.endpoints[ep.label] = ep
            self._blobs = None  # a new process: the pool reads back what it let go before it is served
            self._sel.register(ep.conn, ("conn", ep))
            self._sel.register(ep.process.sentinel, ("sentinel", ep))

    def _wait_time(self) -> float:
        due = self._next_beat
        if self._timing and self._next_due < due:
            due = self._next_due
        if self._parked and self._next_poll < due:
            due = self._next_poll
        return max(0.0, due - time.monotonic())

    def _keep_leases(self, now: float) -> None:
        """Extend the leases of every live worker process holding steps (see ``_beat_every``)."""
        self._next_beat = now + self._beat_every
        self.supervisor.keep_leases()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _check_deadlines(self, now: float) -> None:
        """Hand the steps the broker says passed their timeout to the supervisor."""
        late, wait = self.client.overdue()
        self._timing, self._next_due = wait is not None, now + (wait or 0.0)
        for a in late:
            ep = next((e for e in self.endpoints.values() if e.worker_id == a.worker_id), None)
            if ep is not None:
                self.supervisor.on_timeout(ep, a)

    def _serve_parked(self, now: float) -> None:
        if not self._parked:
            return
        if self.backlog <= 0 and not self._dirty and now < self._next_poll:
            return
        self._dirty = False
        self._next_poll = now + self.poll_interval
        assigned = False
        with self.client.deferred_events():  # the answers leave before the events reach the listeners
            for ep in list(self._parked.values()):
                kind, wid = ep.parked or ("get_step", ep.worker_id)
                ep.parked = None
                del self._parked[ep.label]
                try:
                    reply = self._offer(ep, kind, wid, True)
                except Exception as exc:
                    reply = ("error", type(exc).__name__, str(exc))
                if reply is not None:
                    assigned = assigned or reply[0] == "assignments"
                    self._send(ep, reply)
        if not assigned:
            self.backlog = 0

    # -- handlers ---------------------------------------------------------------------------
    def _offer(self, ep: Endpoint, kind: str, worker_id: str | None, wait: bool,
               reports: list[StepReport] | None = None) -> Reply:
        """Answer a get: stop, new workflows, an assignment, or park it.

        With ``reports`` (a ``report_and_get``) they are recorded first. When
        the answer is one step for a waiting worker, the reports and the
        hand-out are one broker call (``report_and_get``), and a refusal of
        the last report travels with the step: ``("assignments", batch,
        (type, message))`` — the worker takes the step and raises the refusal,
        as a lone ``report_step`` would. Otherwise it is the answer (an error).
        """
        if reports is not None:
            if len(reports) == 1:  # (_longest of one report, inline: once per step)
                r = reports[0]
                started, finished = r.started_at, r.finished_at
                ep.step_seconds = finished - started if started is not None and finished is not None \
                    and finished > started else 0.0
            else:
                ep.step_seconds = self._longest(reports)  # the batches of a worker whose steps turn out long shrink
            if self._draining or not wait:  # at once; what an early ask holds is counted after its reports
                self._record(ep, worker_id, reports)
                reports = None
        if self._draining:
            return ("stop",)
        # a worker asking early (not waiting) holds steps: it gets a real batch or none, never workflows
        held = len(self.client.held_by(worker_id)) if not wait and worker_id is not None else 0
        blobs = self._blobs
        if blobs is None:
            blobs = self._blobs = self.supervisor.workflow_blobs()
        if ep.shipped < len(blobs) and not held:
            if reports is not None:
                self._record(ep, worker_id, reports)
            new = blobs[ep.shipped:]
            if ep.shipped == 0:  # a fresh process needs only the latest definition of each
                new = list({key: (key, blob) for key, blob in new}.values())
            ep.shipped = len(blobs)
            self._blobs = None  # one more process has them all: the pool may let bytes go at the next ask
            return ("workflows", new)
        if kind == "hello" or worker_id is None:
            if reports is not None:
                self._record(ep, worker_id, reports)
        else:
            backlog, workers = self.backlog, len(self.endpoints)
            # batch_size's answer is 1 while the backlog is under one step per worker each: asked only beyond
            want = 1 if backlog < 2 * workers else batch_size(
                self.prefetch, step_seconds=ep.step_seconds, backlog=backlog, workers=workers)
            refusal: tuple[str, str] | None = None
            if reports is not None and want > 1:  # its batch counts what it holds after them
                self._record(ep, worker_id, reports)
                reports = None
            if want > 1 and wait:  # what it holds counts against its batch (asked only when it matters)
                held = len(self.client.held_by(worker_id))
            if held:  # an early ask comes from a worker running the first of what it holds: maybe none more
                want = max(1, want - held) if wait else max(0, want - held + 1)
            if reports is not None:  # one step for a waiting worker: its reports and the hand-out, one call
                refused, batch = self.client.report_and_get(worker_id, reports, want)
                last = refused[-1] if len(refused) == 1 else self._refusal(ep, refused)
                refusal = None if last is None else (type(last).__name__, str(last))
            else:
                batch = self.client.get_steps(worker_id, want) if want > 0 else []
            if not self._timing:
                for a in batch:
                    if a.timeout is not None:
                        self._timing, self._next_due = True, 0.0  # ask the broker at the next turn
                        break
            if refusal is not None and not batch:
                return ("error", *refusal)
            if batch or not wait:
                if batch and wait and self.spin.wanted():  # see latency.Spin: this channel's replies decide
                    self._handed_at = now = time.perf_counter()
                    self._spin_until = now + self.spin.seconds
                wire = [assignment_wire(a) for a in batch]
                return ("assignments", wire) if refusal is None else ("assignments", wire, refusal)
        ep.parked = (kind, worker_id)
        self._parked[ep.label] = ep
        return None


__all__ = ["ChannelServer", "Endpoint", "Supervisor"]
