"""Fuseline's defects, each pinned so fuseline_nb never repeats it.

One test (or a small group) per defect; the docstring of each says what
Fuseline does.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from fuseline_nb import (
    AsyncBatchWorkflow,
    AsyncParallelBatchWorkflow,
    AsyncStep,
    AsyncWorkflow,
    BatchWorkflow,
    Depends,
    FunctionStep,
    PoolEngine,
    Status,
    Step,
    StepTimeoutPolicy,
    Workflow,
)
from fuseline_nb.broker import MemoryBroker, StepReport
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.errors import StaleReportError
from fuseline_nb.worker import ProcessEngine
from fuseline_nb.workflow.policies import (
    RetryPolicy,
    WorkflowPolicy,
    get_policy_class,
    policy_from_spec,
)


def _drain(wf, broker, *inputs):
    client = LocalBrokerClient(broker)
    run_ids = [wf.dispatch(client, i) for i in inputs or ({},)]
    ProcessEngine(client, [wf]).work()
    return [broker.get_run(r) for r in run_ids]


def _add(x: int, y: int = 0) -> int:
    return x + y


# -- inputs of one run leaking into the next -------------------------------------
def test_inputs_do_not_leak_between_in_process_runs():
    """Fuseline keeps ``wf.params`` across runs: a later run sees old inputs."""
    wf = Workflow(outputs=[FunctionStep(_add)])
    assert wf.run({"x": 1, "y": 5}) == 6
    assert wf.run({"x": 1}) == 1

    class Keyword(Step):
        def run_step(self, **inputs):
            return sorted(inputs)

    kw = Workflow(outputs=[Keyword()])
    assert kw.run({"a": 1, "b": 2}) == ["a", "b"]
    assert kw.run({"c": 3}) == ["c"]


def test_inputs_do_not_leak_between_runs_on_one_worker():
    """Fuseline's ProcessEngine does ``workflow.params.update(inputs)`` and never clears."""
    wf = Workflow(outputs=[FunctionStep(_add)], workflow_id="leak")
    first, second = _drain(wf, MemoryBroker(), {"x": 1, "y": 5}, {"x": 1})
    assert first.steps["_add"].result == 6
    assert second.steps["_add"].result == 1


def test_inputs_do_not_leak_between_batch_runs():
    wf = BatchWorkflow(outputs=[FunctionStep(_add)])
    assert wf.run([{"x": 1, "y": 5}, {"x": 1}, {"x": 2, "y": 2}]) == [6, 1, 4]
    assert wf.run([{"x": 1, "y": 5}, {"x": 1}], PoolEngine(2)) == [6, 1]


# -- a timeout that fires only after the step ends -------------------------------
class Hang(Step):
    def run_step(self, seconds: float) -> str:
        time.sleep(seconds)
        return "finished"


def test_timeout_returns_on_time_in_process():
    """Fuseline's ``with ThreadPoolExecutor`` waits for the thread: the 'timeout' comes after 3 s."""
    wf = Workflow(outputs=[Hang(policies=[StepTimeoutPolicy(0.2)])])
    t0 = time.perf_counter()
    assert wf.run({"seconds": 3}) is None
    assert time.perf_counter() - t0 < 1.5
    assert wf.last_run.steps["Hang"].error == "TimeoutError: step exceeded 0.2 s"


def test_timeout_returns_on_time_on_a_worker_and_for_async_steps():
    wf = Workflow(outputs=[Hang(policies=[StepTimeoutPolicy(0.2)])], workflow_id="timeout")
    t0 = time.perf_counter()
    (info,) = _drain(wf, MemoryBroker(), {"seconds": 3})
    assert time.perf_counter() - t0 < 1.5
    assert info.state is Status.FAILED

    class AsyncHang(AsyncStep):
        async def run_step_async(self, seconds: float) -> None:
            await asyncio.sleep(seconds)

    awf = AsyncWorkflow(outputs=[AsyncHang(policies=[StepTimeoutPolicy(0.2)])])
    t0 = time.perf_counter()
    asyncio.run(awf.run_async({"seconds": 3}))
    assert time.perf_counter() - t0 < 1.5
    assert awf.state is Status.FAILED


# -- an OR join run twice by the broker ----------------------------------------------
def test_or_join_runs_once_on_the_broker():
    """Fuseline's broker may enqueue the OR successor again after it was fetched."""
    calls = []

    def p1() -> str:
        return "p1"

    def p2() -> str:
        return "p2"

    def join(v: str = Depends(p1, p2)) -> str:
        calls.append(v)
        return v

    wf = Workflow(outputs=[FunctionStep(join)], workflow_id="or-once")
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client)
    w1, w2 = ProcessEngine(client, [wf], name="w1"), ProcessEngine(client, [wf], name="w2")
    a1, a2 = client.get_step(w1.worker_id), client.get_step(w2.worker_id)
    assert {a1.step_name, a2.step_name} == {"p1", "p2"}
    w2.run_assignment(a2)  # the second member finishes first...
    j = client.get_step(w1.worker_id)
    assert j.step_name == "join"
    w1.run_assignment(a1)  # ...then the first: no second join
    assert client.get_step(w2.worker_id) is None
    w1.run_assignment(j)
    assert calls == [a2.step_name]
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED and info.steps["join"].attempts == 1


