"""One supervisor for worker processes: the kernel's pool and ``fuseline-nb worker`` share it.

:class:`WorkerSupervisor` starts worker processes and is told when one ends
(its owner watches the sentinels: the pool's channel thread in its
``selectors`` loop, ``fuseline-nb worker`` in :meth:`WorkerSupervisor.watch`).
Then:

* a process that died is replaced at once and leaves the broker, so the step
  it held goes back to the queue as a new attempt; a step whose process died
  ``max_crashes`` times FAILS with ``WorkerCrashedError`` instead of looping;
* when ``max_crashes`` processes in a row die before they are ready (an import
  error, a refused token: nothing a replacement fixes) it gives up, and
  :attr:`WorkerSupervisor.error` says why;
* while a process holding a step is alive, :meth:`~WorkerSupervisor.keep_leases`
  keeps the step's lease (a step holding the GIL blocks its own heartbeat
  thread; it must not be handed out again). What stops a step that never ends
  is its ``StepTimeoutPolicy``: :meth:`~WorkerSupervisor.timed_out` kills the
  process and fails the attempt with ``TimeoutError``;
* the process running a step whose run was cancelled is killed
  (:meth:`~WorkerSupervisor.cancelled`) and replaced;
* :meth:`~WorkerSupervisor.stop` asks every process to stop, waits, and kills
  the ones still running.

Worker processes call :func:`watch_parent`, so they end when their
supervisor's process is killed (SIGKILL gives it no chance to stop them).

Examples
--------
>>> from fuseline_nb.broker import MemoryBroker
>>> from fuseline_nb.broker.clients import LocalBrokerClient
>>> sup = WorkerSupervisor(LocalBrokerClient(MemoryBroker()), lambda label: None, 2)
>>> sup
<WorkerSupervisor 0/2 worker processes, not started>
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import wait as wait_any
from typing import Any, Protocol

from ..broker.base import StepReport
from ..broker.clients import BrokerClient
from ..errors import WorkerError
from ..workflow.status import Status
from .signals import sigint_held

log = logging.getLogger(__name__)


class Held(Protocol):
    """The step a worker process is running, as its supervisor knows it."""

    @property
    def workflow_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def timeout(self) -> float | None:
        """Its StepTimeoutPolicy, if any."""


class Child(Protocol):
    """A worker process as its supervisor sees it (the pool's ``Endpoint`` is one)."""

    label: str
    process: Any  # a multiprocessing Process
    worker_id: str | None  # the broker's id once registered: until then it is not ready


class WorkerSupervisor:
    """Starts ``processes`` worker processes with ``start(label)``, replaces them, keeps their leases.

    Parameters
    ----------
    client:
        The broker the workers serve (to unregister the dead, fail steps, keep leases).
    start:
        ``start(label) -> Child``: starts one process labelled ``w1``, ``w2``...
    processes:
        How many to keep running.
    max_crashes:
        A step whose process died this many times FAILS; this many processes
        dying in a row before they were ready make the supervisor give up.
    detach:
        Called with a child before it is killed or forgotten (stop serving its pipe).
    held:
        ``held(child)``: the step it runs now, if any (default: its ``busy`` attribute).

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.broker.clients import LocalBrokerClient
    >>> WorkerSupervisor(LocalBrokerClient(MemoryBroker()), lambda label: None, 0)
    Traceback (most recent call last):
    ValueError: a worker supervisor needs processes >= 1, not 0
    """

    def __init__(self, client: BrokerClient, start: Callable[[str], Child], processes: int, *,
                 max_crashes: int = 3, detach: Callable[[Child], None] | None = None,
                 held: Callable[[Any], Held | None] | None = None) -> None:
        if int(processes) < 1:
            raise ValueError(f"a worker supervisor needs processes >= 1, not {processes!r}")
        self.client = client
        self.processes = int(processes)
        self.max_crashes = int(max_crashes)
        #: Why no process can run steps (they keep dying at start, or cannot load the workflows), else ``None``.
        self.error: Exception | None = None
        self._start = start
        self._detach = detach or (lambda child: None)
        self.held: Callable[[Any], Held | None] = held or (lambda child: child.busy)
        self._labels = itertools.count(1)
        self._children: dict[str, Child] = {}
        self._lock = threading.RLock()
        self._crashes: dict[tuple[str, str], int] = {}  # (run id, step) -> deaths of its processes
        self._start_failures = 0  # processes in a row that died before they were ready
        self._load_failed: set[str] = set()  # labels of processes ending because a workflow could not be loaded
        self._state = "new"  # new -> running -> stopping -> stopped

    def __repr__(self) -> str:
        state = {"new": "not started"}.get(self._state, self._state)
        return f"<WorkerSupervisor {len(self._children)}/{self.processes} worker processes, {state}>"

    # -- processes ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the processes."""
        with self._lock:
            self._state = "running"
            for _ in range(self.processes):
                self.spawn()

    @property
    def running(self) -> bool:
        """Whether it was started and not stopped."""
        return self._state == "running"

    def spawn(self) -> Child:
        """Start one more process."""
        # stop() waits for a start under way, so it joins (or kills) this process too; the child is
        # born with SIGINT held back and tracked before a held-back Ctrl-C can interrupt this thread
        with sigint_held(), self._lock:
            label = f"w{next(self._labels)}"
            child = self._start(label)
            self._children[label] = child
        log.info("started worker %s (pid %s)", label, child.process.pid)
        return child

    def children(self) -> list[Child]:
        """The processes it runs now."""
        with self._lock:
            return list(self._children.values())

    def pids(self) -> list[int]:
        """Their process ids."""
        return [c.process.pid for c in self.children() if c.process.pid is not None]

    def watch(self, timeout: float | None, also: Iterable[Any] = ()) -> list[Any]:
        """Wait up to ``timeout`` seconds for a process to end (or one of ``also`` to be ready).

        Returns the children that ended and the objects of ``also`` that are ready.
        """
        children = {c.process.sentinel: c for c in self.children()}
        ready = wait_any([*children, *also], timeout=timeout)
        return [children.get(r, r) for r in ready]

    def _kill(self, child: Child) -> None:
        self._detach(child)
        child.process.kill()
        child.process.join(2.0)

    def _forget(self, child: Child) -> None:
        with self._lock:
            self._children.pop(child.label, None)
        if child.worker_id is not None:
            try:
                self.client.unregister_worker(child.worker_id)  # its assignments go back to the queue
            except Exception as exc:  # e.g. the broker is gone: the lease covers it
                log.warning("could not unregister worker %s: %s", child.worker_id, exc)
            child.worker_id = None

    def _replace(self) -> None:
        with self._lock:  # not once stop() began: a process started then would never be asked to stop
            if self._state == "running" and self.error is None:
                self.spawn()

    def fail_step(self, child: Child, busy: Held, error: str) -> None:
        """Report ``child``'s step ``busy`` FAILED with ``error`` (on its behalf)."""
        if child.worker_id is None:
            return
        report = StepReport(busy.workflow_id, busy.run_id, busy.step, Status.FAILED, attempt=busy.attempt,
                            error=error, finished_at=time.time())
        try:
            self.client.report_step(child.worker_id, report)
        except Exception as exc:  # the run ended or the attempt was re-queued meanwhile
            log.warning("could not fail step %r of run %s: %s", busy.step, busy.run_id, exc)

    # -- what happened to a process ------------------------------------------------------
    def exited(self, child: Child, *, give_up: str | None = None, count: bool = True) -> None:
        """``child``'s process ended: count it, re-queue (or fail) its step, start a replacement.

        ``give_up``: the process said retrying cannot help (the reason); ``count=False``: it
        ended on purpose (it stopped a cancelled step) and is just replaced.
        """
        proc = child.process
        code = None
        if child.label in self._load_failed:  # it told why it ends: a replacement is not sent that workflow
            self._load_failed.discard(child.label)
            count = False
        if self._state == "running":  # (while stopping, stop() alone reaps: two threads reaping one
            proc.join(1.0)            # process make one of them believe it still runs)
            code = proc.exitcode
        if self._state == "running" and give_up is not None:
            self.error = self.error or WorkerError(give_up)
        elif self._state == "running" and count:
            busy = self.held(child)
            if child.worker_id is None:
                self._start_failures += 1
                log.warning("worker %s (pid %s) exited with code %s before it was ready", child.label,
                            proc.pid, code)
                if self._start_failures >= self.max_crashes and self.error is None:
                    self.error = WorkerError(
                        f"worker processes keep exiting at start ({self._start_failures} in a row, last exit "
                        f"code {code}); see the log for their errors")
            elif busy is not None:
                self._start_failures = 0  # it had started: only failures in a row at start count
                key = (busy.run_id, busy.step)
                self._crashes[key] = n = self._crashes.get(key, 0) + 1
                log.warning("worker %s (pid %s) died (exit code %s) running step %r of run %s",
                            child.label, proc.pid, code, busy.step, busy.run_id)
                if n >= self.max_crashes:
                    self.fail_step(child, busy, f"WorkerCrashedError: the worker process running step "
                                          f"{busy.step!r} died {n} times (last exit code {code})")
            else:
                self._start_failures = 0
                log.warning("worker %s (pid %s) exited with code %s", child.label, proc.pid, code)
        self._detach(child)
        self._forget(child)
        self._replace()

    def timed_out(self, child: Child, busy: Held) -> None:
        """``child``'s step ``busy`` passed its ``StepTimeoutPolicy``: kill the process, fail the attempt,
        replace it."""
        self._kill(child)
        log.warning("step %r of run %s exceeded its timeout of %g s: worker %s (pid %s) killed",
                    busy.step, busy.run_id, busy.timeout or 0, child.label, child.process.pid)
        self.fail_step(child, busy, f"TimeoutError: step {busy.step!r} exceeded its timeout of "
                                    f"{busy.timeout or 0:g} s; its worker process (pid {child.process.pid}) was killed")
        self._forget(child)
        self._replace()

    def cancelled(self, child: Child) -> None:
        """``child`` runs a step of a cancelled run: kill the process (no report) and replace it."""
        with self._lock:
            if child.label not in self._children:
                return
        busy = self.held(child)
        self._kill(child)
        log.info("worker %s (pid %s) killed: step %r of run %s was cancelled", child.label, child.process.pid,
                 busy.step if busy else None, busy.run_id if busy else None)
        self._forget(child)  # assignments of other runs it held go back to the queue
        self._replace()

    def load_failed(self, child: Child, text: str, key: tuple[str, str] | None = None) -> None:
        """``child`` could not load the shipped workflows.

        ``key`` names the one that failed: its owner drops it, and the process
        (which ends) is replaced without counting as a crash. Without a key no
        process can run them: :attr:`error` says why.
        """
        log.error("worker %s: %s", child.label, text)
        if key is not None:
            self._load_failed.add(child.label)
        elif self.error is None:
            self.error = WorkerError(text)

    def keep_leases(self) -> None:
        """Extend the lease of every step held by a live process; kill the ones running cancelled steps."""
        for child in self.children():
            busy = self.held(child)
            if busy is None or child.worker_id is None or not child.process.is_alive():
                continue
            try:
                cancelled = self.client.keep_alive(child.worker_id)
            except Exception as exc:  # e.g. the worker was just unregistered
                log.debug("keep-alive for %s failed: %s", child.label, exc)
                continue
            if cancelled and (busy.run_id, busy.step) in {tuple(c) for c in cancelled}:
                self.cancelled(child)

    # -- the end ------------------------------------------------------------------------
    def _holding(self, child: Any) -> Held | None:
        """The step ``child`` runs as the broker records it, or ``None`` (also when the broker cannot say)."""
        try:
            return self.held(child)
        except Exception:  # e.g. the worker already left the broker: it holds nothing there
            return None

    def stop(self, ask: Callable[[], None], grace: float) -> None:
        """``ask()`` every process to stop; kill the ones still running after ``grace`` seconds."""
        with self._lock:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopping"
        ask()
        deadline = time.monotonic() + grace
        for child in self.children():
            child.process.join(max(0.0, deadline - time.monotonic()))
        for child in self.children():
            if not _ended(child.process):
                if child.worker_id is None:  # stopped while it started (e.g. Ctrl-C): nothing to warn about
                    log.info("worker %s (pid %s) still starting at shutdown: killed", child.label,
                             child.process.pid)
                elif (held := self._holding(child)) is not None:
                    log.warning("worker %s (pid %s) still running step %r of run %s %.1f s after it was asked "
                                "to stop: killed (the step goes back to the queue)", child.label,
                                child.process.pid, held.step, held.run_id, grace)
                else:
                    log.warning("worker %s (pid %s) holds no step but had not exited %.1f s after it was asked "
                                "to stop: killed", child.label, child.process.pid, grace)
                child.process.kill()
                child.process.join(2.0)
        self._state = "stopped"


def _ended(process: Any) -> bool:
    """Whether ``process`` ended, asked without reaping it: another thread may be reaping it right now, and
    its ``waitpid`` would then make ``is_alive()`` here say True for a process that is gone."""
    return process.exitcode is not None or bool(wait_any([process.sentinel], timeout=0))


def watch_parent(parent_pid: int, gone: Callable[[], None], every: float = 0.5) -> None:
    """In a worker process: call ``gone()`` (from a daemon thread) once the parent ``parent_pid`` is gone.

    A parent killed with SIGKILL cannot stop its workers; they notice here
    (their parent process id changes) within ``every`` seconds.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every)
        gone()

    threading.Thread(target=watch, name="fuseline-parent-watch", daemon=True).start()


__all__ = ["Child", "Held", "WorkerSupervisor", "watch_parent"]
