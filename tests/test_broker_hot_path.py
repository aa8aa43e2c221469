"""What the broker's per-step shortcuts must keep: a stray queue entry never runs a step twice, and the
readiness rules forget finished steps in sweeps without forgetting what they decided.

``get_steps`` decides whether a queue entry may be handed out from the step's
record (running, or finished: not again) instead of the run's outcomes;
``Readiness.finish`` no longer takes each finished step out of its set of
decided steps, it sweeps them out once the set has doubled.
"""

from __future__ import annotations

from itertools import pairwise

from fuseline_nb import FunctionStep, RetryPolicy, Workflow
from fuseline_nb.broker import MemoryBroker, StepReport
from fuseline_nb.workflow.plan import Outcome, Plan
from fuseline_nb.workflow.readiness import Readiness
from fuseline_nb.workflow.schema import EdgeSchema, StepSchema, WorkflowSchema
from fuseline_nb.workflow.status import Status


def _report(a, state=Status.SUCCEEDED):  # type: ignore[no-untyped-def]
    error = None if state is Status.SUCCEEDED else "RuntimeError: no"
    return StepReport(a.workflow_id, a.instance_id, a.step_name, state, 1, attempt=a.attempt, error=error)


def test_stray_queue_entries_hand_out_only_a_step_that_may_run_again() -> None:
    gate = FunctionStep(lambda: "yes", name="gate")
    took, other = FunctionStep(lambda: 1, name="took"), FunctionStep(lambda: 2, name="other")
    (gate - "yes") >> took
    (gate - "no") >> other
    flaky = FunctionStep(lambda: 3, name="flaky", policies=[RetryPolicy(max_retries=2)])
    slow = FunctionStep(lambda: 4, name="slow")
    wf = Workflow(outputs=[took, other, flaky, slow], workflow_id="stray")
    broker = MemoryBroker()
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    first = {a.step_name: a for a in broker.get_steps(wid, 8)}
    assert sorted(first) == ["flaky", "gate", "slow"]
    assert broker.report_steps(wid, [StepReport(first["gate"].workflow_id, run_id, "gate", Status.SUCCEEDED,
                                                "yes", attempt=1),
                                     _report(first["flaky"], Status.FAILED)]) == [None, None]
    # stray entries: a running step, a finished one, a skipped one, and the retried one (queued again anyway)
    for step in ("slow", "gate", "other", "flaky"):
        broker.storage.enqueue(run_id, step)
    handed = [(a.step_name, a.attempt) for a in broker.get_steps(wid, 8)]
    assert handed == [("took", 1), ("flaky", 2)]
    assert broker.get_steps(wid, 8) == []
    started = [e.step for e in broker.events(run_id) if e.kind == "step_started"]
    assert sorted(started) == ["flaky", "flaky", "gate", "slow", "took"]


def _chain(n: int) -> WorkflowSchema:
    names = [f"s{i}" for i in range(n)]
    return WorkflowSchema("chain", steps=tuple(StepSchema(s) for s in names),
                          edges=tuple(EdgeSchema(a, b) for a, b in pairwise(names)))


def test_a_long_chain_keeps_its_decided_set_small_and_decides_each_step_once() -> None:
    n = 20_000
    r = Readiness(Plan.from_schema(_chain(n)))
    assert r.start() == ["s0"]
    for i in range(n - 1):
        ch = r.finish(f"s{i}", Outcome.succeeded())
        assert list(ch.ready) == [f"s{i + 1}"]
        assert list(r.finish(f"s{i}", Outcome.succeeded()).ready) == []  # a late duplicate decides nothing
        assert len(r._open) <= 2 * 4096 + 2  # swept: not one entry per finished step
    assert f"s{n - 1}" in r.decided and "s0" in r.decided and len(r.decided) == n
    assert list(r.decided)[-1] == f"s{n - 1}" and not r.done
    r.finish(f"s{n - 1}", Outcome.succeeded())
    assert r.done and r.run_state() is Status.SUCCEEDED and len(r.decided) == n


def test_a_run_reads_its_results_from_its_step_records() -> None:
    a, b, c = FunctionStep(lambda: 1, name="a"), FunctionStep(lambda: 2, name="b"), FunctionStep(lambda: 3, name="c")
    a >> c
    b >> c
    wf = Workflow(outputs=[c], workflow_id="results")
    broker = MemoryBroker()
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    got = {x.step_name: x for x in broker.get_steps(wid, 2)}
    ok = StepReport(got["a"].workflow_id, run_id, "a", Status.SUCCEEDED, {"rows": 3}, attempt=1)
    assert broker.report_steps(wid, [ok]) == [None]
    run = broker._state.runs[run_id]
    assert dict(run.results) == {"a": run.infos["a"].value} and "b" not in run.results and len(run.results) == 1
    # b's report and c's hand-out in one call: c's payload reads b's result from its still open record
    refused, (cx,) = broker.report_and_get(wid, [StepReport(got["b"].workflow_id, run_id, "b", Status.SUCCEEDED,
                                                            [4, 5], attempt=1)], 1)
    assert refused == [None] and cx.step_name == "c" and cx.results == {"a": {"rows": 3}, "b": [4, 5]}
    assert set(run.results) == {"a", "b"} and run.results["b"].preview == "[4, 5]"
