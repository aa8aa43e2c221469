"""``fuseline-nb worker``'s processes: steps run for a broker service, under the one worker supervisor.

:func:`run_workers` is the supervising process: it starts ``processes``
worker processes (spawn context) through a
:class:`~fuseline_nb.worker.supervisor.WorkerSupervisor` — the same one the
kernel's pool uses — and watches them. Each process runs
:func:`serve_steps`: ``ProcessEngine(HttpBrokerClient(...), workflows).work(block=True)``,
telling its supervisor over a one-way pipe (read every :data:`STATUS_EVERY`
seconds) which broker worker it is and which step it runs. So the
supervisor, in a process of its own:

* keeps the lease of a step while the process running it is alive (a step
  holding the GIL cannot send its own heartbeats), and kills the process when
  the step passes its ``StepTimeoutPolicy`` (the attempt FAILS with
  ``TimeoutError``) or its run was cancelled;
* replaces a process that dies, and unregisters it from the broker at once, so
  its step goes back to the queue without waiting for its lease; gives up
  when processes keep dying before they are ready.

SIGTERM or SIGINT stops the processes cleanly: each finishes its current step,
reports it and leaves the broker; a second signal kills them. A worker
process whose supervisor was killed (SIGKILL) finishes its step, leaves and
exits (:func:`~fuseline_nb.worker.supervisor.watch_parent`).

Examples
--------
>>> child = Remote("w1", None, None)
>>> child.busy is None, child.worker_id is None
(True, True)
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..broker.base import StepAssignment
from ..running.execute import StepOutcome
from .engine import ProcessEngine
from .signals import release_sigint
from .supervisor import WorkerSupervisor, watch_parent

log = logging.getLogger(__name__)

#: Seconds between two reads of the processes' status pipes (they are not read at every step: a
#: wake-up per step would cost the machine more than the step's HTTP round trip saves).
STATUS_EVERY = 0.05
FATAL = 3  # a worker process's exit code when retrying cannot help (bad token, schema clash)
CANCELLED = 4  # a worker process's exit code after the run of its step was cancelled (replace it)


@dataclass(slots=True)
class Running:
    """The step a ``fuseline-nb worker`` process said it runs."""

    workflow_id: str
    version: str
    run_id: str
    step: str
    attempt: int
    timeout: float | None  # its StepTimeoutPolicy, if any
    deadline: float | None = None  # time.monotonic() when the supervisor kills it


class Remote:
    """One ``fuseline-nb worker`` process as its supervisor sees it (what its status pipe said)."""

    __slots__ = ("busy", "conn", "label", "lease", "process", "worker_id")

    def __init__(self, label: str, process: Any, conn: Any) -> None:
        self.label = label
        self.process = process
        self.conn = conn  # the process's status messages (one-way, to the supervisor)
        self.worker_id: str | None = None
        self.busy: Running | None = None  # the step it runs now
        self.lease = 60.0  # seconds its assignments live without a keep-alive

    def read_status(self) -> None:
        """Take every status message waiting on the pipe (the process may have ended)."""
        try:
            while not self.conn.closed and self.conn.poll():
                message = self.conn.recv()
                if message[0] == "ready":
                    self.worker_id = message[1]
                elif message[0] == "busy":
                    *fields, self.lease = message[1:]
                    self.busy = Running(*fields)
                    if self.busy.timeout:
                        self.busy.deadline = time.monotonic() + self.busy.timeout
                else:
                    self.busy = None
        except (EOFError, OSError):
            self.conn.close()


class _Engine(ProcessEngine):
    """A ProcessEngine that tells its supervisor which step it runs."""

    status: Any = None

    def tell(self, *message: Any) -> None:
        try:
            self.status.send(message)
        except (OSError, ValueError):  # the supervisor is gone: watch_parent stops this process
            pass

    def run_assignment(self, assignment: StepAssignment) -> StepOutcome:
        a = assignment
        self.tell("busy", a.workflow_id, a.version, a.instance_id, a.step_name, a.attempt, a.timeout,
                  max(a.expires_at - a.assigned_at, 0.3))
        try:
            return super().run_assignment(assignment)
        finally:
            self.tell("idle")


def serve_steps(specs: list[str], loader: Callable[[str], Any], url: str, token: str | None, name: str | None,
                poll_wait: float, status: Any, parent_pid: int) -> None:
    """One worker process: register, fetch-run-report until told to stop, then leave."""
    from ..broker.http_client import HttpBrokerClient
    from ..errors import (
        BrokerAuthError,
        BrokerUnavailableError,
        SchemaMismatchError,
        UnknownRunError,
        UnknownWorkerError,
    )

    logging.basicConfig(level=logging.INFO if os.environ.get("FUSELINE_NB_VERBOSE") else logging.WARNING,
                        format=f"%(levelname)s worker {os.getpid()} %(name)s: %(message)s")
    stopping = threading.Event()
    engine: _Engine | None = None

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()
        if engine is not None:
            engine.stop()

    def gone() -> None:
        log.warning("the fuseline-nb worker supervisor (pid %s) is gone: stopping after this step", parent_pid)
        on_signal(signal.SIGTERM, None)

    def on_cancel(a: Any) -> None:  # the step cannot be stopped in this thread: end the process
        log.warning("step %r of run %s was cancelled: this worker process stops (another starts)",
                    a.step_name, a.instance_id)
        logging.shutdown()
        os._exit(CANCELLED)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    release_sigint()  # born with SIGINT held back (sigint_held); on_signal handles it from here
    watch_parent(parent_pid, gone)
    workflows = [loader(s) for s in specs]
    name = name or f"{socket.gethostname()}/{os.getpid()}"
    client = HttpBrokerClient(url, token, poll_wait=poll_wait, retries=2)
    pause = 0.5
    try:
        while not stopping.is_set():
            try:
                if engine is None:
                    engine = _Engine(client, workflows, name=name, on_cancel=on_cancel)
                    engine.status = status
                    engine.tell("ready", engine.worker_id)
                    log.info("registered as %s at %s", engine.worker_id, url)
                    if stopping.is_set():
                        break
                engine.work(block=True, poll_interval=0.05)
                pause = 0.5
            except BrokerUnavailableError as exc:
                log.warning("%s; trying again in %.1fs", exc, pause)
                stopping.wait(pause)
                pause = min(pause * 2, 10.0)
            except (UnknownRunError, UnknownWorkerError) as exc:  # e.g. a memory broker restarted
                log.warning("step dropped: %s", exc)
            except (BrokerAuthError, SchemaMismatchError) as exc:
                log.error("%s", exc)
                sys.exit(FATAL)
    finally:
        if engine is not None:
            try:
                client.unregister_worker(engine.worker_id)
            except Exception as exc:  # leaving is best effort: the lease covers a lost goodbye
                log.info("could not unregister: %s", exc)
        client.close()


def _remotes(sup: WorkerSupervisor) -> list[Remote]:
    return cast(list[Remote], sup.children())


def _ended(sup: WorkerSupervisor, child: Remote) -> None:
    child.read_status()  # what it said before it ended
    child.process.join(1.0)
    code = child.process.exitcode
    if code == FATAL:
        sup.exited(child, give_up="a worker process cannot go on (see its error above)")
    elif code == CANCELLED:
        log.info("worker process %s stopped its cancelled step; starting another", child.process.pid)
        sup.exited(child, count=False)
    else:
        sup.exited(child)


def run_workers(specs: list[str], loader: Callable[[str], Any], url: str, token: str | None, name: str | None,
                processes: int, poll_wait: float, grace: float) -> int:
    """Run ``processes`` worker processes for the broker at ``url`` until SIGTERM/SIGINT; the exit status."""
    from ..broker.http_client import HttpBrokerClient

    ctx = mp.get_context("spawn")
    client = HttpBrokerClient(url, token, retries=1)

    def start(label: str) -> Remote:
        mine, theirs = ctx.Pipe(duplex=False)
        p = ctx.Process(target=serve_steps, args=(specs, loader, url, token, name, poll_wait, theirs, os.getpid()),
                        name="fuseline-nb-worker", daemon=False)
        p.start()
        theirs.close()
        return Remote(label, p, mine)

    sup = WorkerSupervisor(client, start, processes, detach=lambda child: child.conn.close())  # type: ignore[attr-defined]
    stops = 0

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stops
        stops += 1
        for child in sup.children():
            if child.process.is_alive() and child.process.pid is not None:
                try:
                    os.kill(child.process.pid, signal.SIGKILL if stops > 1 else signal.SIGTERM)
                except ProcessLookupError:
                    pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sup.start()
    next_beat = 0.0
    try:
        while not stops and sup.error is None:
            now = time.monotonic()
            due = [next_beat, now + STATUS_EVERY]
            for ended in sup.watch(max(0.0, min(due) - now)):  # a process that ends wakes it at once
                _ended(sup, ended)
            for child in _remotes(sup):  # read in batches, not woken by every step
                child.read_status()
            now = time.monotonic()
            busy = [c for c in _remotes(sup) if c.busy is not None]
            every = min([c.lease / 3 for c in busy] or [1.0])
            if now >= next_beat:
                sup.keep_leases()
                next_beat = now + every
            next_beat = min(next_beat, now + every)  # a step just started with a short lease: beat in time
            for c in busy:
                if c.busy and c.busy.deadline and c.busy.deadline <= now:
                    sup.timed_out(c, c.busy)
    finally:
        sup.stop(lambda: None if stops else on_signal(signal.SIGTERM, None), grace)
        client.close()
    if sup.error is not None:
        log.error("%s; stopped", sup.error)
        return 1
    return 0


__all__ = ["CANCELLED", "FATAL", "STATUS_EVERY", "Remote", "Running", "run_workers", "serve_steps"]
