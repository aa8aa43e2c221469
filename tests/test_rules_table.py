"""Every state rule of DESIGN.md §3, run through wf.run() and through a broker.

Each case builds a fresh workflow and names the final state of every step;
both paths must reach exactly those states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from fuseline_nb import Depends, FunctionStep, PoolEngine, Status, Step, Workflow
from tests.helpers import broker_run, broker_states, local_states

S, F, C, K = Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED


def fs(name: str, value: Any = None, fail: bool = False) -> FunctionStep:
    def fn() -> Any:
        if fail:
            raise RuntimeError(f"{name} failed")
        return value

    fn.__name__ = name
    return FunctionStep(fn, name=name)


@dataclass
class Case:
    build: Callable[[], Workflow]
    expected: dict[str, Status]
    run_state: Status = Status.SUCCEEDED
    inputs: dict[str, Any] = field(default_factory=dict)


def branch_taken() -> Workflow:
    a, b, c, d = fs("a", "left"), fs("b"), fs("c"), fs("d")
    (a - "left") >> b
    (a - "right") >> c
    c >> d  # skip propagates through the branch not taken
    return Workflow(outputs=[b, d])


def and_join_after_branch() -> Workflow:
    a, b, c, d = fs("a", "left"), fs("b"), fs("c"), fs("d")
    (a - "left") >> b
    (a - "right") >> c
    b >> d
    c >> d
    return Workflow(outputs=[d])


def and_join_all_inactive() -> Workflow:
    a, b, c, d, e = fs("a", "none"), fs("b"), fs("c"), fs("d"), fs("e")
    (a - "left") >> b
    (a - "right") >> c
    (a - "none") >> e
    b >> d
    c >> d
    return Workflow(outputs=[d, e])


def or_group_first_success() -> Workflow:
    p1, p2 = fs("p1", 1), fs("p2", 2)

    class Join(Step):
        def run_step(self, v: int = Depends(p1, p2)) -> int:
            return v * 10

    return Workflow(outputs=[Join()])


def or_group_one_fails() -> Workflow:
    p1, p2 = fs("p1", fail=True), fs("p2", 2)

    class Join(Step):
        def run_step(self, v: int = Depends([p1, p2])) -> int:
            return v

    return Workflow(outputs=[Join()])


def or_group_all_fail() -> Workflow:
    p1, p2 = fs("p1", fail=True), fs("p2", fail=True)
    join, after = fs("join"), fs("after")
    (p1 | p2) >> join
    join >> after
    return Workflow(outputs=[after])


def or_group_none_reached() -> Workflow:
    a, p1, p2, join = fs("a", "x"), fs("p1"), fs("p2"), fs("join")
    (a - "y") >> p1
    (a - "z") >> p2
    (a - "x") >> fs("other")
    (p1 | p2) >> join
    return Workflow(outputs=[join])


def condition_skip() -> Workflow:
    gate = fs("gate", 5)

    class Big(Step):
        def run_step(self, v: int = Depends(gate, condition=lambda v: v > 10)) -> str:
            return "big"

    class After(Step):
        def run_step(self, prev: Any = Depends(Big)) -> Any:
            return prev  # the skipped step's value is None

    big = Big()
    return Workflow(outputs=[After()]) if big else Workflow(outputs=[big])


def failure_cancels_downstream() -> Workflow:
    root, bad, mid, end, indep, indep2 = fs("root"), fs("bad", fail=True), fs("mid"), fs("end"), fs("indep"), fs("indep2")
    root >> bad >> mid >> end
    root >> indep >> indep2
    return Workflow(outputs=[end, indep2])


def unknown_action() -> Workflow:
    a, b = fs("a", "maybe"), fs("b")
    (a - "yes") >> b
    return Workflow(outputs=[b])


def unknown_action_with_default() -> Workflow:
    a, b, c = fs("a", "maybe"), fs("b"), fs("c")
    (a - "yes") >> b
    a >> c
    return Workflow(outputs=[b, c])


CASES: dict[str, Case] = {
    "branch taken, other skipped transitively": Case(branch_taken, {"a": S, "b": S, "c": K, "d": K}),
    "AND join after a branch runs on one active edge": Case(and_join_after_branch, {"a": S, "b": S, "c": K, "d": S}),
    "AND join with every edge inactive is skipped": Case(and_join_all_inactive, {"a": S, "b": K, "c": K, "d": K, "e": S}),
    "OR group runs once on first success": Case(or_group_first_success, {"p1": S, "p2": S, "Join": S}),
    "OR group survives a failed member": Case(or_group_one_fails, {"p1": F, "p2": S, "Join": S}, Status.FAILED),
    "OR group with every member failed is cancelled": Case(
        or_group_all_fail, {"p1": F, "p2": F, "join": C, "after": C}, Status.FAILED
    ),
    "OR group never reached is skipped": Case(or_group_none_reached, {"a": S, "p1": K, "p2": K, "other": S, "join": K}),
    "condition false skips, downstream still runs": Case(condition_skip, {"gate": S, "Big": K, "After": S}),
    "failure cancels downstream, independent branch finishes": Case(
        failure_cancels_downstream,
        {"root": S, "bad": F, "mid": C, "end": C, "indep": S, "indep2": S},
        Status.FAILED,
    ),
    "unknown action without default fails the step": Case(unknown_action, {"a": F, "b": C}, Status.FAILED),
    "unknown action with a default edge takes it": Case(unknown_action_with_default, {"a": S, "b": K, "c": S}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule_in_process(case: Case):
    wf = case.build()
    assert local_states(wf, case.inputs) == case.expected
    assert wf.state is case.run_state
    assert {n: s.state for n, s in wf.steps.items()} == case.expected


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule_in_thread_pool(case: Case):
    assert local_states(case.build(), case.inputs, PoolEngine(3)) == case.expected


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule_through_broker(case: Case, make_broker):
    wf = case.build()
    info = broker_run(wf, make_broker(), case.inputs)
    assert {n: s.state for n, s in info.steps.items()} == case.expected
    assert info.state is case.run_state


def test_or_group_passes_first_result_and_runs_once(make_broker):
    wf = or_group_first_success()
    assert wf.run() == 10  # p1 finishes first in a sequential run
    info = broker_run(or_group_first_success(), make_broker())
    assert info.steps["Join"].result == 10
    assert info.steps["Join"].attempts == 1


def test_or_group_result_comes_from_the_member_that_succeeded(make_broker):
    wf = or_group_one_fails()
    wf.run()  # returns None if the run FAILED (as wf.run does); the join's result is 2 either way
    assert wf.last_run.steps["Join"].result == 2
    assert broker_run(or_group_one_fails(), make_broker()).steps["Join"].result == 2


def test_unknown_action_error_names_action_and_choices(make_broker):
    wf = unknown_action()
    wf.run()
    err = wf.last_run.steps["a"].error
    assert "'maybe'" in err and "['yes']" in err
    info = broker_run(unknown_action(), make_broker())
    assert "'maybe'" in info.steps["a"].error and "['yes']" in info.steps["a"].error


def test_skip_reasons_distinguish_condition_from_not_reached(make_broker):
    info = broker_run(condition_skip(), make_broker())
    assert info.steps["Big"].skip_reason == "condition"
    info = broker_run(branch_taken(), make_broker())
    assert info.steps["c"].skip_reason == "not_reached"


def test_duplicate_queue_entry_runs_once(make_broker):
    broker = make_broker()
    a, b = fs("a", 1), fs("b", 2)
    a >> b
    wf = Workflow(outputs=[b])
    from fuseline_nb.broker.clients import LocalBrokerClient
    from fuseline_nb.worker import ProcessEngine

    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    broker.storage.enqueue(run_id, "a")  # a stray duplicate
    engine = ProcessEngine(client, [wf])
    engine.work(max_steps=1)
    broker.storage.enqueue(run_id, "a")  # and another after it finished
    engine.work()
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED
    assert engine.steps_run == 2
    assert info.steps["a"].attempts == 1
    started = [e.step for e in broker.events(run_id) if e.kind == "step_started"]
    assert started == ["a", "b"]


def test_fresh_inputs_per_run(make_broker):
    class Echo(Step):
        def run_step(self, x: int = 0) -> int:
            return x

    wf = Workflow(outputs=[Echo()])
    assert wf.run({"x": 5}) == 5
    assert wf.run() == 0  # the previous run's input does not leak
    broker = make_broker()
    from fuseline_nb.broker.clients import LocalBrokerClient
    from fuseline_nb.worker import ProcessEngine

    client = LocalBrokerClient(broker)
    r1 = client.dispatch_workflow(wf.to_schema(), {"x": 1})
    r2 = client.dispatch_workflow(wf.to_schema(), {})
    ProcessEngine(client, [wf]).work()
    assert broker.get_run(r1).steps["Echo"].result == 1
    assert broker.get_run(r2).steps["Echo"].result == 0


def test_run_state_is_running_until_the_end(make_broker):
    broker = make_broker()
    wf = branch_taken()
    from fuseline_nb.broker.clients import LocalBrokerClient
    from fuseline_nb.worker import ProcessEngine

    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    engine = ProcessEngine(client, [wf])
    engine.work(max_steps=1)
    assert broker.get_run(run_id).state is Status.RUNNING
    engine.work()
    assert broker.get_run(run_id).state is Status.SUCCEEDED


def test_both_paths_agree_on_every_case(make_broker):
    for name, case in CASES.items():
        assert local_states(case.build(), case.inputs) == broker_states(case.build(), make_broker(), case.inputs), name