# -- an AND join ignoring routing ------------------------------------------------------
def _diamond(pick_edge: str):
    route = FunctionStep(lambda pick: pick, name="route")
    left = FunctionStep(lambda: 1, name="left")  # not an action: routes "default"
    right = FunctionStep(lambda: 2, name="right")
    join_runs: list[int] = []
    join = FunctionStep(lambda: join_runs.append(1) or "joined", name="join")
    (route - "left") >> left
    (route - "right") >> right
    if pick_edge == "default":
        (left | right) >> join  # merging branches is an OR group (an AND join here is refused)
    else:  # the join is only reached when the branch returns "go"
        (left - "go") >> join
    return Workflow(outputs=[join], workflow_id=f"diamond-{pick_edge}"), join_runs


@pytest.mark.parametrize("path", ["local", "broker"])
def test_and_join_follows_routing(path):
    """Fuseline counts a join's predecessors regardless of the branch taken: in
    process the join waits forever for the branch not taken (it stays PENDING);
    its broker looks only at predecessor states, never at edge actions. Here
    the merge of two branches (an OR group) runs once on the branch taken."""
    wf, runs = _diamond("default")
    if path == "local":
        wf.run({"pick": "left"})
        states = {n: s.state for n, s in wf.last_run.steps.items()}
    else:
        (info,) = _drain(wf, MemoryBroker(), {"pick": "left"})
        states = {n: s.state for n, s in info.steps.items()}
    assert states == {"route": Status.SUCCEEDED, "left": Status.SUCCEEDED, "right": Status.SKIPPED,
                      "join": Status.SUCCEEDED}
    assert runs == [1]

    wf2, runs2 = _diamond("action")  # left does not return "go": no edge into join is taken
    if path == "local":
        wf2.run({"pick": "left"})
        info2 = wf2.last_run
    else:
        (info2,) = _drain(wf2, MemoryBroker(), {"pick": "left"})
    assert info2.steps["join"].state is Status.SKIPPED
    assert info2.steps["join"].skip_reason == "not_reached"
    assert runs2 == []
    assert info2.state is Status.SUCCEEDED


# -- a failure not cancelling downstream in the broker -----------------------------
def test_broker_cancels_downstream_of_a_failure_and_finishes_the_run():
    """Fuseline's broker enqueues nothing after a failure and sets nothing CANCELLED:
    downstream stays PENDING forever and the run never ends as FAILED."""

    def boom() -> int:
        raise ValueError("bad input")

    def mid(v: int = Depends(boom)) -> int:
        return v

    def last(v: int = Depends(mid)) -> int:
        return v

    def side() -> str:
        return "ok"

    wf = Workflow(outputs=[FunctionStep(last), FunctionStep(side)], workflow_id="cancel")
    (info,) = _drain(wf, MemoryBroker())
    assert info.state is Status.FAILED
    assert {n: s.state for n, s in info.steps.items()} == {
        "boom": Status.FAILED, "mid": Status.CANCELLED, "last": Status.CANCELLED,
        "side": Status.SUCCEEDED}
    assert info.steps["boom"].error == "ValueError: bad input"


def test_broker_run_is_not_finished_while_a_step_is_still_running():
    """Fuseline finalises a run as soon as its queue is empty, even with steps out on workers."""
    wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="running")
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client)
    worker = ProcessEngine(client, [wf])
    a = client.get_step(worker.worker_id)
    assert broker.get_run(run_id).state is Status.RUNNING
    worker.run_assignment(a)
    assert broker.get_run(run_id).state is Status.SUCCEEDED


# -- expired assignments never re-queued -----------------------------------------------
def test_expired_assignment_goes_back_to_the_queue_and_the_late_report_is_refused():
    """Fuseline's assignments expire after 60 s but nothing ever re-queues them."""
    now = [1000.0]
    broker = MemoryBroker(lease_seconds=10, clock=lambda: now[0])
    wf = Workflow(outputs=[FunctionStep(lambda: "v", name="slow")], workflow_id="lease")
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client)
    w1, w2 = client.register_worker([wf.to_schema()]), client.register_worker([wf.to_schema()])
    first = client.get_step(w1)
    assert first.attempt == 1
    assert client.get_step(w2) is None  # leased to w1
    now[0] += 11  # w1 went silent past its lease
    second = client.get_step(w2)
    assert (second.step_name, second.attempt) == ("slow", 2)
    late = StepReport(first.workflow_id, run_id, "slow", Status.SUCCEEDED, "late", attempt=1)
    with pytest.raises(StaleReportError, match="no longer assigned"):
        client.report_step(w1, late)
    client.report_step(w2, StepReport(second.workflow_id, run_id, "slow", Status.SUCCEEDED, "v",
                                      attempt=2))
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED and info.steps["slow"].attempts == 2


