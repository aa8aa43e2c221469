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
    recovered: set[str] = field(default_factory=set)
    inputs: dict[str, Any] = field(default_factory=dict)


def branch_taken() -> Workflow:
    a, b, c, d = fs("a", "left"), fs("b"), fs("c"), fs("d")
    (a - "left") >> b
    (a - "right") >> c
    c >> d  # skip propagates through the branch not taken
    return Workflow(outputs=[b, d])


def or_merge_after_branch() -> Workflow:
    a, b, c, d = fs("a", "left"), fs("b"), fs("c"), fs("d")
    (a - "left") >> b
    (a - "right") >> c
    (b | c) >> d  # merging branches is an OR group
    return Workflow(outputs=[d])


def two_actions_one_target(choice: str) -> Callable[[], Workflow]:
    def build() -> Workflow:
        g, j, k = fs("g", choice), fs("j"), fs("k")
        (g - "a") >> j
        (g - "b") >> j  # one slot, active on either action
        (g - "c") >> k
        return Workflow(outputs=[j, k])

    return build


def gate_with_data_dependency(answer: str) -> Callable[[], Workflow]:
    def build() -> Workflow:
        load, gate = fs("load", [1, 2, 3]), fs("gate", answer)

        def expensive(rows: Any = Depends(load)) -> int:
            return sum(rows)

        step = FunctionStep(expensive)
        (gate - "yes") >> step
        after, reject = fs("after"), fs("reject")
        step >> after
        (gate - "no") >> reject
        return Workflow(outputs=[after, reject])

    return build


def and_join_all_inactive() -> Workflow:
    a, b, c, d, e = fs("a", "none"), fs("b"), fs("c"), fs("d"), fs("e")
    (a - "left") >> b
    (a - "left") >> c
    (a - "none") >> e
    b >> d
    c >> d
    return Workflow(outputs=[d, e])


def and_join_skipped_while_other_slot_runs() -> Workflow:
    a, b, slow, j = fs("a", "no"), fs("b"), fs("slow"), fs("j")
    (a - "yes") >> b
    (a - "no") >> fs("other")
    b >> j
    slow >> j
    return Workflow(outputs=[j])


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


def fallback_also_feeds_an_and_join() -> Workflow:
    cache, api = fs("cache", fail=True), fs("api", 2)

    class Join(Step):
        def run_step(self, v: int = Depends(cache, api)) -> int:
            return v

    audit = fs("audit")
    cache >> audit  # a plain edge: this failure is not recovered
    return Workflow(outputs=[Join(), audit])


def failing_sink() -> Workflow:
    a, b = fs("a"), fs("b", fail=True)
    a >> b
    return Workflow(outputs=[b])


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
    "OR merge after a branch runs on the branch taken": Case(or_merge_after_branch, {"a": S, "b": S, "c": K, "d": S}),
    "two actions into one target are one slot (either runs it)": Case(
        two_actions_one_target("b"), {"g": S, "j": S, "k": K}
    ),
    "two actions into one target, a third action skips it": Case(two_actions_one_target("c"), {"g": S, "j": K, "k": S}),
    "a branch gates its target even with a data dependency": Case(
        gate_with_data_dependency("no"), {"load": S, "gate": S, "expensive": K, "after": K, "reject": S}
    ),
    "a branch taken runs a target with a data dependency": Case(
        gate_with_data_dependency("yes"), {"load": S, "gate": S, "expensive": S, "after": S, "reject": K}
    ),
    "AND join with one inactive slot is skipped": Case(
        and_join_skipped_while_other_slot_runs, {"a": S, "b": K, "other": S, "slow": S, "j": K}
    ),
    "AND join with every edge inactive is skipped": Case(and_join_all_inactive, {"a": S, "b": K, "c": K, "d": K, "e": S}),
    "OR group runs once on first success": Case(or_group_first_success, {"p1": S, "p2": S, "Join": S}),
    "OR group fallback recovers a failed member": Case(
        or_group_one_fails, {"p1": F, "p2": S, "Join": S}, Status.SUCCEEDED, {"p1"}
    ),
    "a failure that also feeds an AND join is not recovered": Case(
        fallback_also_feeds_an_and_join, {"cache": F, "api": S, "Join": S, "audit": C}, Status.FAILED
    ),
    "a failing sink fails the run": Case(failing_sink, {"a": S, "b": F}, Status.FAILED),
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


def recovered_of(info: Any) -> set[str]:
    return {n for n, s in info.steps.items() if s.recovered}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule_in_process(case: Case):
    wf = case.build()
    assert local_states(wf, case.inputs) == case.expected
    assert wf.state is case.run_state
    assert {n: s.state for n, s in wf.steps.items()} == case.expected
    assert recovered_of(wf.last_run) == case.recovered


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule_in_thread_pool(case: Case):
    assert local_states(case.build(), case.inputs, PoolEngine(3)) == case.expected


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule_through_broker(case: Case, make_broker):
    wf = case.build()
    info = broker_run(wf, make_broker(), case.inputs)
    assert {n: s.state for n, s in info.steps.items()} == case.expected
    assert info.state is case.run_state
    assert recovered_of(info) == case.recovered


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


def test_impossible_and_join_is_refused_when_built():
    from fuseline_nb import ImpossibleJoinError

    g, x, y, j = fs("g", "a"), fs("x"), fs("y"), fs("j")
    (g - "a") >> x >> j
    (g - "b") >> y >> j
    with pytest.raises(ImpossibleJoinError, match=r"step 'j' can never run.*step 'g' to choose action 'a'"
                       r".*needs action 'b'.*\(x \| y\) >> j") as err:
        Workflow(outputs=[j])
    assert (err.value.join, err.value.branch, err.value.actions) == ("j", "g", ("a", "b"))
    assert isinstance(err.value, ValueError)


