"""Transitions of held steps: assign, report, keep alive, expire, cancel, let a worker go.

Who holds which step is recorded once, in ``Worker.held`` (an
:class:`~fuseline_nb.broker.state.Assignment` per held step, in hand-out
order); only :func:`hold` and :func:`release` add and remove entries. Like
:mod:`fuseline_nb.broker.transitions`, these functions change the
:class:`~fuseline_nb.broker.state.LiveState` and return an
:class:`~fuseline_nb.broker.transitions.Effects`; they do no I/O.

===================  ===========================================  ==============================================
transition           changes                                      writes / events
===================  ===========================================  ==============================================
:func:`assign`       ``attempts`` += 1, RUNNING; an Assignment    ``save_step`` / ``step_started``
                     held with a lease (``next_expiry``); the timeout
                     clock starts if it is the worker's first
:func:`report`       the Assignment released (the next one's      what :func:`~.transitions.complete` writes
                     timeout clock starts); ``expired`` reset;
                     ``last_task``; then ``complete``
:func:`keep_alive`   every held lease extended; cancelled ones    none (returns the cancelled ``(run, step)``)
                     released
:func:`expire`       passed leases: queued again, or FAILED       ``enqueue``, ``save_step`` / ``step_finished``
                     after ``max_lease_requeues``; due retries    (lost), ``step_queued``; or ``complete``'s
                     queued
:func:`cancel`       unfinished steps CANCELLED, their held       ``save_step`` per step, ``finalize_run`` /
                     Assignments marked ``cancelled``; run ends   ``step_finished`` per step, ``run_finished``
:func:`unregister`   the worker forgotten; its steps queued       as :func:`requeue`
:func:`prune`        idle silent workers forgotten                none
===================  ===========================================  ==============================================

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> from fuseline_nb.broker.base import WorkerInfo
>>> from fuseline_nb.broker.state import Compiled, LiveState, Worker
>>> from fuseline_nb.broker.transitions import dispatch
>>> st = LiveState(lease_seconds=60.0)
>>> c = Compiled(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]).to_schema())
>>> run, _ = dispatch(st, c, "r1", {}, now=0.0)
>>> w = st.workers["w"] = Worker(WorkerInfo("w", 0.0, 0.0, name="w1"), {run.key})
>>> a, fx = assign(st, run, "one", w, now=1.0)
>>> (a.attempt, a.expires_at), list(w.held), [e.kind for e in fx.events]
((1, 61.0), [('r1', 'one')], ['step_started'])
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable
from heapq import heappop

from ..errors import StaleReportError
from ..workflow.events import make_event
from ..workflow.status import Status
from .base import Payload, StepAssignment, StepReport, WorkerInfo
from .registry import idle_workers
from .state import Assignment, Key, LiveRun, LiveState, Worker
from .transitions import Effects, Lookup, complete, enqueue, finish_run

log = logging.getLogger(__name__)
_RUNNING, _FAILED = Status.RUNNING, Status.FAILED  # enum members as globals: quicker to read on 3.11


def add_worker(st: LiveState, worker_id: str, name: str | None, keys: set[Key], now: float) -> Worker:
    """Register a worker for the workflows ``keys``; an unnamed one gets the first free ``w<N>``."""
    # The name is what views, events and SQL (steps.worker) show: the caller's
    # (a pool's w1, w2...), else the first free w<N>.
    if not name:
        used = {w.info.name for w in st.workers.values()}
        name = next(f"w{n}" for n in itertools.count(1) if f"w{n}" not in used)
    info = WorkerInfo(worker_id, now, now, None, sorted(f"{k[0]}@{k[1]}" for k in keys), name)
    worker = st.workers[worker_id] = Worker(info, keys)
    return worker


def hold(worker: Worker, a: Assignment, now: float) -> None:
    """Record that ``worker`` holds ``a``; its timeout clock starts if it is the worker's first."""
    held = worker.held
    held[(a.run_id, a.step)] = a
    if len(held) == 1 and a.timeout is not None:
        a.due = now + a.timeout


def release(worker: Worker, a: Assignment, now: float) -> None:
    """Forget that ``worker`` holds ``a``; the next one it holds starts (its timeout clock runs from ``now``)."""
    held = worker.held
    key = (a.run_id, a.step)
    first = next(iter(held.values())) is a
    del held[key]
    if first and held:
        b = next(iter(held.values()))
        if b.timeout is not None:
            b.running_timeout(now)


def assign(st: LiveState, run: LiveRun, step: str, worker: Worker, now: float,
           fx: Effects | None = None) -> tuple[StepAssignment, Effects]:
    """Hand ``step`` of ``run`` to ``worker`` as a new attempt with a lease (its effects added to ``fx``)."""
    if fx is None:
        fx = Effects()
    return hand_out(st, run, step, worker, now, fx), fx


