"""Handing out steps and recording their outcomes: the calls a :class:`~fuseline_nb.broker.core.StorageBroker` answers per step.

``get_step`` / ``get_steps`` hand ready steps to a worker (each a new
attempt with a lease: :func:`~fuseline_nb.broker.leases.hand_out`);
``report_step`` / ``report_steps`` record what the worker says about them
(:func:`~fuseline_nb.broker.leases.report`); :meth:`Handing.report_and_get`
does both for one request, as a worker process sends them (its reports,
then "what next?"). Each call takes the broker's lock once, reads the clock
once, gathers what its transitions decide into one
:class:`~fuseline_nb.broker.transitions.Effects` and applies it once.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow, Status
>>> from fuseline_nb.broker import MemoryBroker, StepReport
>>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="a") >> FunctionStep(lambda: 2, name="b")])
>>> broker = MemoryBroker()
>>> wid = broker.register_worker([wf.to_schema()])
>>> run_id = broker.dispatch_workflow(wf.to_schema())
>>> [a] = broker.get_steps(wid, 8)
>>> done = StepReport(a.workflow_id, a.run_id, a.step_name, Status.SUCCEEDED, 1, attempt=a.attempt)
>>> refused, nxt = broker.report_and_get(wid, [done], 8)
>>> refused, [b.step_name for b in nxt]
([None], ['b'])
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..errors import StaleReportError, UnknownRunError
from ..workflow.status import Status
from . import leases
from ._outbox import Outbox
from .base import StepAssignment, StepReport
from .records import STATE_CODES
from .state import LiveState, Worker
from .storage.base import RuntimeStorage
from .transitions import Effects, Lookup

log = logging.getLogger(__name__)
#: the states of a step a queue entry must not hand out again: running, or with an outcome
_TAKEN_STATES = frozenset({Status.RUNNING, Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.CANCELLED})
_TAKEN = frozenset(STATE_CODES[s] for s in _TAKEN_STATES)


class Handing:
    """The per-step calls of :class:`~fuseline_nb.broker.core.StorageBroker` (a base class of it).

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> issubclass(MemoryBroker, Handing)
    True
    """

    storage: RuntimeStorage
    worker_ttl: float | None
    _lock: threading.RLock
    _state: LiveState
    _closed: bool
    _clock: Callable[[], float]
    _lookup: Lookup
    _out: Outbox

    if TYPE_CHECKING:  # the broker's own (core.StorageBroker and its other bases)
        def _apply(self, fx: Effects) -> None: ...
        def _write(self, fx: Effects) -> None: ...
        def _check_open(self) -> None: ...
        def _settled(self) -> None: ...
        def _prune(self, now: float) -> None: ...
        def _worker(self, worker_id: str) -> Worker: ...

    def get_step(self, worker_id: str) -> StepAssignment | None:
        """The next ready step ``worker_id`` can run, or ``None``."""
        with self._lock:
            taken = self._take(worker_id, 1)
            return taken[0] if taken else None

    def get_steps(self, worker_id: str, n: int) -> list[StepAssignment]:
        """Up to ``n`` ready steps for ``worker_id``, as ``n`` calls of :meth:`get_step` would hand them out.

        One lock, one lease sweep and one clock reading for the batch; a
        worker with prefetch asks for several at once (see
        :meth:`Broker.get_steps <fuseline_nb.broker.base.Broker.get_steps>`).
        """
        with self._lock:
            return self._take(worker_id, n)

    def _take(self, worker_id: str, n: int) -> list[StepAssignment]:
        if self._closed:
            self._check_open()
        st = self._state
        if self.worker_ttl is not None:
            self._prune(self._clock())
            if worker_id in st.pruned:  # as in Fuseline: a pruned worker gets nothing
                log.warning("get_step from pruned worker %s: nothing given; register it again", worker_id)
                return []
        worker = st.workers.get(worker_id) or self._worker(worker_id)
        now = worker.info.last_seen = self._clock()
        if st.next_expiry <= now or (st.delayed and st.delayed[0][0] <= now):
            self._apply(leases.expire(st, now, self._lookup))
        if n <= 0:
            return []
        fx = Effects(raw=self._out.holding())  # the whole batch's writes and events: applied at once
        taken = self._hand(worker, now, n, fx)
        self._apply(fx)
        return taken

    def _hand(self, worker: Worker, now: float, n: int, fx: Effects) -> list[StepAssignment]:
        """Up to ``n`` assignments for ``worker`` from its workflows' live runs, their effects into ``fx``."""
        st = self._state
        taken: list[StepAssignment] = []
        fetch, runs, active, hand_out = self.storage.fetch_steps, st.runs, st.active, leases.hand_out
        for key in worker.keys:
            ids = active.get(key)
            if not ids:
                continue
            for run_id in ids:  # handing out ends no run: ``active`` does not change in this loop
                run = runs.get(run_id)
                if run is None:
                    continue
                infos = run.infos
                index = infos.index  # (the run's compiled.index)
                opened, codes = infos.opened, infos.state
                while True:
                    want = n - len(taken)
                    steps = fetch(run_id, want)
                    for step in steps:
                        i = index.get(step)
                        if i is None:
                            log.warning("dropping queue entry %r of run %s: the workflow has no such step",
                                        step, run_id)
                        elif (codes[i] in _TAKEN if step not in opened else opened[step].state in _TAKEN_STATES):
                            # running, or finished: a step's record says so as its outcome does (no lookup
                            # of its name in the run's outcomes, a big table)
                            log.debug("dropping duplicate queue entry %r of run %s", step, run_id)
                        else:  # a duplicate entry never runs a step twice
                            taken.append(hand_out(st, run, step, worker, now, fx))
                    if len(taken) >= n:
                        return taken
                    if len(steps) < want:  # the queue is empty (handing out queues nothing)
                        break
        return taken

    def report_step(self, worker_id: str, report: StepReport) -> None:
        """Record one attempt's outcome; refuse a report for a superseded attempt."""
        with self._lock:
            worker, now = self._reporter(worker_id)
            fx = Effects()
            self._report(worker, now, report, fx)
            self._apply(fx)

    def report_steps(self, worker_id: str, reports: Iterable[StepReport]) -> list[Exception | None]:
        """Record several outcomes in order under one lock, as many :meth:`report_step` calls would.

        One entry per report: ``None`` when recorded, else the exception
        :meth:`report_step` would have raised for it (see
        :meth:`Broker.report_steps <fuseline_nb.broker.base.Broker.report_steps>`).
        One clock reading for the batch; its writes and events are applied
        together, after the last report.
        """
        with self._lock:
            try:
                worker, now = self._reporter(worker_id)
            except Exception as exc:  # a closed broker, an unknown worker: every report is refused
                return [exc for _ in reports]
            fx = Effects(raw=self._out.holding())
            out = self._record(worker, now, reports, fx)
            try:
                self._apply(fx)
            except Exception as exc:  # the storage refused the batch: every recorded report says so
                out = [exc if e is None else e for e in out]
        return out

    def report_and_get(self, worker_id: str, reports: Iterable[StepReport],
                       n: int) -> tuple[list[Exception | None], list[StepAssignment]]:
        """:meth:`report_steps` then :meth:`get_steps` for the same worker, as one call: what a worker's request asks.

        Answers ``(refused, assignments)``: one entry per report as
        :meth:`report_steps` gives, then up to ``n`` assignments as
        :meth:`get_steps` hands them out — the storage, the history and the
        listeners see exactly what the two calls would make, in the same
        order. One lock, one clock reading and one application of the
        effects (the reports' writes first, so the steps they made ready are
        in the queue to be handed out). An error of the hand-out (a closed
        broker) is raised after the reports are recorded.
        """
        with self._lock:
            st = self._state
            try:
                worker, now = self._reporter(worker_id)
            except Exception as exc:  # as report_steps; the hand-out then raises what get_steps would
                return [exc for _ in reports], self._take(worker_id, n)
            fx = Effects(raw=self._out.holding())  # events made after the answer when it answers first
            out = self._record(worker, now, reports, fx)
            if (self.worker_ttl is not None or n <= 0 or st.next_expiry <= now
                    or (st.delayed and st.delayed[0][0] <= now)):
                # a sweep or a prune comes between the two calls: applied as they would apply it
                try:
                    self._apply(fx)
                except Exception as exc:
                    out = [exc if e is None else e for e in out]
                return out, self._take(worker_id, n)
            try:
                self._write(fx)  # the reports' writes: what they queued is in the storage's queue now
            except Exception as exc:  # refused: nothing of the batch is published, as report_steps
                out = [exc if e is None else e for e in out]
                fx = Effects()
            else:
                fx.written()  # the hand-out's effects after the reports' events
            try:
                taken = self._hand(worker, now, n, fx)
            finally:
                self._apply(fx)
        return out, taken

    def _record(self, worker: Worker, now: float, reports: Iterable[StepReport], fx: Effects) -> list[Exception | None]:
        """Record ``reports`` into ``fx`` in order; a refused one's partial effects are cut (one entry per report)."""
        out: list[Exception | None] = []
        ops, events, report_one = fx.ops, fx.events, self._report
        for report in reports:
            n_ops, n_events = len(ops), len(events)
            try:
                report_one(worker, now, report, fx)
                out.append(None)
            except Exception as exc:  # handed back in the report's place
                if len(ops) != n_ops or len(events) != n_events:
                    fx.cut(n_ops, n_events)  # what a refused report began is not written
                out.append(exc)
        return out

    def _reporter(self, worker_id: str) -> tuple[Worker, float]:
        """The reporting worker (seen now) and the time of its report(s)."""
        if self._closed:
            self._check_open()
        worker = self._state.workers.get(worker_id) or self._worker(worker_id)
        now = worker.info.last_seen = self._clock()
        return worker, now

    def _report(self, worker: Worker, now: float, report: StepReport, fx: Effects) -> None:
        st = self._state
        run = st.runs.get(report.instance_id)
        if run is None:
            leases.release_ended(worker, report.instance_id, report.step_name, now)
            self._settled()
            if self.storage.load_run(report.instance_id) is None:
                raise UnknownRunError(f"unknown run: {report.instance_id!r}")
            raise StaleReportError(
                f"report for step {report.step_name!r} refused: run {report.instance_id!r} has ended"
            )
        leases.report(st, worker, run, report, now, self._lookup, fx)


__all__ = ["Handing"]
