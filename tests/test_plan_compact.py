"""The compiled plan says what the schema says (checked against a plain reference compile on random schemas with
parallel edges, actions and OR groups), shares what steps have in common, and a run starts at no cost per step."""

from __future__ import annotations

import gc
import random
import tracemalloc
from typing import Any

import pytest

from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.workflow.plan import resolve_action
from fuseline_nb.workflow.rules import Outcome, Plan, Readiness
from fuseline_nb.workflow.schema import EdgeSchema, StepSchema, WorkflowSchema


def _reference(schema: WorkflowSchema) -> dict[str, Any]:
    """What the plan must say, computed the plain way (as the plan was compiled before it was made compact)."""
    order = [s.name for s in schema.steps]
    merged: dict[tuple[str, str], list[Any]] = {}
    for e in schema.edges:
        m = merged.setdefault((e.source, e.target), [set(), None])
        m[0].add(e.action)
        if m[1] is None:
            m[1] = e.group
    incoming: dict[str, list[tuple[str, frozenset[str], str | None]]] = {n: [] for n in order}
    successors: dict[str, list[str]] = {n: [] for n in order}
    actions: dict[str, set[str]] = {n: set() for n in order}
    for (u, v), (acts, group) in merged.items():
        incoming[v].append((u, frozenset(acts), group))
        successors[u].append(v)
        actions[u] |= acts
    return {"order": order, "roots": [n for n in order if not incoming[n]],
            "incoming": {v: sorted(i, key=repr) for v, i in incoming.items()},
            "successors": {u: sorted(s) for u, s in successors.items()},
            "actions": {u: frozenset(a) for u, a in actions.items()},
            "labels": {(u, v): (frozenset(acts), group) for (u, v), (acts, group) in merged.items()}}


def _random_schema(rng: random.Random) -> WorkflowSchema:
    n = rng.randint(1, 30)
    names = [f"s{i}" for i in range(n)]
    edges = []
    for i in range(1, n):
        for p in rng.sample(range(i), rng.randint(0, min(3, i))):
            group = rng.choice([None, None, "g", "h"])
            for action in rng.sample(["default", "x", "y"], rng.choice([1, 1, 1, 2])):  # parallel edges too
                edges.append(EdgeSchema(names[p], names[i], action, group))
    if rng.random() < 0.5:  # a fan-out: many steps fed by one edge each from one source
        names += [f"f{i}" for i in range(5)]
        edges += [EdgeSchema("s0", f"f{i}", rng.choice(["default", "x"])) for i in range(5)]
    rng.shuffle(edges)
    return WorkflowSchema("w", steps=tuple(StepSchema(n) for n in names), edges=tuple(edges))


@pytest.mark.parametrize("seed", range(200))
def test_the_plan_says_what_a_plain_compile_says(seed: int) -> None:
    rng = random.Random(seed)
    schema = _random_schema(rng)
    if seed % 2:  # steps in no upstream-first order: a step's neighbours may be compiled after it
        steps = list(schema.steps)
        rng.shuffle(steps)
        schema = WorkflowSchema("w", steps=tuple(steps), edges=schema.edges)
    ref = _reference(schema)
    plan = Plan._compile(schema)
    assert plan.order == ref["order"] and plan.roots == ref["roots"]
    assert {v: sorted(((e.source, e.actions, e.group) for e in inc), key=repr)
            for v, inc in plan.incoming.items()} == ref["incoming"]
    assert {u: sorted(s) for u, s in plan.successors.items()} == ref["successors"]
    assert dict(plan.actions) == ref["actions"]
    for u, succ in plan.successors.items():  # each successor's label, from the sparse labels
        labels = plan.labels.get(u)
        for i, v in enumerate(succ):
            assert (labels[i] if labels else (frozenset({"default"}), None)) == ref["labels"][(u, v)], (u, v)
    slots = {v: len({e.group if e.group else ("plain", e.source) for e in inc}) for v, inc in plan.incoming.items()}
    for v, n in slots.items():  # the slot count Readiness starts a step from
        assert (plan.slots.get(v) or len(plan.incoming[v])) == n or not plan.incoming[v], v