def hand_out(st: LiveState, run: LiveRun, step: str, worker: Worker, now: float, fx: Effects) -> StepAssignment:
    """:func:`assign`, answering the assignment only (what ``get_steps`` calls per step)."""
    winfo = worker.info
    wid = winfo.worker_id
    label = winfo.name or wid
    info = run.infos.start(step, label, now)
    attempt = info.attempts
    deadline = now + st.lease_seconds
    run_id, (workflow_id, version), compiled = run.run_id, run.key, run.compiled
    timeouts = compiled.timeouts
    timeout = timeouts.get(step) if timeouts else None
    held = worker.held  # hold(), inline
    a = held[(run_id, step)] = Assignment(workflow_id, version, run_id, step, wid, attempt, deadline, timeout)
    if timeout is not None and len(held) == 1:
        a.due = now + timeout
    if deadline < st.next_expiry:
        st.next_expiry = deadline
    fx.save(run_id, step, info)
    run.seq = seq = run.seq + 1
    args = ("step_started", run_id, seq, now, step, _RUNNING, label, attempt, None)
    fx.events.append(args if fx.raw else make_event(*args))  # type: ignore[arg-type]
    slots = compiled.plan.incoming[step]
    results = run.results.of([e.source for e in slots]) if slots else {}
    payload: Payload = {"workflow_inputs": run.inputs, "results": results, "winners": run.tracker.winners(step)}
    return StepAssignment(workflow_id, run_id, step, payload, now, deadline, attempt, version, timeout)


def report(st: LiveState, worker: Worker, run: LiveRun, rep: StepReport, now: float,
           lookup: Lookup | None = None, fx: Effects | None = None) -> Effects:
    """Release the attempt ``rep`` reports and record its outcome; refuse a superseded attempt.

    Raises
    ------
    StaleReportError
        ``worker`` does not hold that attempt (its lease expired and the
        step was queued again, or another worker holds it).
    """
    step = rep.step_name
    held = worker.held
    key = (run.run_id, step)
    a = held.get(key)
    if a is None or a.attempt != rep.attempt:
        raise StaleReportError(
            f"report for step {step!r} attempt {rep.attempt} of run {run.run_id!r} "
            f"refused: that attempt is no longer assigned to worker {worker.info.worker_id!r} "
            "(its lease expired and the step was queued again)"
        )
    first = next(iter(held.values())) is a  # release(), inline
    del held[key]
    if first and held:
        b = next(iter(held.values()))
        if b.timeout is not None:
            b.running_timeout(now)
    if run.expired:
        run.expired.pop(step, None)  # a report: the count of expired leases starts over
    state = rep.state
    if state.__class__ is not Status:
        state = Status(state)
    worker.last = (run.key[0], run.run_id, step, state is not _FAILED)  # its LastTask, made when listed
    if fx is None:
        fx = Effects()
    complete(st, run, step, state, rep, now, fx, lookup=lookup)
    return fx


def release_ended(worker: Worker, run_id: str, step: str, now: float) -> None:
    """A report for a run that has ended: its worker no longer holds the (cancelled) step."""
    a = worker.held.get((run_id, step))
    if a is not None:
        release(worker, a, now)


def keep_alive(st: LiveState, worker: Worker, now: float) -> list[tuple[str, str]]:
    """Extend the lease of everything ``worker`` holds; release and return what was cancelled."""
    deadline = now + st.lease_seconds
    cancelled: list[tuple[str, str]] = []
    for key, a in list(worker.held.items()):
        if a.cancelled:
            cancelled.append(key)
            release(worker, a, now)
            continue
        a.deadline = deadline  # later than before: next_expiry stays a lower bound
    return cancelled


def expire(st: LiveState, now: float, lookup: Lookup | None = None) -> Effects:
    """Leases that passed go back to the queue (or FAIL); retries whose wait is over are queued."""
    fx = Effects()
    if st.next_expiry <= now:
        passed: list[tuple[float, str, str, Worker, Assignment]] = []
        nearest = math.inf
        for worker in st.workers.values():
            for a in worker.held.values():
                if a.deadline <= now:
                    passed.append((a.deadline, a.run_id, a.step, worker, a))
                elif a.deadline < nearest:
                    nearest = a.deadline
        st.next_expiry = nearest
        passed.sort(key=lambda p: p[:3])
        for _, run_id, _, worker, a in passed:
            run = st.runs.get(run_id)
            if run is None or a.cancelled:  # its run ended: the silent worker is not told any more
                release(worker, a, now)
            else:
                lease_expired(st, run, worker, a, now, fx, lookup)
    delayed = st.delayed
    while delayed and delayed[0][0] <= now:
        _, run_id, step = heappop(delayed)
        run = st.runs.get(run_id)
        if run is not None:
            enqueue(run, (step,), now, fx, {"reason": "retry"})
    return fx