def test_report_from_another_worker_is_refused_not_ignored():
    """Fuseline silently drops a report from a worker other than the assigned one."""
    broker = MemoryBroker()
    wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="who")
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client)
    w1, w2 = client.register_worker([wf.to_schema()]), client.register_worker([wf.to_schema()])
    a = client.get_step(w1)
    with pytest.raises(StaleReportError):
        client.report_step(w2, StepReport(a.workflow_id, run_id, "one", Status.SUCCEEDED, 1))


# -- FunctionStep passing every input ---------------------------------------------------
def test_function_step_receives_only_declared_parameters():
    """Fuseline's FunctionStep calls ``func(**all_inputs)``: TypeError for any extra input."""

    def only_x(x: int) -> int:
        return x * 2

    wf = Workflow(outputs=[FunctionStep(only_x)], workflow_id="declared")
    assert wf.run({"x": 2, "unrelated": "!"}) == 4
    (info,) = _drain(wf, MemoryBroker(), {"x": 3, "unrelated": "!"})
    assert info.steps["only_x"].result == 6


# -- async batch workflows always failing -------------------------------------------
def test_async_batch_workflows_run():
    """Fuseline's AsyncBatchWorkflow/AsyncParallelBatchWorkflow call an undefined ``_orch_async``."""

    class Inc(AsyncStep):
        async def run_step_async(self, n: int) -> int:
            await asyncio.sleep(0)
            return n + 1

    sets = [{"n": 1}, {"n": 2}, {"n": 3}]
    for cls in (AsyncBatchWorkflow, AsyncParallelBatchWorkflow):
        wf = cls(outputs=[Inc()])
        assert asyncio.run(wf.run_async(sets)) == [2, 3, 4]
        assert wf.state is Status.SUCCEEDED


# -- a policy subclass overwriting its parent's registry entry ------------------------
def test_policy_subclass_keeps_its_parents_registry_entry():
    """Fuseline registers every subclass under the inherited ``name``: a subclass of
    RetryPolicy replaces RetryPolicy when schemas are loaded."""

    class PatientRetry(RetryPolicy):
        pass

    assert get_policy_class("retry") is RetryPolicy
    assert get_policy_class("PatientRetry") is PatientRetry
    assert type(policy_from_spec(RetryPolicy(2).to_spec())) is RetryPolicy
    assert type(policy_from_spec(PatientRetry(2).to_spec())) is PatientRetry


# -- finish hooks skipped when a workflow fails -----------------------------------------
class _Recorder(WorkflowPolicy):
    name = "defects-recorder"

    def __init__(self) -> None:
        self.finished: list[object] = []

    def on_workflow_finished(self, workflow, result):
        self.finished.append((workflow.state, result))


def test_finish_hooks_run_when_the_workflow_fails():
    """Fuseline skips ``on_workflow_finished`` on failure; a failed step's ``after_all`` runs.

    ``before_all``/``after_all`` bracket a step's own attempts (Fuseline's order),
    so a step cancelled before it started gets neither.
    """
    after = []

    class Boom(Step):
        def run_step(self, _setup_res):
            raise RuntimeError("boom")

        def after_all(self, shared):
            after.append(self.name)

    class Later(Step):
        def run_step(self, v=Depends(Boom)):
            return v

        def after_all(self, shared):
            after.append(self.name)

    rec = _Recorder()
    wf = Workflow(outputs=[Later()], policies=[rec])
    assert wf.run() is None
    assert wf.state is Status.FAILED
    assert after == ["Boom"]
    assert rec.finished == [(Status.FAILED, None)]


def test_async_finish_hooks_run_when_the_workflow_fails():
    after = []

    class Boom(AsyncStep):
        async def run_step_async(self, _setup_res):
            raise RuntimeError("boom")

        async def after_all_async(self, shared):
            after.append("async after_all")

    rec = _Recorder()
    wf = AsyncWorkflow(outputs=[Boom()], policies=[rec])
    asyncio.run(wf.run_async())
    assert after == ["async after_all"]
    assert rec.finished == [(Status.FAILED, None)]


# -- an output that did not run returns the last step's value -------------------------
def test_an_output_that_did_not_run_is_none_not_another_steps_result():
    """Fuseline returns the last executed step's result when the single output never ran."""
    route = FunctionStep(lambda: "elsewhere", name="route")
    target = FunctionStep(lambda: "target", name="target")
    other = FunctionStep(lambda: "other", name="other")
    (route - "go") >> target
    (route - "elsewhere") >> other
    wf = Workflow(outputs=[target])
    assert wf.run() is None
    assert wf.last_run.steps["other"].result == "other"