def test_an_edge_to_or_from_an_unknown_step_is_named() -> None:
    schema = WorkflowSchema("w", steps=(StepSchema("a"),), edges=(EdgeSchema("a", "ghost"),))
    with pytest.raises(KeyError, match="edges name steps the schema does not have: \\['ghost'\\]"):
        Plan.from_schema(schema)


def test_parallel_edges_are_one_slot_taken_on_either_action() -> None:
    schema = WorkflowSchema("w", steps=(StepSchema("a"), StepSchema("b"), StepSchema("c")),
                            edges=(EdgeSchema("a", "b", "x"), EdgeSchema("a", "b", "y"), EdgeSchema("a", "c", "z")))
    plan = Plan.from_schema(schema)
    assert [(e.source, e.actions) for e in plan.incoming["b"]] == [("a", frozenset({"x", "y"}))]
    assert plan.actions["a"] == frozenset({"x", "y", "z"}) and resolve_action(plan, "a", "y") == "y"
    r = Readiness(plan)
    r.start()
    changes = r.finish("a", Outcome.succeeded("y"))
    assert (changes.ready, changes.skipped) == (["b"], ["c"])
    assert r.cause("c") == {"cause": "step 'a' chose action 'y', not 'z'", "edge": "a -> c"}


def _fan_out(n: int) -> Workflow:
    head, tail = FunctionStep(lambda: 1, name="head"), FunctionStep(lambda *a: 1, name="tail")
    for i in range(n):
        head >> FunctionStep(lambda: 1, name=f"m{i}") >> tail
    return Workflow(outputs=[tail])


def test_a_fan_out_plan_shares_its_tuples_and_a_run_starts_at_no_cost_per_step() -> None:
    n = 5000
    schema = _fan_out(n).to_schema()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        plan = Plan._compile(schema)
        compiled = tracemalloc.get_traced_memory()[0]
        readiness = Readiness(plan)
        started = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert plan.incoming["m1"] is plan.incoming["m2"] and plan.successors["m1"] is plan.successors["m2"]
    assert plan.incoming["tail"][7] is schema.edges[n + 7]  # a join's slots are the schema's own edges
    assert (compiled - before) / n < 150, f"plan: {(compiled - before) / n:.0f} B/step"
    assert started - compiled < 2000, f"a new run's readiness: {started - compiled} bytes"
    assert readiness.start() == ["head"]
    assert sorted(readiness.finish("head", Outcome.succeeded()).ready) == sorted(f"m{i}" for i in range(n))
    for i in range(n - 1):
        assert list(readiness.finish(f"m{i}", Outcome.succeeded()).ready) == []
    assert readiness._left == {"tail": 1}  # only the waiting join counts
    assert readiness.finish(f"m{n - 1}", Outcome.succeeded()).ready == ["tail"]
    assert readiness._left == {}


@pytest.mark.parametrize("upstream_first", [True, False])
def test_a_chain_plan_keeps_the_schema_edges_and_shares_only_what_is_shared(upstream_first: bool) -> None:
    names = ["a", "b", "c", "d", "e"]
    edges = (EdgeSchema("a", "b"), EdgeSchema("b", "c"), EdgeSchema("c", "d"), EdgeSchema("c", "e"),
             EdgeSchema("d", "e", "x"))
    steps = tuple(StepSchema(n) for n in (names if upstream_first else reversed(names)))
    plan = Plan._compile(WorkflowSchema("w", steps=steps, edges=edges))
    assert plan.incoming["b"] == (edges[0],) and plan.incoming["b"][0] is edges[0]  # b's only source feeds only b
    assert plan.incoming["c"][0] is edges[1] and plan.incoming["d"][0] is edges[2]
    assert [(e.source, e.actions) for e in plan.incoming["e"]] == [("c", frozenset({"default"})),
                                                                  ("d", frozenset({"x"}))]
    assert plan.successors["a"] == ("b",) and plan.successors["c"] == ("d", "e") and plan.successors["e"] == ()
    assert plan.successors["d"] == ("e",) and plan.labels["d"] == ((frozenset({"x"}), None),)
    assert plan.roots == ["a"] and plan.order == [s.name for s in steps]
