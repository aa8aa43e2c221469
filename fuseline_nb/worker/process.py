"""The worker process side of a WorkerPool: its entry point and engine.

:func:`worker_main` runs in each spawned process: it ignores Ctrl-C (the
kernel's to handle), watches that its parent is alive, says hello over its
pipe, loads the shipped workflows and runs ``ProcessEngine(...).work(block=True)``
until the kernel says stop.

Examples
--------
>>> from fuseline_nb.worker.process import worker_main
>>> callable(worker_main)
True
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import signal
import sys
from typing import Any

from ..broker.messages import StepAssignment
from ..errors import PicklingError
from ..running.execute import StepOutcome
from ..workflow.gcpause import paused_gc
from ..workflow.graph import Workflow
from . import _freshmods
from ._freshmods import refresh as fresh_modules
from .channel import ChannelClient, ChannelClosed, WorkflowBlob
from .engine import _REFUSALS, ProcessEngine, _refused, execute, report_fields
from .latency import HOLD_SECONDS, spin_seconds
from .shipping import load
from .signals import release_sigint
from .supervisor import watch_parent


class _PoolEngine(ProcessEngine):
    """The engine of a pool worker: it can take more workflows while running, and its loop reports a step and
    takes the next in one turn (:meth:`ChannelClient.report_and_next`)."""

    _reported: StepAssignment
    _run = ""  # the run of the step taken last
    _runs: set[str] | None = None  # the runs this worker took steps of (their first step refreshed the modules)

    def adopt(self, blobs: list[WorkflowBlob]) -> str:
        """Load shipped workflows; re-register when they add workflow ids. Returns the worker id."""
        try:
            loaded = _load(blobs)
        except PicklingError as exc:
            assert isinstance(self.client, ChannelClient)
            self.client.load_error(str(exc), exc.workflow_key)
            raise ChannelClosed(str(exc)) from exc
        new = set(loaded) - set(self._by_key)
        self._by_key.update(loaded)
        self.workflows = list(self._by_key.values())
        if new:
            self.worker_id = self.client.register_worker([w.to_schema() for w in self.workflows], self.name)
        return self.worker_id

    def work(self, *, block: bool = False, poll_interval: float = 1.0, max_steps: int | None = None) -> None:
        """:meth:`ProcessEngine.work`; blocking with no step limit (how a pool worker runs) it is that loop
        with :meth:`run_assignment`, :meth:`_report` and :meth:`_next_step` written out: every step of the
        worker turns it (on one CPU each call in it costs the kernel's time too, see docs/latency.md)."""
        if not block or max_steps is not None:
            super().work(block=block, poll_interval=poll_interval, max_steps=max_steps)
            return
        client, stop = self.client, self._stop
        assert isinstance(client, ChannelClient)
        stop.clear()
        try:
            a = self._next_step()
            while not stop.is_set():
                if a is None:
                    stop.wait(poll_interval)
                    a = self._next_step()
                    continue
                self._busy = a  # run_assignment
                if not self._beating[0] or self._beat is None:
                    self._start_heartbeat(a)
                try:
                    out = execute(self._by_key, a, self.worker_id)
                finally:
                    self._busy = None
                self.steps_run += 1
                wire = report_fields(a, out, True)
                del out
                self._reported = a
                try:
                    a = client.report_and_next(self.worker_id, wire)
                except _REFUSALS as exc:
                    _refused(self._reported, exc)
                    a = self._next_step()
                    continue
                if a is not None and a.instance_id != self._run:  # (as _next_step does)
                    self._another_run(a.instance_id)
        finally:
            self._stop_heartbeat()

    def _report(self, a: StepAssignment, out: StepOutcome) -> None:
        """Report without waiting: the answer (the next steps, or a refusal) is read by :meth:`_next_step`."""
        assert isinstance(self.client, ChannelClient)
        try:
            self.client.send_report(self.worker_id, report_fields(a, out, True))  # its pipe form
        except _REFUSALS as exc:
            _refused(a, exc)
        self._reported = a  # (here, after the write: the step reported before it is let go meanwhile)

    def _next_step(self) -> StepAssignment | None:
        try:
            a = self.client.get_step(self.worker_id)
        except _REFUSALS as exc:  # the answer to the last report refused it; the steps that came with it
            _refused(self._reported, exc)  # are in hand (or none came: this asks again)
            a = self.client.get_step(self.worker_id)
        if a is not None and a.instance_id != self._run:
            self._another_run(a.instance_id)
        return a

    def _another_run(self, run: str) -> None:
        """The step taken is of another run than the last step's."""
        self._run = run
        runs = self._runs
        if runs is None:
            runs = self._runs = set()
        if run not in runs:  # a new one: the user's modules as the notebook may have reloaded them
            if len(runs) > 4096:  # since (see _freshmods); runs taking turns do not stat again
                runs.clear()
            runs.add(run)
            fresh_modules()

    def _on_beat(self) -> None:
        """Reports held while a long step runs leave now (latency: a report waits at most a heartbeat)."""
        assert isinstance(self.client, ChannelClient)
        self.client.flush(HOLD_SECONDS)


def _load(blobs: list[WorkflowBlob]) -> dict[tuple[str, str], Workflow]:
    """Load shipped workflows by reference (their schemas go back to this kernel only), then leave
    everything alive out of the cyclic collector's walks.

    A worker keeps every workflow it loads until it ends, and they make no
    garbage; yet each full collection walked all their objects (millions at
    1→1,000,000→1), and loading them triggered such collections itself. So
    the collector is paused while they load and ``gc.freeze()`` moves them
    (with the imports) to the permanent generation. Objects made later —
    steps' results, inputs, reports — are collected as always.
    """
    with paused_gc():
        loaded = load(blobs, by_reference=True)
    gc.freeze()
    return loaded


def worker_main(conn: Any, label: str, parent_pid: int, log_level: int) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the kernel's to handle
    _freshmods.ACTIVE = True  # the user's modules reloaded here when their files change (see _freshmods)
    release_sigint()  # born with SIGINT held back (sigint_held): a Ctrl-C during start-up is dropped here
    logging.basicConfig(level=log_level or logging.WARNING,
                        format=f"%(levelname)s worker {label}: %(name)s: %(message)s")
    watch_parent(parent_pid, lambda: os._exit(70))  # the kernel is gone, even if killed and could not stop us
    client = ChannelClient(conn, wait=True, spin=spin_seconds())
    try:
        try:  # their schemas go back to this kernel only: registering names them, never resends them
            workflows = _load(client.hello())
        except PicklingError as exc:
            client.load_error(str(exc), exc.workflow_key)
            return
        engine = _PoolEngine(client, workflows.values(), name=label)
        client.on_workflows = engine.adopt
        engine.work(block=True)
    except ChannelClosed:
        pass
    finally:
        client.close()
    _leave()


def _leave() -> None:
    """End this worker process without tearing its heap down object by object.

    After a long run a worker holds millions of objects (the shipped
    workflows, their steps, the interpreter's caches): the interpreter's own
    exit frees them one by one — ~2 s after a 100k-step run, ~20 s after
    1M steps, long past the kernel's grace, which then killed an idle worker
    as "still busy at shutdown". Nothing here needs that: the exit handlers
    run (logging, multiprocessing's finalizers, a step's ``atexit``), the
    standard streams are flushed, then the process ends with status 0.
    """
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):  # closed or replaced by a step
                pass
        os._exit(0)


__all__ = ["worker_main"]
