"""How steps hold their links (workflow/wiring.py): compact, in order, a repeated edge once, on every shape."""

from __future__ import annotations

import pickle

import pytest

from fuseline_nb import FunctionStep, Step, Workflow
from fuseline_nb.workflow.wiring import is_linked, out_edges, sources, targets


def noop() -> None:
    return None


def _steps(prefix: str, n: int) -> list[FunctionStep]:
    return [FunctionStep(noop, name=f"{prefix}{i}") for i in range(n)]


def test_a_step_with_one_link_each_way_holds_no_container() -> None:
    a, b, c = _steps("s", 3)
    _ = a >> b >> c
    assert b._out is c and b._in is a  # the step itself, not a list of one
    assert out_edges(b) == [(c, "default", None)] and sources(b) == [a]
    _ = (b - "alt") >> c
    assert b._out == [c, (c, "alt", None)] and sources(c) == [b]


def test_edges_keep_the_order_they_were_declared_in() -> None:
    a, b, c, d = _steps("s", 4)
    _ = (a - "x") >> b
    _ = a >> c
    _ = (b | c) >> d
    _ = (a - "y") >> b
    assert [(t.name, action) for t, action, _ in a.edges] == [("s1", "x"), ("s2", "default"), ("s1", "y")]
    assert [s.name for s in sources(d)] == ["s1", "s2"]
    groups = {g for _, _, g in b.edges} | {g for _, _, g in c.edges}
    assert len(groups) == 1 and None not in groups  # one OR group for both members
    assert targets(a) == [b, c, b]


@pytest.mark.parametrize("width", [3, 40])
def test_repeats_are_one_edge_on_a_dense_graph(width: int) -> None:
    """Every source linked to every target, three times over, with two actions: short lists are
    scanned, long ones on both sides get an index — either way each edge exists once."""
    left, right = _steps("l", width), _steps("r", width)
    for _ in range(3):
        for u in left:
            for v in right:
                _ = u >> v
                _ = (u - "alt") >> v
    assert all(len(u.edges) == 2 * width for u in left)
    assert all(len(sources(v)) == width for v in right)
    assert (left[0]._out_keys is not None) == (width > 8)  # an index only where both sides are long
    wf = Workflow(outputs=right)
    assert len(wf.to_schema().edges) == 2 * width * width
    assert wf.graph.edges["l0", "r1"]["action"] == "default|alt"


def test_a_step_class_that_skips_step_init_still_wires() -> None:
    class Bare(Step):
        def __init__(self, label: str) -> None:  # no super().__init__(): the links default to none
            self.label = label

        def run_step(self) -> str:
            return self.label

    a, b = Bare("a"), Bare("b")
    assert not is_linked(a)
    _ = a >> b
    wf = Workflow(outputs=[b])
    assert wf.step_names == ["Bare", "Bare_2"] and wf.graph.has_edge("Bare", "Bare_2")


def test_a_class_level_name_names_the_step() -> None:
    class Mirror(Step):
        name = "mirror"

        def run_step(self) -> int:
            return 1

    assert Mirror().name == "mirror" and Mirror(name="other").name == "other"
    assert Workflow(outputs=[Mirror()]).step_names == ["mirror"]


def test_a_pickled_step_keeps_its_links_and_a_shipped_workflow_drops_them() -> None:
    a, b = _steps("s", 2)
    _ = (a - "go") >> b
    a2 = pickle.loads(pickle.dumps(a))  # a step pickled on its own travels with what it links to
    assert [(t.name, action) for t, action, _ in a2.edges] == [("s1", "go")]
    wf = pickle.loads(pickle.dumps(Workflow(outputs=[b])))
    assert all(not is_linked(s) for s in wf.steps.values())
    assert wf.graph.edges["s0", "s1"]["action"] == "go"


def test_chaining_to_something_else_is_refused_with_its_type() -> None:
    a = FunctionStep(noop, name="a")
    with pytest.raises(TypeError, match="can only chain to a Step or a group of steps, not int"):
        _ = a >> 5  # type: ignore[operator]
    with pytest.raises(ValueError, match="an action must be a non-empty string, not ''"):
        _ = (a - "") >> FunctionStep(noop, name="b")


def _reference_order(steps: list[Step]) -> list[str]:
    """Kahn's algorithm with a heap on discovery position: the order topological() promises."""
    import heapq

    pos = {id(s): k for k, s in enumerate(steps)}
    indeg = [0] * len(steps)
    for s in steps:
        for t in targets(s):
            indeg[pos[id(t)]] += 1
    heap = [k for k, d in enumerate(indeg) if d == 0]
    out = []
    while heap:
        k = heapq.heappop(heap)
        out.append(steps[k])
        for t in targets(steps[k]):
            j = pos[id(t)]
            indeg[j] -= 1
            if indeg[j] == 0:
                heapq.heappush(heap, j)
    return [s.name for s in out]  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(12))
