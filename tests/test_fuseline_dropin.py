"""Fuseline code that users bring runs unchanged: the step lifecycle, retries, conditions that
see their source, execution groups, a failed run's None, schema YAML, Fuseline's own helpers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from fuseline_nb import Condition, Depends, FunctionStep, PoolEngine, Status, Step, Workflow
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.errors import MissingInputError
from fuseline_nb.worker import ProcessEngine
from fuseline_nb.workflow.policies import RetryPolicy, StepPolicy, WorkflowPolicy


class Rec(Step):
    def __init__(self, log: list[str], label: str, fail: bool = False) -> None:
        super().__init__(name=label)
        self.log, self.label, self.fail = log, label, fail

    def before_all(self, shared):
        self.log.append(f"{self.label}.before_all")

    def setup(self, shared):
        self.log.append(f"{self.label}.setup")
        return self.label

    def run_step(self, setup_res):
        self.log.append(f"{self.label}.run")
        if self.fail:
            raise RuntimeError(f"{self.label} broke")
        return None

    def teardown(self, shared, setup_res, exec_res):
        self.log.append(f"{self.label}.teardown")

    def after_all(self, shared):
        self.log.append(f"{self.label}.after_all")


def _phases(label: str, ran: bool = True) -> list[str]:
    run = [f"{label}.teardown"] if ran else []
    return [f"{label}.before_all", f"{label}.setup", f"{label}.run", *run, f"{label}.after_all"]


@pytest.mark.parametrize("engine", [None, PoolEngine(2)], ids=["caller", "pool"])
def test_each_steps_hooks_bracket_its_own_run(engine: Any) -> None:
    log: list[str] = []
    a, b, c = Rec(log, "a"), Rec(log, "b", fail=True), Rec(log, "c")
    a >> b >> c
    assert Workflow(outputs=[c]).run(execution_engine=engine) is None
    # c was cancelled before it started: no hook of c runs
    assert log == _phases("a") + _phases("b", ran=False)


def test_step_run_alone_runs_the_lifecycle_and_retries() -> None:
    log: list[str] = []
    assert Rec(log, "s").run(None) is None
    assert log == _phases("s")

    class Typed(Step):
        def run_step(self, x: int, y: int = 1) -> int:
            if self.cur_retry == 0:
                raise ConnectionError("first try fails")
            return x + y + self.cur_retry

    step = Typed(policies=[RetryPolicy(max_retries=2)])
    assert step.run({"x": 10}) == 12
    with pytest.raises(ConnectionError, match="first try fails"):
        Typed().run({"x": 1})  # no retry policy: the failure raises
    with pytest.raises(MissingInputError, match="'x'"):
        Typed().run({})


def test_step_run_refuses_dependencies_and_warns_about_successors() -> None:
    src = FunctionStep(lambda: 1, name="src")

    class Needs(Step):
        def run_step(self, v: int = Depends(src)) -> int:
            return v

    with pytest.raises(TypeError, match=r"v = Depends\(\.\.\.\).*run it in a Workflow"):
        Needs().run({})
    first = FunctionStep(lambda: "x", name="first")
    first >> FunctionStep(lambda: "y", name="second")
    with pytest.warns(UserWarning, match="the steps after it do not run"):
        assert first.run({}) == "x"


def test_cur_retry_counts_attempts_in_process_and_on_workers() -> None:
    seen: list[int | None] = []

    class Flaky(Step):
        def __init__(self) -> None:
            super().__init__()
            self.policies.append(RetryPolicy(max_retries=3))  # appended after __init__, as Fuseline does

        def run_step(self) -> str:
            seen.append(self.cur_retry)
            if self.cur_retry < 2:
                raise RuntimeError("not yet")
            return "ok"

    wf = Workflow(outputs=[Flaky()], workflow_id="flaky")
    assert wf.run() == "ok" and seen == [0, 1, 2]
    seen.clear()
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client)
    ProcessEngine(client, [wf]).work()
    assert seen == [0, 1, 2] and broker.get_run(run_id).steps["Flaky"].attempts == 3


def test_a_condition_is_told_which_step_its_value_came_from() -> None:
    calls: list[tuple[Any, Any]] = []
    gate = threading.Event()

    class Source(Condition):
        def __call__(self, value, source):
            calls.append((value, source))
            return value != "skip me"

    fast = FunctionStep(lambda: "fast", name="fast")

    def slow() -> str:
        gate.wait(5)
        return "slow"

    slow_step = FunctionStep(slow)

    def merged(v: str = Depends(fast, slow_step, condition=Source())) -> str:
        gate.set()  # the slow member finishes after the join started
        return v

    one = FunctionStep(lambda: "skip me", name="one")

    def single(v: str = Depends(one, condition=Source())) -> str:
        return v

    wf = Workflow(outputs=[FunctionStep(merged), FunctionStep(single)])
    assert wf.run(execution_engine=PoolEngine(2)) == ["fast", None]
    assert ("fast", fast) in calls and ("skip me", one) in calls
    assert wf.last_run.steps["single"].state is Status.SKIPPED

    plain: list[tuple[Any, ...]] = []

    def only_value(*args: Any) -> bool:
        plain.append(args)
        return True

    def guarded(v: str = Depends(one, condition=only_value)) -> str:
        return v

    Workflow(outputs=[FunctionStep(guarded)]).run()
    assert plain == [("skip me",)]  # a plain callable still gets the value alone


def test_execution_group_is_the_depth_in_the_graph() -> None:
    a, b, c, d = (FunctionStep(lambda: 1, name=n) for n in "abcd")
    a >> b >> d
    a >> c
    c >> d
    e = FunctionStep(lambda: 1, name="e")
    e >> d
    Workflow(outputs=[d])
    assert [s.execution_group for s in (a, b, c, e, d)] == [0, 1, 1, 0, 2]


def test_a_failed_run_returns_none_and_keeps_what_it_computed() -> None:
    def boom() -> None:
        raise ValueError("bad")

    ok = FunctionStep(lambda: "ok", name="ok")
    after = FunctionStep(lambda v=Depends(boom): v, name="after")
    wf = Workflow(outputs=[ok, after])
    assert wf.run() is None
    assert wf.state is Status.FAILED and wf.last_run.outputs == ["ok", None]
    assert wf.workflow_instance_id == wf.last_run.run_id
    assert Workflow(outputs=[ok]).run() == "ok"


def test_policies_are_bound_to_their_step_and_workflow() -> None:
    class Note(StepPolicy):
        def __init__(self, label: str) -> None:
            self.label = label

    class Audit(WorkflowPolicy):
        pass

    note, audit = Note("x"), Audit()
    step = FunctionStep(lambda: 1, name="one", policies=[note])
    wf = Workflow(outputs=[step], policies=[audit])
    assert note.bound_to is step and audit.bound_to is wf
    assert note.to_config() == {"label": "x"}  # bound_to is not configuration
    assert wf.to_schema().steps[0].policies == ({"name": "Note", "config": {"label": "x"}},)


def test_schema_to_yaml_keys_steps_by_name_and_names_map_to_steps() -> None:
    a, b = FunctionStep(lambda: 1, name="load"), FunctionStep(lambda: 2, name="save")
    a >> b
    wf = Workflow(outputs=[b], workflow_id="yaml-demo")
    lines = wf.to_schema().to_yaml().splitlines()
    assert lines[0] == "workflow_id: yaml-demo"
    assert "  load:" in lines and "  save:" in lines and "outputs:" in lines
    assert [str(s) for s in wf.to_schema().steps] == ["load", "save"]
    assert wf._step_name_map() == {a: "load", b: "save"}


def test_fuselines_bookkeeping_attributes_leave_the_fingerprint_alone() -> None:
    from fuseline_nb.workflow.fingerprint import step_fingerprint

    class Count(Step):
        def run_step(self) -> int:
            return self.cur_retry

    step = Count()
    before = step_fingerprint(step)
    Workflow(outputs=[step]).run()  # sets execution_group and cur_retry on the instance
    assert vars(step).get("cur_retry") == 0 and "execution_group" in vars(step)
    assert step_fingerprint(step) == before
