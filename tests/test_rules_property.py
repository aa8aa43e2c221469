"""Property test: random DAGs with branches, OR groups, conditions and failures.

For every generated workflow, the in-process path and the broker path end in
the same states (and the same recovered failures and run state); every step
ends final; no step runs twice; and a step ran exactly when the rules
(evaluated from scratch by ``rules.decide``) say it was ready. A pure test
replays random completion orders through :class:`Readiness` and checks every
decision against ``decide`` given the same completion order.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuseline_nb import Depends, FunctionStep, ImpossibleJoinError, Status, Workflow
from fuseline_nb.workflow.rules import (
    Edge,
    Outcome,
    Plan,
    Readiness,
    Verdict,
    decide,
    edge_status,
    is_recovered,
    or_winner,
)
from tests.helpers import broker_run

ACTIONS = ["default", "x", "y"]


def random_spec(rng: random.Random) -> dict[str, Any]:
    """A random DAG of up to 40 steps: parents, edge actions, OR groups, conditions, behaviours."""
    n = rng.randint(2, 40)
    spec: list[dict[str, Any]] = []
    for i in range(n):
        parents: list[tuple[int, str]] = []
        if i:
            k = rng.randint(0 if i > 1 else 1, min(3, i))
            parents = [(p, rng.choice(ACTIONS)) for p in rng.sample(range(i), k)]
        group = len(parents) >= 2 and rng.random() < 0.5
        cond = None
        if parents and not group and rng.random() < 0.2:
            cond = rng.random() < 0.5
        behaviour = rng.choice(["default", "x", "y", "bogus", "fail", "value"])
        spec.append({"parents": parents, "group": group, "cond": cond, "behaviour": behaviour})
    return {"steps": spec}


dags = st.builds(random_spec, st.randoms(use_true_random=False))


def build(spec: dict[str, Any], calls: list[str]) -> Workflow:
    """Build ``spec``; an AND join that can never run becomes an OR group (the fix the error names)."""
    while True:
        try:
            return _build(spec, calls)
        except ImpossibleJoinError as exc:
            spec["steps"][int(exc.join[1:])]["group"] = True


def _build(spec: dict[str, Any], calls: list[str]) -> Workflow:
    steps: list[FunctionStep] = []
    for i, s in enumerate(spec["steps"]):
        name = f"s{i}"
        behaviour = s["behaviour"]

        def body(*, _name: str = name, _b: str = behaviour, **_: Any) -> Any:
            calls.append(_name)
            if _b == "fail":
                raise RuntimeError(f"{_name} fails")
            if _b == "value":
                return 42
            return _b

        fn: Any = body
        if s["cond"] is not None:
            parent = steps[s["parents"][0][0]]
            verdict = s["cond"]

            def gated(v: Any = Depends(parent, condition=lambda _v, _r=verdict: _r), *, _f: Any = body) -> Any:
                return _f()

            fn = gated
        fn.__name__ = name
        step = FunctionStep(fn, name=name)
        parents = [(steps[p], a) for p, a in s["parents"]]
        if s["group"]:
            group = parents[0][0]
            for p, _ in parents[1:]:
                group = group | p
            group >> step
        else:
            for p, a in parents:
                (p - a) >> step
        steps.append(step)
    sinks = [s for s in steps if not s.edges]
    return Workflow(outputs=sinks)


def outcomes_of(info: Any) -> dict[str, Outcome]:
    out = {}
    for n, s in info.steps.items():
        out[n] = Outcome(s.state, s.action, s.skip_reason)
    return out


def check_rules(wf: Workflow, info: Any, calls: list[str]) -> None:
    plan = Plan.from_schema(wf.to_schema())
    outcomes = outcomes_of(info)
    assert all(s.state.is_final for s in info.steps.values()), info.steps
    assert len(calls) == len(set(calls)), f"a step ran twice: {calls}"
    ran = set(calls)
    for name in plan.order:
        verdict = decide(plan, outcomes, name)
        state = outcomes[name].state
        gated = any(p.condition is not None for p in wf.bindings[name].params)
        if name in ran or (state is Status.SKIPPED and outcomes[name].skip_reason == "condition"):
            assert verdict is Verdict.READY, (name, verdict)
        elif state is Status.CANCELLED:
            assert verdict is Verdict.CANCEL, (name, verdict)
        else:
            # skipped at once by an inactive slot; a slot may have broken afterwards
            inactive = any(edge_status(outcomes[e.source], e.actions) is Edge.INACTIVE
                           or e.group is not None for e in plan.incoming[name])
            assert state is Status.SKIPPED and inactive and verdict in (Verdict.SKIP, Verdict.CANCEL), (
                name, state, verdict)
        if name in ran and gated:
            assert state is not Status.SKIPPED


def same_outcome(wf: Workflow, a: Any, b: Any) -> None:
    """Two runs of one workflow whose steps may have finished in different orders agree.

    What ran and how it ended, ``recovered`` and the run's state never depend
    on the order. A step the rules ended may: one slot inactive and another
    broken skips it when the inactive one resolved first and cancels it when
    the broken one did (DESIGN.md §3, "at once").
    """
    plan = Plan.from_schema(wf.to_schema())
    assert a.state is b.state
    assert {n for n, s in a.steps.items() if s.recovered} == {n for n, s in b.steps.items() if s.recovered}
    for name in plan.order:
        sa, sb = a.steps[name], b.steps[name]
        if sa.state is sb.state and sa.skip_reason == sb.skip_reason:
            continue
        derived = {Status.CANCELLED, Status.SKIPPED}
        assert sa.state in derived and sb.state in derived, (name, sa.state, sb.state)
        assert "condition" not in (sa.skip_reason, sb.skip_reason), name
        for run in (a, b):  # each run saw a slot that can skip it and one that can cancel it
            outs = outcomes_of(run)
            seen = {edge_status(outs[e.source], e.actions) for e in plan.incoming[name]}
            assert seen & {Edge.INACTIVE, Edge.BROKEN} or any(e.group for e in plan.incoming[name]), name


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags)
def test_random_dags_both_paths_agree(spec: dict[str, Any]) -> None:
    from fuseline_nb.broker import MemoryBroker

    local_calls: list[str] = []
    wf = build(spec, local_calls)
    wf.run()
    local = wf.last_run
    check_rules(wf, local, local_calls)

    broker_calls: list[str] = []
    wf2 = build(spec, broker_calls)
    info = broker_run(wf2, MemoryBroker())
    check_rules(wf2, info, broker_calls)

    assert {n: s.state for n, s in local.steps.items()} == {n: s.state for n, s in info.steps.items()}
    assert {n for n, s in local.steps.items() if s.recovered} == {n for n, s in info.steps.items() if s.recovered}
    assert local.state is info.state
    assert sorted(local_calls) == sorted(broker_calls)


def test_random_dags_against_every_storage(make_broker) -> None:
    """Seeded random DAGs through each storage kind (hypothesis drives the memory broker above)."""
    for seed in range(15):
        spec = random_spec(random.Random(seed))
        calls: list[str] = []
        wf = build(spec, calls)
        info = broker_run(wf, make_broker())
        check_rules(wf, info, calls)
        local_calls: list[str] = []
        wf_local = build(spec, local_calls)
        wf_local.run()
        assert {n: s.state for n, s in wf_local.last_run.steps.items()} == {
            n: s.state for n, s in info.steps.items()
        }
        assert wf_local.last_run.state is info.state
        assert {n for n, s in wf_local.last_run.steps.items() if s.recovered} == {
            n for n, s in info.steps.items() if s.recovered
        }


OUTCOMES = [Outcome.succeeded(), Outcome.succeeded("x"), Outcome.succeeded("y"), Outcome.failed(),
            Outcome.skipped_by_condition()]


def replay(plan: Plan, rng: random.Random, cancel_at: int | None) -> None:
    """Finish ready steps in a random order; check every decision against ``decide``."""
    r = Readiness(plan)
    ready = list(r.start())
    made_ready = set(ready)
    finished = 0
    while ready:
        if cancel_at is not None and finished == cancel_at:
            cancelled = r.cancel()
            assert set(cancelled) == set(plan.order) - set(r.outcomes) | set(cancelled)
            assert all(r.cause(n) == {"cause": "run cancelled"} for n in cancelled)
            break
        step = ready.pop(rng.randrange(len(ready)))
        ch = r.finish(step, rng.choice(OUTCOMES))
        finished += 1
        ready.extend(ch.ready)
        made_ready.update(ch.ready)
        for v in plan.order:  # decide, from scratch with the same completion order, agrees
            verdict = decide(plan, r.outcomes, v, r.order)
            if v in made_ready:
                assert verdict is Verdict.READY, (v, verdict)
            elif v in r.outcomes:
                want = Verdict.CANCEL if r.outcomes[v].state is Status.CANCELLED else Verdict.SKIP
                assert verdict is want, (v, verdict)
                assert r.cause(v)["cause"]
            else:
                assert verdict is Verdict.WAIT, (v, verdict)
            for group, member in r.winners(v).items():
                assert or_winner(plan, r.outcomes, r.order, v, group) == member
    winners = {v: {g: w for g in {e.group for e in plan.incoming[v] if e.group}
                   if (w := or_winner(plan, r.outcomes, r.order, v, g)) is not None}
               for v in plan.order if v in made_ready}
    for n in r.outcomes:
        assert r.recovered(n) == is_recovered(plan, r.outcomes, winners, n, made_ready.__contains__), n
    if r.done:
        state = r.run_state()
        unrecovered = {n for n, o in r.outcomes.items() if o.state is Status.FAILED} - r.recovered_failures()
        assert (state is Status.FAILED) == bool(unrecovered)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags, st.randoms(use_true_random=False), st.one_of(st.none(), st.integers(0, 10)))
def test_readiness_and_decide_agree_in_any_completion_order(spec: dict[str, Any], rng: random.Random,
                                                           cancel_at: int | None) -> None:
    wf = build(spec, [])
    replay(Plan.from_schema(wf.to_schema()), rng, cancel_at)


@pytest.mark.slow
def test_random_dags_through_real_worker_processes(tmp_path) -> None:
    """Seeded random DAGs through a Session's worker process end as wf.run ends them.

    One worker process keeps the completion order the in-process run has
    (which step ends first decides between a skip and a cancel).
    """
    from fuseline_nb import Session

    with Session(tmp_path / "property.duckdb", workers=1) as session:
        for seed in range(12):
            spec = random_spec(random.Random(1000 + seed))
            local = build(spec, [])
            local.run()
            assert local.last_run is not None
            remote = build(spec, [])
            info = session.submit(Workflow(outputs=remote.outputs, workflow_id=f"prop-{seed}"), {})
            info.wait(timeout=60)
            got = info.info()
            assert {n: s.state for n, s in got.steps.items()} == {
                n: s.state for n, s in local.last_run.steps.items()}, seed
            assert {n for n, s in got.steps.items() if s.recovered} == {
                n for n, s in local.last_run.steps.items() if s.recovered}, seed
            assert got.state is local.last_run.state, seed
