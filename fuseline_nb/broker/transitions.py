"""Transitions of the broker's live state: what a step's outcome changes, writes and publishes.

Each function takes the :class:`~fuseline_nb.broker.state.LiveState` (or a
run of it), changes it, and puts what the change implies into an
:class:`Effects`: the storage calls to make (``writes``, in order) and the
events to record and publish (``events``). They do no I/O: the broker
(:mod:`fuseline_nb.broker.core`) applies the effects, and tests assert the
state, writes and events a transition leaves. Transitions that hold,
release and expire assignments are in :mod:`fuseline_nb.broker.leases`;
resuming a stored run is :mod:`fuseline_nb.broker.resume`.

=================  ================================================  ===========================================
transition         changes                                           writes / events
=================  ================================================  ===========================================
:func:`register`   a ``Compiled`` for a new or edited definition     ``register_workflow``
:func:`dispatch`   a new ``LiveRun``; its roots decided              ``create_run``, ``enqueue`` + ``save_step``
                                                                     per root / ``run_dispatched``, ``step_queued``
:func:`enqueue`    ``queued_at`` of each step                        ``enqueue``, ``save_step`` / ``step_queued``
:func:`complete`   the step's ``StepInfo``, ``results``, ``failures``, ``set_result`` (SUCCEEDED), ``save_step``,
                   the rules' ``tracker``; a retry, or what became   ``cache_put`` / ``step_finished``, then what
                   ready, skipped, cancelled; the end of the run     :func:`apply` and :func:`finish_run` add
:func:`apply`      skips and cancels the rules derived; ready        ``save_step`` per derived step / their
                   steps served from the cache or queued             ``step_finished``; :func:`enqueue`
:func:`finish_run` recovered failures marked; the run leaves         ``save_step`` (recovered), ``finalize_run``
                   ``runs`` and ``active`` (into ``ending``)         / ``run_finished``
=================  ================================================  ===========================================

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> from fuseline_nb.broker.state import Compiled, LiveState
>>> st = LiveState(lease_seconds=60.0)
>>> c = Compiled(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]).to_schema())
>>> run, fx = dispatch(st, c, "r1", {}, now=0.0)
>>> [w[0] for w in fx.writes], [e.kind for e in fx.events]
(['create_run', 'enqueue', 'save_step'], ['run_dispatched', 'step_queued'])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from heapq import heappush
from typing import Any

from ..errors import SchemaMismatchError, UnknownActionError
from ..workflow.events import make_event
from ..workflow.readiness import NOTHING
from ..workflow.rules import Changes, Outcome, resolve_action
from ..workflow.schema import DEFAULT_ACTION, WorkflowSchema
from ..workflow.status import SKIP_CONDITION, SKIP_NOT_REACHED, Status
from ..workflow.value import Value, preview
from ._transitions_effects import Effects
from .base import StepReport
from .cache import CacheEntry, RunCache, new_entry
from .state import _OUTCOMES, Compiled, LiveRun, LiveState, succeeded

#: Looks cache keys up: ``{key: (entry, result)}`` for the keys that hit (a read of the cache store).
Lookup = Callable[[list[str]], dict[str, tuple[CacheEntry, Any]]]

_FAILED = Outcome.failed()
# Enum members as globals: ``Status.X`` is a slow lookup on Python 3.11 (several per step here)
_PENDING, _S_SUCCEEDED, _S_FAILED, _S_SKIPPED = Status.PENDING, Status.SUCCEEDED, Status.FAILED, Status.SKIPPED
_SKIPPED = Outcome.skipped_by_condition()


def register(st: LiveState, schema: WorkflowSchema, *, replace: bool = True) -> tuple[Compiled, Effects]:
    """Know ``schema`` under its ``(workflow_id, version)``; a different structure under a known key is refused.

    The same structure with other contents (an edited policy, a function
    body's new fingerprint: a cell edited and run again) becomes the key's
    definition for the runs dispatched from now on and is written again
    (``register_workflow``), when ``replace`` (a submit); runs already going
    keep the ``Compiled`` they started with. ``replace=False`` (a worker
    registering the copy it holds, perhaps an older one) never displaces the
    known definition. The identical object, or an equal one, costs nothing.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, RetryPolicy, Workflow
    >>> def wf(n):
    ...     return Workflow(outputs=[FunctionStep(abs, name="a", policies=[RetryPolicy(n)])], workflow_id="w")
    >>> st = LiveState(lease_seconds=60.0)
    >>> first, fx = register(st, wf(1).to_schema())
    >>> register(st, wf(1).to_schema())[1].ops  # equal: nothing to write
    []
    >>> newer, fx = register(st, wf(2).to_schema())
    >>> newer.retries["a"][0], [op for op, _ in fx.ops], st.compiled[("w", "1")] is newer
    (2, ['register_workflow'], True)
    >>> register(st, first.schema, replace=False)[0] is newer  # an older copy from a worker
    True

    Raises
    ------
    SchemaMismatchError
        The key is registered with another structure (names what differs).
    """
    fx = Effects()
    key = (schema.workflow_id, schema.version)
    known = st.compiled.get(key)
    if known is not None:
        if schema is known.schema:
            return known, fx
        if known.structure_key() != schema.structure_key():
            diff = "; ".join(known.schema.differences(schema))
            raise SchemaMismatchError(
                f"workflow {schema.workflow_id!r} version {schema.version!r} is already "
                f"registered with a different definition ({diff}): give the new "
                "definition another version or workflow_id"
            )
        # the same structure: the newest submitted contents win (compared only when not the same object)
        if not replace or schema == known.schema:
            return known, fx
    compiled = st.compiled[key] = Compiled(schema)
    fx.write("register_workflow", schema)
    return compiled, fx


def dispatch(st: LiveState, compiled: Compiled, run_id: str, inputs: dict[str, Any], now: float,
             cache: RunCache | None = None, lookup: Lookup | None = None) -> tuple[LiveRun, Effects]:
    """A new run of ``compiled``: created, announced, its roots queued (or served from the cache)."""
    fx = Effects()
    run = LiveRun(run_id, compiled, inputs, now, st.dirty)
    run.cache = cache
    st.runs[run_id] = run
    st.active.setdefault(run.key, {})[run_id] = None
    schema = compiled.schema
    fx.write("create_run", run_id, schema.workflow_id, schema.version, inputs, compiled.plan.order, now)
    fx.emit(run, now, "run_dispatched", None, None, None, 0, {"workflow_id": schema.workflow_id})
    apply(st, run, Changes(ready=run.tracker.start()), now, fx, lookup)
    return run, fx


def enqueue(run: LiveRun, steps: Iterable[str], now: float, fx: Effects,
            detail: dict[str, Any] | None = None) -> None:
    """Queue ``steps`` of ``run`` (PENDING, ``queued_at = now``)."""
    run_id, records = run.run_id, run.infos
    if steps.__class__ is not list:
        steps = list(steps)
    if not steps:
        return
    fresh = records.queue_all(steps, now)  # type: ignore[arg-type]  # in the run's arrays: no StepInfo per queued step
    seq, events = run.seq, fx.events
    if fx.raw:  # made after the answer (see Effects)
        for step in steps:
            seq += 1
            events.append(("step_queued", run_id, seq, now, step, _PENDING, None, 0, detail))  # type: ignore[arg-type]
    else:
        for step in steps:
            seq += 1
            events.append(make_event("step_queued", run_id, seq, now, step, _PENDING, None, 0, detail))
    run.seq = seq
    # an enqueue and a save_step per step (records made as they are saved; one for all when all are fresh)
    fx.ops.append(("queued", (run_id, steps, records, now if fresh else None)))


def complete(st: LiveState, run: LiveRun, step: str, state: Status, report: StepReport, now: float,
             fx: Effects, retryable: bool = True, lookup: Lookup | None = None) -> None:
    """Record one attempt's outcome (its assignment already released) and decide what follows.

    A SUCCEEDED result's action is resolved (an unknown action FAILS the
    step); a FAILED attempt is queued again while the step's ``RetryPolicy``
    allows (at once, or into ``delayed``); otherwise the outcome goes to the
    rules and :func:`apply` records what they decided.
    """
    info = run.infos.open(step)
    info.finished_at = report.finished_at or now
    if report.started_at:
        info.started_at = report.started_at
    value = report.result
    run_id = run.run_id
    if state is _S_SUCCEEDED:
        candidate = report.action
        if candidate is None:  # a worker names the action a str result chose; a direct caller may not
            candidate = json.loads(value.json) if value.__class__ is Value and value.type_name == "str" \
                and value.json else value
        if value is not None and value.__class__ is not Value:
            value = Value.of(value)  # a direct caller's object: made into a value here, once
        if value is not None:  # named in the error if the notebook cannot open it
            value.origin = f"the result of step {step!r} of run {run_id}"
        if isinstance(candidate, str):
            try:
                info.action = resolve_action(run.compiled.plan, step, candidate)
            except UnknownActionError as exc:
                state, report.error, retryable = _S_FAILED, f"UnknownActionError: {exc}", False
        else:  # what resolve_action answers for anything but a str
            info.action = DEFAULT_ACTION
    if state is _S_SUCCEEDED:
        action = info.action or DEFAULT_ACTION
        outcome = _OUTCOMES.get(action) or succeeded(action)
        info.error = info.traceback = None
        info.__dict__["result"] = value  # (StepInfo.result's setter does this); run.results reads it
        fx.result(run_id, step, value)
        cache = run.cache
        # a newer definition of the workflow was submitted since this run started: the workers hold
        # that one, so this result may come from the newer code, not from the code its key names
        if cache is not None and st.compiled.get(run.key) is run.compiled:
            entry = new_entry(cache, run_id, step, info.action, value, now)
            if entry is not None:
                fx.write("cache_put", entry, value)
    elif state is _S_FAILED:
        if report.error and report.error.startswith("ValueLoadError:"):
            retryable = False  # the step never ran: a retry would read the same bytes
        fails = run.failures[step] = run.failures.get(step, 0) + 1
        max_attempts, wait = run.compiled.retries.get(step, (1, 0))
        info.error, info.traceback = report.error or "failed", report.traceback
        if retryable and fails < max_attempts:
            # this attempt ends (one step_finished per attempt); the retry is a new queueing
            fx.emit(run, now, "step_finished", step, _S_FAILED, info.worker, info.attempts,
                    {"error": info.error, "retry": fails})
            info.state = _PENDING
            fx.save(run_id, step, info)
            if wait:
                heappush(st.delayed, (now + wait, run_id, step))
            else:
                enqueue(run, (step,), now, fx, {"reason": "retry"})
            return
        outcome = _FAILED
    elif state is _S_SKIPPED:
        outcome = _SKIPPED
        info.skip_reason = SKIP_CONDITION
    else:
        raise ValueError(f"a report's state must be SUCCEEDED, FAILED or SKIPPED, not {state}")
    info.state = state
    fx.save(run_id, step, info)
    detail: dict[str, Any] = {"action": info.action, "error": info.error, "skip_reason": info.skip_reason}
    if report.conditions:
        detail["conditions"] = report.conditions
    if state is _S_SUCCEEDED and value is not None:
        detail["result_preview"] = value.preview  # for traces and views only
    if run.cache is not None:
        detail["cached"] = False  # a run with caching on says so on every step_finished
    run.seq = seq = run.seq + 1
    args = ("step_finished", run_id, seq, now, step, state, info.worker, info.attempts, detail)
    fx.events.append(args if fx.raw else make_event(*args))  # type: ignore[arg-type]
    changes = run.tracker.finish(step, outcome)
    if changes is not NOTHING:
        apply(st, run, changes, now, fx, lookup)
    elif len(run.tracker.outcomes) == len(run.compiled.plan.order):  # apply's last part: the run's end
        finish_run(st, run, now, fx)


def apply(st: LiveState, run: LiveRun, changes: Changes, now: float, fx: Effects,
          lookup: Lookup | None = None) -> None:
    """Record what the rules decided: derived skips and cancels, then queue (or serve) the ready steps."""
    if changes.skipped or changes.cancelled:
        record_derived(run, changes, now, fx)
    ready = changes.ready
    if ready and run.cache is not None and lookup is not None:
        ready = serve(run, ready, now, fx, lookup)
    if ready:
        enqueue(run, ready, now, fx)
    if run.tracker.done:
        finish_run(st, run, now, fx)


def record_derived(run: LiveRun, changes: Changes, now: float, fx: Effects) -> None:
    """Record the skips and cancels the rules derived (a step already in that state is left)."""
    for names, state in ((changes.skipped, Status.SKIPPED), (changes.cancelled, Status.CANCELLED)):
        for n in names:
            info = run.info(n)
            if info.state is not state:
                info.state, info.finished_at = state, now
                if state is Status.SKIPPED:
                    info.skip_reason = SKIP_NOT_REACHED
                fx.save(run.run_id, n, info)
                detail: dict[str, Any] = {"skip_reason": info.skip_reason, **run.tracker.cause(n)}
                fx.emit(run, now, "step_finished", n, state, None, 0, detail)


def finish_run(st: LiveState, run: LiveRun, now: float, fx: Effects) -> None:
    """End a run whose every step has an outcome: mark recovered failures, finalize, forget it."""
    tracker = run.tracker
    for name in tracker.recovered_failures():
        info = run.info(name)
        if not info.recovered:
            info.recovered = True
            fx.save(run.run_id, name, info)
    state = tracker.run_state()
    fx.write("finalize_run", run.run_id, state, now)
    fx.emit(run, now, "run_finished", None, state, None, 0, {"workflow_id": run.key[0]})
    del st.runs[run.run_id]
    st.active[run.key].pop(run.run_id, None)
    st.ending[run.run_id] = run  # readable until its run_finished is published


def serve(run: LiveRun, ready: list[str], now: float, fx: Effects, lookup: Lookup) -> list[str]:
    """Complete the ready steps whose cache keys hit (and what those make ready); return the misses.

    Iterative, so a long chain of hits does not recurse.
    """
    cache = run.cache
    assert cache is not None
    incoming, tracker = run.compiled.plan.incoming, run.tracker
    misses: list[str] = []
    while ready:
        keys: dict[str, str | None] = {}
        for step in ready:
            key = cache.key(step, [e.source for e in incoming[step]], run.results, tracker.winners(step))
            # a step that may not be reused still gets its key: it stores its result under it
            keys[step] = key if cache.cacheable.get(step) and step not in cache.rerun else None
        wanted = [k for k in keys.values() if k is not None]
        hits = lookup(wanted) if wanted else {}
        for op, args in fx.ops:  # an entry put earlier in this transition is not written yet
            if op == "cache_put" and args[0].key in keys.values() and args[0].key not in hits:
                hits[args[0].key] = (args[0], args[1])
        following: list[str] = []
        for step in ready:
            key = keys[step]
            found = hits.get(key) if key is not None else None
            if found is None:
                misses.append(step)
                continue
            entry, result = found
            cache.result_fps[step] = entry.result_fingerprint
            fx.write("cache_hit", entry.key, now)
            fx.write("cache_mark", run.run_id, step, entry.run_id)
            following.extend(complete_cached(run, step, entry, result, now, fx))
        ready = following
    return misses


def complete_cached(run: LiveRun, step: str, entry: CacheEntry, result: Any, now: float,
                    fx: Effects) -> list[str]:
    """Record a cache hit as the step's SUCCEEDED outcome; return the steps it made ready."""
    info = run.info(step)
    info.state, info.action, info.cached, info.cached_from = Status.SUCCEEDED, entry.action, True, entry.run_id
    info.queued_at = info.started_at = info.finished_at = now
    info.result = result  # run.results reads it
    fx.result(run.run_id, step, result)
    fx.save(run.run_id, step, info)
    detail: dict[str, Any] = {"action": info.action, "error": None, "skip_reason": None, "cached": True,
                              "cached_from": entry.run_id,
                              "result_preview": result.preview if result.__class__ is Value else preview(result)}
    fx.emit(run, now, "step_finished", step, Status.SUCCEEDED, None, 0, detail)
    changes = run.tracker.finish(step, succeeded(entry.action or "default"))
    if changes.skipped or changes.cancelled:
        record_derived(run, changes, now, fx)
    return list(changes.ready)


__all__ = ["Effects", "Lookup", "apply", "complete", "complete_cached", "dispatch", "enqueue", "finish_run",
           "record_derived", "register", "serve"]
