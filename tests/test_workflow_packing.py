"""A workflow pickles compactly (steps without their links, the schema as tuples) and runs the same after."""

from __future__ import annotations

import copyreg
import pickle
from typing import Any

import cloudpickle
import pytest

import fuseline_nb as fl
from fuseline_nb import Depends, FunctionStep, Step, Workflow
from fuseline_nb.broker.base import StepAssignment
from fuseline_nb.worker import shipping
from fuseline_nb.worker.engine import execute
from fuseline_nb.worker.shipping import load_definition, ship
from fuseline_nb.workflow.policies import RetryPolicy
from fuseline_nb.workflow.wiring import sources

FACTOR = 2


def load(n: int) -> list[int]:
    return list(range(n))


def total(items: list[int] = Depends(load)) -> int:
    return sum(items) * FACTOR


def noop() -> None:
    return None


class Scale(Step):
    def __init__(self, by: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.by = by

    def run_step(self, value: int = Depends(total)) -> int:
        return value * self.by


class Custom(Step):
    """A step class with its own pickling: it must still travel (as a stripped copy)."""

    def __init__(self, tag: str) -> None:
        super().__init__(name="custom")
        self.tag = tag

    def __reduce__(self) -> Any:
        return (_custom, (self.tag, self.__dict__))

    def run_step(self, value: int = Depends(Scale)) -> str:
        return f"{self.tag}:{value}"


def _custom(tag: str, state: dict[str, Any]) -> Custom:
    step = Custom.__new__(Custom)
    step.__dict__.update(state)
    return step


def _roundtrip(wf: Workflow) -> Workflow:
    key, blob = ship(wf)
    copy = load_definition(key, blob)
    assert copy is not wf
    return copy


def _branching() -> Workflow:
    gate = FunctionStep(lambda n: "big" if n > 2 else "small", name="gate")
    big, small = FunctionStep(lambda: "B", name="big"), FunctionStep(lambda: "S", name="small")
    done = FunctionStep(lambda: "done", name="done", policies=[RetryPolicy(max_retries=1)])
    _ = (gate - "big") >> big
    _ = (gate - "small") >> small
    _ = (big | small) >> done
    return Workflow(outputs=[done])


def test_a_shipped_workflow_runs_the_same_without_its_links() -> None:
    scale = Scale(3)
    wf = Workflow(outputs=[Custom("t"), scale], name="packed")
    wf2 = _branching()
    for original in (wf, wf2):
        copy = _roundtrip(original)
        assert copy.to_schema() == original.to_schema()
        assert copy.to_schema().structure_key() == original.to_schema().structure_key()
        assert copy.bindings == original.bindings
        assert sorted(copy.graph.edges(data="action")) == sorted(original.graph.edges(data="action"))
        assert copy.output_names == original.output_names and copy.step_names == original.step_names
        # the links between step objects stayed behind: a worker runs steps by name
        assert all("_out" not in s.__dict__ and "_in" not in s.__dict__ for s in copy.steps.values())
        assert all(not s.edges and not sources(s) for s in copy.steps.values())
    assert len(wf2.steps["gate"].edges) == 2  # the kernel's steps keep their links
    assert _roundtrip(wf).run({"n": 4}) == wf.run({"n": 4}) == ["t:36", 36]
    assert _roundtrip(wf2).run({"n": 4}) == wf2.run({"n": 4}) == "done"
    assert _roundtrip(wf).steps["Scale"].by == scale.by == 3


def test_a_workflow_unpickled_remakes_its_schema_when_a_global_changes() -> None:
    global FACTOR
    wf = workflow = fl.workflow_from_functions([total])
    copy = _roundtrip(workflow)
    before = copy.to_schema()
    FACTOR = 5
    try:
        assert copy.refresh()  # the edited global changes total's fingerprint: a new schema, edges remade
        after = copy.to_schema()
        assert after is not before and after.edges == before.edges
        assert after.fingerprints()["total"] != before.fingerprints()["total"]
        assert copy.run({"n": 3}) == wf.run({"n": 3}) == 15
    finally:
        FACTOR = 2


def test_a_large_fan_out_pickles_in_a_few_bytes_per_step() -> None:
    head, tail = FunctionStep(noop, name="head"), FunctionStep(noop, name="tail")
    for i in range(2000):
        head >> FunctionStep(noop, name=f"m{i}") >> tail
    wf = Workflow(outputs=[tail])
    _, blob = ship(wf)
    # each step: its name, a reference to the shared function and fingerprint, two edge tuples
    # (the steps with their links and the schema as dataclasses took ~450 bytes per step)
    assert len(blob) / len(wf) < 150, len(blob) / len(wf)
    copy = load_definition((wf.workflow_id, wf.version), blob)
    assert copy.to_schema() == wf.to_schema() and len(copy.to_schema().edges) == 4000


def test_the_structure_key_is_a_digest_shared_by_workflow_and_schema() -> None:
    wf = fl.workflow_from_functions([total])
    schema = wf.to_schema()
    assert len(schema.structure_key()) == 64
    rebuilt = fl.workflow.WorkflowSchema.from_json(schema.to_json())
    assert rebuilt.structure_key() == schema.structure_key()
    assert wf.workflow_id.endswith(schema.structure_key()[:12])


def test_a_workers_schema_goes_back_to_its_kernel_by_reference() -> None:
    """A worker registers the schemas it was shipped: its kernel gets its own objects back, not a copy."""
    head, tail = FunctionStep(noop, name="head"), FunctionStep(noop, name="tail")
    for i in range(500):
        head >> FunctionStep(noop, name=f"m{i}") >> tail
    wf = Workflow(outputs=[tail])
    blob = ship(wf)
    in_worker = shipping.load([blob], by_reference=True)[blob[0]]
    sent = pickle.dumps(in_worker.to_schema())
    assert len(sent) < 300  # a name, not 500 steps
    assert pickle.loads(sent) is wf.to_schema()
    # the worker never built the schema: it holds a stand-in, which says so when asked for steps
    with pytest.raises(RuntimeError, match="loaded in a worker process without its schema"):
        len(in_worker.to_schema().steps)
    assert in_worker.to_schema().structure_key() == wf.to_schema().structure_key()
    # and it runs its steps all the same
    a = StepAssignment(wf.workflow_id, "r1", "m7", {"workflow_inputs": {}, "results": {}}, 0.0, 60.0,
                       version=wf.version)
    assert execute({blob[0]: in_worker}, a, "w1").state is fl.Status.SUCCEEDED
    # loaded elsewhere (a Dask worker, the kernel resuming a file), the schema travels whole
    whole = pickle.dumps(shipping.load([blob])[blob[0]].to_schema())
    assert len(whole) > 10 * len(wf) and pickle.loads(whole) == wf.to_schema()


def test_bytes_pickled_before_packing_still_load() -> None:
    """A definition stored by an older version: the workflow alone, pickled with its steps' links, no structure."""
    wf = fl.workflow_from_functions([total])
    wf.to_schema()
    state = {k: v for k, v in wf.__dict__.items() if k not in ("_structure", "_schema_cache")}
    for step in wf.steps.values():  # the links as steps held them then: lists in _edges and _incoming
        d = step.__dict__
        d["_edges"], d["_incoming"] = step.edges, sources(step)
        del d["_out"], d["_in"]

    class Old:
        def __reduce__(self) -> Any:
            return (copyreg._reconstructor, (Workflow, object, None), state)

    blob = cloudpickle.dumps(Old())
    old = load_definition((wf.workflow_id, wf.version), blob)
    assert old.to_schema() == wf.to_schema()
    assert old.run({"n": 3}) == wf.run({"n": 3}) == 6


def test_a_repeated_edge_is_one_edge_on_short_and_long_fan_outs() -> None:
    """Wiring keeps no set per step until a step has many edges: repeats are still found either way."""
    head, tail = FunctionStep(noop, name="head"), FunctionStep(noop, name="tail")
    mids = [FunctionStep(noop, name=f"m{i}") for i in range(20)]
    for _ in range(3):  # every edge wired three times, crossing the point where a set appears
        for m in mids:
            head >> m >> tail
            (head - "alt") >> m
    assert len(head.edges) == 40 and len(sources(tail)) == 20
    assert head._out_keys is not None and mids[0]._out_keys is None  # an index only where long
    wf = Workflow(outputs=[tail])
    assert len(wf.to_schema().edges) == 60 and wf.graph.edges["head", "m3"]["action"] == "default|alt"


def test_a_worker_plans_only_the_steps_it_runs() -> None:
    """A loaded workflow makes a step's binding when the step first runs: a worker running half of a
    1→N→1 fan-out plans half of it (it planned every step before running any)."""
    head, tail = FunctionStep(noop, name="head"), FunctionStep(noop, name="tail")
    for i in range(10):
        head >> FunctionStep(noop, name=f"m{i}") >> tail
    wf = Workflow(outputs=[tail], name="halves")
    loaded = shipping.load([ship(wf)], by_reference=True)
    copy = loaded[(wf.workflow_id, wf.version)]
    assert copy.bindings.planned == 0 and len(copy.bindings) == 12 and "m3" in copy.bindings
    for name in ("head", "m0", "m1"):
        a = StepAssignment(wf.workflow_id, "r1", name, {"workflow_inputs": {}, "results": {}}, 0.0, 60.0,
                           version=wf.version)
        assert execute(loaded, a, "w1").state is fl.Status.SUCCEEDED
    assert copy.bindings.planned == 3
    assert dict(copy.bindings) == dict(wf.bindings) and copy.bindings.planned == 12
    with pytest.raises(KeyError):
        copy.bindings["nope"]


def test_steps_of_one_kind_pack_as_one_group_and_mixed_ones_keep_their_order() -> None:
    from fuseline_nb.workflow.packing import pack_steps, unpack_steps

    class Own(Step):
        def run_step(self) -> int:
            return 1

    same = [FunctionStep(len, name=f"s{i}") for i in range(5)]
    packed = pack_steps(same)
    assert packed[1] is None and len(packed[2]) == 1  # one group, no group id per step
    back = unpack_steps(pickle.loads(pickle.dumps(packed)))
    def attrs(s: Step) -> dict[str, str]:
        return {k: repr(v) for k, v in vars(s).items() if k not in ("_in", "_out")}  # links travel apart

    assert [(type(s), attrs(s)) for s in back] == [(type(s), attrs(s)) for s in same]
    odd = FunctionStep(len, name="odd", policies=[RetryPolicy(max_retries=1)])  # another attribute set
    for mixed in ([*same[:2], odd, *same[2:]], [*same[:3], Own(name="own"), *same[3:]], [odd], [Own(name="o")]):
        back = unpack_steps(pickle.loads(cloudpickle.dumps(pack_steps(mixed))))
        assert [(type(s), attrs(s)) for s in back] == [(type(s), attrs(s)) for s in mixed]
    assert pack_steps([]) == ("columns", None, [])
