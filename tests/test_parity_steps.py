"""Parity with Fuseline's feature pages: steps, workflow orchestration, typed
dependencies and branching actions — the pages' calls, prefix ``fuseline_nb``."""

from __future__ import annotations

import pytest

from fuseline_nb import Computed, Depends, Status, Step, Task, Workflow
from fuseline_nb.workflow.policies import RetryPolicy


# -- steps-tasks ---------------------------------------------------------------
def test_step_with_underscore_setup_res_runs_in_a_workflow(capsys):
    # Fuseline's page writes run_step(self, _setup_res); Fuseline itself then
    # treats `_setup_res` as a missing input. Here it is the legacy form.
    class Hello(Step):
        def run_step(self, _setup_res):
            print("hello")

    wf = Workflow(outputs=[Hello()])
    wf.run()
    assert capsys.readouterr().out == "hello\n"
    assert wf.state is Status.SUCCEEDED


def test_setup_result_reaches_legacy_run_step_and_teardown_replaces_result():
    seen = []

    class Counted(Step):
        def setup(self, shared):
            return shared["n"] + 1

        def run_step(self, setup_res):
            return setup_res * 10

        def teardown(self, shared, setup_res, exec_res):
            seen.append((setup_res, exec_res))
            return exec_res + 1

    assert Workflow(outputs=[Counted()]).run({"n": 1}) == 21
    assert seen == [(2, 20)]


def test_retry_arguments_go_in_a_policy_not_the_constructor():
    # An older Fuseline page shows Step(max_retries=3, wait=1); the new API is policies=.
    with pytest.raises(TypeError):
        Step(max_retries=3, wait=1)  # type: ignore[call-arg]
    assert Step(policies=[RetryPolicy(max_retries=3, wait=1)]).policies[0].max_retries == 3


# -- workflow-orchestration ----------------------------------------------------
def test_hello_then_world_prints_in_order(capsys):
    class Hello(Task):
        def run_step(self, _setup_res):
            print("hello")

    class World(Task):
        def run_step(self, _setup_res):
            print("world")

    hello, world = Hello(), World()
    assert (hello >> world) is world
    Workflow(outputs=[world]).run()
    assert capsys.readouterr().out == "hello\nworld\n"


# -- typed-dependencies --------------------------------------------------------
class Add(Step):
    def run_step(self, x: int, y: int) -> int:
        return x + y


class Multiply(Step):
    add = Add()  # a class attribute, as on Fuseline's page

    def run_step(self, value: Computed[int] = Depends(add)) -> int:
        return value * 2


def test_typed_dependency_example_prints_ten():
    assert Workflow(outputs=[Multiply()]).run({"x": 2, "y": 3}) == 10


def test_typed_dependency_class_attribute_shared_by_instances_still_builds_separate_runs():
    # In Fuseline each Multiply() adds another successor to the shared Add.
    # Here edges come from Depends when a workflow is built, so both work.
    first, second = Workflow(outputs=[Multiply()]), Workflow(outputs=[Multiply()])
    assert first.run({"x": 1, "y": 1}) == 4
    assert second.run({"x": 5, "y": 5}) == 20
    assert first.step_names == ["Add", "Multiply"]


def test_depends_on_a_step_class_uses_the_workflow_instance():
    class Square(Step):
        def run_step(self, total: Computed[int] = Depends(Add)) -> int:
            return total * total

    assert Workflow(outputs=[Square()]).run({"x": 1, "y": 2}) == 9


# -- branching-actions ---------------------------------------------------------
def test_branching_follows_the_returned_action():
    ran = []

    class Chooser(Step):
        def run_step(self, pick: str) -> str:
            return pick

    class Target(Step):
        def run_step(self, _setup_res):
            ran.append(self.name)
            return self.name

    chooser = Chooser()
    nxt, other = Target(name="next"), Target(name="other")
    (chooser - "next") >> nxt
    (chooser - "other") >> other
    wf = Workflow(outputs=[nxt, other])
    assert wf.run({"pick": "next"}) == ["next", None]
    assert ran == ["next"]
    assert other.state is Status.SKIPPED
    assert wf.last_run.steps["other"].skip_reason == "not_reached"


def test_unknown_action_without_default_fails_naming_the_choices():
    class Chooser(Step):
        def run_step(self) -> str:
            return "sideways"

    class Target(Step):
        def run_step(self, _setup_res):
            return 1

    chooser, t = Chooser(), Target()
    (chooser - "next") >> t
    wf = Workflow(outputs=[t])
    wf.run()
    assert wf.state is Status.FAILED
    err = wf.last_run.steps["Chooser"].error
    assert "sideways" in err and "next" in err
    assert t.state is Status.CANCELLED
