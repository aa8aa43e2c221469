"""Resume a stored unfinished run: rebuild its live state from what the storage kept.

A broker that finds unfinished runs in its storage (a reopened DuckDB file)
resumes them: finished steps keep their outcomes (fed to the rules in the
order they finished), the skips and cancels those imply are recorded if the
storage had not seen them, and every step that was queued or running is
queued again (an attempt that was running ends as a lost one, as when its
worker dies: ``step_finished`` FAILED with ``lost``). Like the other transitions, :func:`resume` changes the
:class:`~fuseline_nb.broker.state.LiveState` and returns the effects.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow, Status
>>> from fuseline_nb.broker.state import Compiled, LiveState
>>> from fuseline_nb.workflow.runinfo import RunInfo, StepInfo
>>> st = LiveState(lease_seconds=60.0)
>>> c = Compiled(Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="w").to_schema())
>>> info = RunInfo("r1", "w", Status.RUNNING, {"one": StepInfo(Status.RUNNING, attempts=1)}, created_at=0.0)
>>> fx = resume(st, c, info, last_seq=2, now=5.0)
>>> [w[0] for w in fx.writes], [(e.seq, e.kind, e.attempt) for e in fx.events]
(['enqueue', 'save_step'], [(3, 'step_finished', 1), (4, 'step_queued', 0)])
"""

from __future__ import annotations

import logging

from ..workflow.rules import Outcome
from ..workflow.runinfo import RunInfo
from ..workflow.status import SKIP_CONDITION, Status
from ..workflow.value import Value, values_of
from .state import Compiled, LiveRun, LiveState, succeeded
from .transitions import Effects, enqueue, finish_run, record_derived

log = logging.getLogger(__name__)

#: The error of an attempt that was running when its broker stopped (announced as lost when its run resumes).
LOST = "the broker stopped while the step ran (history reopened); queued again"
RESUMED = {"reason": "resumed"}


def resume(st: LiveState, compiled: Compiled, info: RunInfo, last_seq: int, now: float) -> Effects:
    """Make the stored run ``info`` live again (its events continue after ``last_seq``)."""
    fx = Effects()
    run = LiveRun(info.run_id, compiled, values_of(info.input_values), info.created_at or now, st.dirty)
    st.runs[run.run_id] = run
    st.active.setdefault(run.key, {})[run.run_id] = None
    run.seq = last_seq
    known = compiled.plan.incoming
    for name, stored in info.steps.items():
        if name in known:
            run.infos.put(name, stored)
    tracker = run.tracker
    tracker.start()
    primary = [
        (s.finished_at or 0.0, n) for n, s in info.steps.items()
        if s.state in (Status.SUCCEEDED, Status.FAILED)
        or (s.state is Status.SKIPPED and s.skip_reason == SKIP_CONDITION)
    ]
    for _, name in sorted(primary):
        s = run.infos[name]
        if s.state is Status.SUCCEEDED:
            if s.value is not None and s.value.__class__ is not Value:
                run.infos.set_result(name, Value.of(s.value))  # run.results reads it
            outcome = succeeded(s.action or "default")
        elif s.state is Status.FAILED:
            outcome = Outcome.failed()
        else:
            outcome = Outcome.skipped_by_condition()
        # ready steps are queued below, all at once; derived skips/cancels are
        # recorded now (only those the storage had not seen yet)
        record_derived(run, tracker.finish(name, outcome), now, fx)
    if tracker.done:
        finish_run(st, run, now, fx)
        return fx
    pending = [n for n in compiled.plan.order if n in tracker.decided and n not in tracker.outcomes]
    for n in pending:
        pending_info = run.info(n)
        if pending_info.state is Status.RUNNING and pending_info.attempts:
            # the attempt that ran when the broker stopped is lost: it ends (one step_finished per attempt)
            fx.emit(run, now, "step_finished", n, Status.FAILED, pending_info.worker, pending_info.attempts,
                    {"error": LOST, "retry": pending_info.attempts, "lost": True})
        pending_info.state, pending_info.worker = Status.PENDING, None
    log.info("resuming run %s: %d step(s) queued again", run.run_id, len(pending))
    enqueue(run, pending, now, fx, RESUMED)
    return fx


__all__ = ["resume"]