def test_impossible_join_through_a_data_dependency_is_refused():
    from fuseline_nb import ImpossibleJoinError

    g, x, y = fs("g", "a"), fs("x"), fs("y")
    (g - "a") >> x
    (g - "b") >> y

    def both(left: Any = Depends(x), right: Any = Depends(y)) -> Any:
        return left, right

    with pytest.raises(ImpossibleJoinError, match=r"step 'both'.*Depends\(x, y\)"):
        Workflow(outputs=[FunctionStep(both)])


def test_the_branching_step_itself_feeding_the_join_is_refused():
    from fuseline_nb import ImpossibleJoinError

    g, x, j = fs("g", "a"), fs("x"), fs("j")
    (g - "a") >> j
    (g - "b") >> x >> j
    with pytest.raises(ImpossibleJoinError, match="step 'j' can never run"):
        Workflow(outputs=[j])


def test_joins_that_can_run_stay_legal():
    g, x, y, j = fs("g", "a"), fs("x"), fs("y"), fs("j")
    (g - "a") >> j
    (g - "b") >> j  # two actions into one target: one slot
    (g - "a") >> x >> y
    (g - "a") >> y  # same action on both slots: fine
    assert Workflow(outputs=[j, y]).run() == [None, None]
    p, q, r = fs("p", "a"), fs("q"), fs("r")
    (p - "a") >> q
    (p - "b") >> r
    merge = fs("merge", 1)
    (q | r) >> merge  # the OR form of the refused join
    assert Workflow(outputs=[merge]).run() == 1


def test_events_name_the_causes(make_broker):
    from fuseline_nb.broker.clients import LocalBrokerClient
    from fuseline_nb.worker import ProcessEngine

    broker = make_broker()
    for build, step, want in [
        (failure_cancels_downstream, "end", {"cause": "step 'bad' failed"}),
        (or_group_all_fail, "after", {"cause": "step 'p1' failed"}),
        (branch_taken, "c", {"skip_reason": "not_reached", "edge": "a -> c",
                             "cause": "step 'a' chose action 'left', not 'right'"}),
        (branch_taken, "d", {"skip_reason": "not_reached", "edge": "c -> d", "cause": "step 'c' was not reached"}),
    ]:
        wf = build()
        client = LocalBrokerClient(broker)
        run_id = client.dispatch_workflow(wf.to_schema())
        ProcessEngine(client, [wf]).work()
        finished = [e for e in broker.events(run_id) if e.kind == "step_finished" and e.step == step]
        assert len(finished) == 1
        assert want.items() <= (finished[0].detail or {}).items(), finished[0].detail


def test_each_attempt_ends_with_one_step_finished_and_each_queueing_one_step_queued(make_broker):
    from fuseline_nb import RetryPolicy
    from fuseline_nb.broker.clients import LocalBrokerClient
    from fuseline_nb.worker import ProcessEngine

    tries: list[int] = []

    def flaky() -> int:
        tries.append(1)
        if len(tries) < 3:
            raise RuntimeError(f"try {len(tries)}")
        return 7

    step = FunctionStep(flaky)
    step.policies.append(RetryPolicy(max_retries=3))
    wf = Workflow(outputs=[step])
    broker = make_broker()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    ProcessEngine(client, [wf]).work()
    events = [(e.kind, e.state, e.attempt, (e.detail or {}).get("retry")) for e in broker.events(run_id)
              if e.step == "flaky"]
    assert [k for k, *_ in events] == ["step_queued", "step_started", "step_finished"] * 3
    finished = [(st, att, retry) for k, st, att, retry in events if k == "step_finished"]
    assert finished == [(F, 1, 1), (F, 2, 2), (S, 3, None)]
    assert broker.get_run(run_id).state is S


def test_a_skip_does_not_wait_for_the_join_s_other_slots():
    from fuseline_nb.workflow.rules import Outcome, Plan, Readiness

    wf = and_join_skipped_while_other_slot_runs()
    r = Readiness(Plan.from_schema(wf.to_schema()))
    assert sorted(r.start()) == ["a", "slow"]
    changes = r.finish("a", Outcome.succeeded("no"))  # "slow" is still running
    assert changes.skipped == ["b", "j"] and changes.ready == ["other"]


REAL_CASES = [name for name in CASES if "first success" not in name]


@pytest.mark.slow
def test_every_rule_through_real_worker_processes(tmp_path):
    """The same table through a Session: a DuckDB broker and two spawned worker processes."""
    from fuseline_nb import Session

    with Session(tmp_path / "rules.duckdb", workers=2) as session:
        runs = {}
        for i, name in enumerate(REAL_CASES):  # own ids: two cases share a structure (and so a derived id)
            wf = Workflow(outputs=CASES[name].build().outputs, workflow_id=f"rules-case-{i}")
            runs[name] = session.submit(wf, CASES[name].inputs)
        for name, run in runs.items():
            run.wait(timeout=60)
            info = run.info()
            case = CASES[name]
            assert {n: s.state for n, s in info.steps.items()} == case.expected, name
            assert info.state is case.run_state, name
            assert recovered_of(info) == case.recovered, name
            rows = session.sql("SELECT step FROM steps WHERE run_id = ? AND recovered", [run.id]).fetchall()
            assert {r[0] for r in rows} == case.recovered, name
            assert session.sql("SELECT state FROM runs WHERE run_id = ?", [run.id]).fetchall() == [
                (case.run_state.value,)], name