def lease_expired(st: LiveState, run: LiveRun, worker: Worker, a: Assignment, now: float, fx: Effects,
                  lookup: Lookup | None = None) -> None:
    """Queue a step whose lease passed again, or FAIL it after ``max_lease_requeues`` in a row."""
    step = a.step
    n = run.expired[step] = run.expired.get(step, 0) + 1
    if n < st.max_lease_requeues:
        requeue(run, worker, a, "lease expired", now, fx)
        return
    del run.expired[step]
    release(worker, a, now)
    error = (f"LeaseExpiredError: step {step!r} went {n} leases of {st.lease_seconds:g} s in a row "
             "without a report (its worker hung or died unseen, or the step held the GIL so no "
             "keep-alive got out); not queued again: raise lease_seconds, or give the step a "
             "StepTimeoutPolicy")
    log.warning("step %r of run %s: %s", step, run.run_id, error)
    rep = StepReport(run.key[0], run.run_id, step, Status.FAILED, attempt=a.attempt, error=error, finished_at=now)
    complete(st, run, step, Status.FAILED, rep, now, fx, retryable=False, lookup=lookup)


def requeue(run: LiveRun, worker: Worker, a: Assignment, reason: str, now: float, fx: Effects) -> None:
    """The attempt ``a`` is lost (``reason``): it ends FAILED-lost and the step is queued again."""
    release(worker, a, now)
    step = a.step
    info = run.info(step)
    info.state = Status.PENDING
    label, info.worker = info.worker or a.worker_id, None
    log.warning("step %r of run %s attempt %d: %s; queued again", step, run.run_id, a.attempt, reason)
    # the lost attempt ends (one step_finished per attempt), then the step is queued again
    fx.emit(run, now, "step_finished", step, Status.FAILED, label, a.attempt,
            {"error": reason, "retry": a.attempt, "lost": True})
    fx.emit(run, now, "step_queued", step, Status.PENDING, label, a.attempt, {"reason": reason})
    info.queued_at = now
    fx.write("enqueue", run.run_id, step)
    fx.save(run.run_id, step, info)


def cancel(st: LiveState, run: LiveRun, reason: str | None, now: float) -> Effects:
    """The user cancelled ``run``: its unfinished steps are CANCELLED and it ends.

    Held steps stay held, marked ``cancelled``, until their workers are told
    (:func:`keep_alive`) or go; their reports are refused.
    """
    fx = Effects()
    run_id = run.run_id
    held: dict[str, Assignment] = {}
    for w in st.workers.values():
        for (rid, step), a in w.held.items():
            if rid == run_id:
                a.cancelled = True
                held[step] = a
    detail: dict[str, object] = {"cause": "run cancelled"}
    if reason:
        detail["reason"] = reason
    for step in run.tracker.cancel():
        info = run.info(step)
        running = held.get(step)
        info.state, info.finished_at = Status.CANCELLED, now
        fx.save(run_id, step, info)
        fx.emit(run, now, "step_finished", step, Status.CANCELLED, running.worker_id if running else None,
                info.attempts if running else 0, detail)
    log.info("run %s cancelled (%d step(s) were running)%s", run_id, len(held), f": {reason}" if reason else "")
    finish_run(st, run, now, fx)
    return fx


def unregister(st: LiveState, worker_id: str, now: float) -> Effects:
    """Forget a worker; its unfinished assignments go back to the queue at once."""
    fx = Effects()
    worker = st.workers.pop(worker_id, None)
    if worker is None:
        return fx
    for a in list(worker.held.values()):
        run = st.runs.get(a.run_id)
        if run is None or a.cancelled:
            release(worker, a, now)
        else:
            requeue(run, worker, a, "worker gone", now, fx)
    return fx


def prune(st: LiveState, now: float, ttl: float) -> list[str]:
    """Forget the workers holding nothing that were not heard from for over ``ttl`` seconds; return their ids."""
    gone = idle_workers(((wid, w.info.last_seen, bool(w.held)) for wid, w in st.workers.items()), now, ttl)
    for wid in gone:
        del st.workers[wid]
        st.pruned[wid] = now
    return gone


def overdue(workers: Iterable[Worker], now: float) -> tuple[list[Assignment], float | None]:
    """The running assignments whose step timeout passed, and seconds until the next one passes.

    Only a worker's first held step runs; one waiting behind it with a
    timeout cannot pass it sooner than its ``timeout`` from now, so that is
    when to look again (else the caller would stop watching, and the step's
    timeout would never be enforced once it starts).
    """
    late: list[Assignment] = []
    nearest: float | None = None
    for w in workers:
        first = True
        for a in w.held.values():
            if a.cancelled:
                first = False
                continue
            if first:
                due = a.due
                if due is not None:
                    if due <= now:
                        late.append(a)
                    elif nearest is None or due - now < nearest:
                        nearest = due - now
                first = False
            elif a.timeout is not None and (nearest is None or a.timeout < nearest):
                nearest = a.timeout
    return late, nearest


__all__ = ["add_worker", "assign", "cancel", "expire", "hand_out", "hold", "keep_alive", "lease_expired", "overdue", "prune", "release",
           "release_ended", "report", "requeue", "unregister"]