def test_the_order_is_discovery_order_among_ready_steps_on_random_graphs(seed: int) -> None:
    """Steps that become ready out of order (the general case) and in order (chains, fan-outs) both
    come out smallest discovery position first, with each step one deeper than its deepest parent."""
    import random

    from fuseline_nb.workflow.collect import collect, topological

    rng = random.Random(seed)
    steps = _steps("s", rng.randint(2, 40))
    for j, v in enumerate(steps[1:], 1):
        for u in rng.sample(steps[:j], rng.randint(1, min(j, 3))):
            _ = u >> v
    found, index, _ = collect([steps[-1]])
    order, depths = topological(found, index, {})
    assert order is not None and depths is not None
    assert [s.name for s in order] == _reference_order(found)
    depth = {s.name: d for s, d in zip(order, depths, strict=True)}
    for s in order:
        parents = [depth[p.name] for p in sources(s)]  # type: ignore[index]
        assert depth[s.name] == (max(parents) + 1 if parents else 0)  # type: ignore[index]


def test_policies_are_made_on_first_use_and_appending_to_them_counts() -> None:
    """A step without policies holds no list (56 bytes and a GC-tracked object per step at scale);
    reading ``step.policies`` makes the list once, and what is appended to it reaches the run."""
    from fuseline_nb.workflow.policies import RetryPolicy
    from fuseline_nb.workflow.steps import step_policies

    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return "ok"

    step = FunctionStep(flaky)
    assert "policies" not in vars(step) and step_policies(step) == ()
    assert step.policies is step.policies == []
    retry = RetryPolicy(max_retries=3)
    step.policies.append(retry)
    assert step_policies(step) == [retry]
    assert Workflow(outputs=[step]).run(raise_on_failure=True) == "ok" and len(calls) == 3
    once = RetryPolicy(max_retries=1)
    assert vars(FunctionStep(flaky, name="given", policies=[once]))["policies"] == [once]
    with pytest.raises(AttributeError, match="'FunctionStep' object has no attribute 'nope'"):
        _ = step.nope  # type: ignore[attr-defined]


def test_policies_a_step_class_gives_its_steps_are_its_steps_policies() -> None:
    """``step_policies`` reads a step's own list without raising for the usual step that has none, and
    still finds policies its class gives (a class attribute, or a property)."""
    from fuseline_nb.workflow.policies import RetryPolicy
    from fuseline_nb.workflow.steps import Step, step_policies

    retry = RetryPolicy(max_retries=2)

    class Retried(Step):
        policies = [retry]

        def run_step(self) -> int:
            return 1

    class Derived(Retried):
        pass

    class Computed(Step):
        @property
        def policies(self) -> list[RetryPolicy]:  # type: ignore[override]
            return [retry]

        def run_step(self) -> int:
            return 1

    assert step_policies(Retried()) == step_policies(Derived()) == step_policies(Computed()) == [retry]
    assert step_policies(Step()) == ()


def test_a_function_steps_policies_are_its_own_or_a_class_attribute_set_later(monkeypatch: pytest.MonkeyPatch) -> None:
    """A FunctionStep's are read from its __dict__ (no failed class lookup); a ``policies`` attribute given to
    FunctionStep or Step later (a notebook's default for every step) is seen at once."""
    from fuseline_nb.workflow.policies import RetryPolicy
    from fuseline_nb.workflow.steps import FunctionStep, Step, step_policies

    retry, other = RetryPolicy(max_retries=2), RetryPolicy(max_retries=5)
    plain, own = FunctionStep(len, name="plain"), FunctionStep(len, name="own", policies=[retry])
    assert (step_policies(plain), step_policies(own)) == ((), [retry])
    assert "policies" not in plain.__dict__  # nothing made for the step that has none
    monkeypatch.setattr(Step, "policies", [other], raising=False)
    assert (step_policies(plain), step_policies(own)) == ([other], [retry])
    monkeypatch.setattr(FunctionStep, "policies", property(lambda self: [retry, other]), raising=False)
    assert step_policies(plain) == step_policies(own) == [retry, other]
    monkeypatch.undo()
    assert (step_policies(plain), step_policies(own)) == ((), [retry])


def test_an_indexed_source_still_finds_a_repeat_of_an_edge_to_a_new_target() -> None:
    """A first edge to a step with no sources is added without a search, except from a source whose
    out-links are indexed: the index must learn it, or the edge's repeat would count twice."""
    hub = FunctionStep(len, name="hub")
    spokes = [FunctionStep(len, name=f"s{i}") for i in range(40)]
    for s in spokes:
        _ = hub >> s
    _ = hub >> spokes[7]  # a repeat among many out-links: the hub's out-links get an index
    assert hub._out_keys is not None
    late = FunctionStep(len, name="late")
    _ = hub >> late
    _ = hub >> late
    _ = (hub - "other") >> late
    assert [(t.name, action) for t, action, _ in hub.edges].count(("late", "default")) == 1
    assert sources(late) == [hub] and len(hub.edges) == 42
