"""A built workflow keeps one table of its edges: the structure's until the schema is made, the schema's after."""

from __future__ import annotations

import pytest

from fuseline_nb import Computed, Depends, FunctionStep, Workflow


def noop() -> None:
    return None


def _workflow() -> Workflow:
    gate = FunctionStep(lambda: "big", name="gate")
    big, small = FunctionStep(noop, name="big"), FunctionStep(noop, name="small")
    _ = (gate - "big") >> big
    _ = (gate - "small") >> small
    _ = gate >> big  # a second action on one pair

    def report(value: Computed[None] = Depends(big, small)) -> str:
        return "done"

    return Workflow(outputs=[FunctionStep(report)], workflow_id="w")


def test_after_the_schema_the_graph_and_a_new_version_read_the_schemas_edges() -> None:
    wf, fresh = _workflow(), _workflow()
    expected = sorted(fresh.graph.edges(data=True))  # made before any schema
    schema = wf.to_schema()
    assert wf._structure.edges is None  # the schema's edges are the only table now
    assert sorted(wf.graph.edges(data=True)) == expected
    assert wf.graph.edges["gate", "big"]["action"] == "big|default"
    other = _workflow()
    other.to_schema()
    clash = Workflow(outputs=[FunctionStep(noop, name="x")], workflow_id="w")
    assert other.settle_version([clash.to_schema()])  # same id and version, another structure
    again = other.to_schema()
    assert again is not schema and again.edges == schema.edges
    assert again.structure_key() == schema.structure_key() == fresh.to_schema().structure_key()


def test_the_structure_key_hashed_in_slices_is_the_schemas_key() -> None:
    """The workflow hashes its canonical text a slice at a time; a schema read back (no cached key)
    hashes the whole text: the digests agree, past one slice and with names JSON escapes."""
    from fuseline_nb.workflow.schema import WorkflowSchema
    from fuseline_nb.workflow.structure import _SLICE

    head, tail = FunctionStep(noop, name='he"ad\\'), FunctionStep(noop, name="tail é")
    for i in range(_SLICE + 10):
        _ = head >> FunctionStep(noop, name=f"m{i}\t") >> tail
    side = FunctionStep(noop, name="side")
    _ = (head - "ünïcode") >> side
    wf = Workflow(outputs=[tail, side])
    schema = wf.to_schema()
    again = WorkflowSchema.from_json(schema.to_json())
    assert "_structure_key" not in again.__dict__  # computed from the whole text below
    assert again.structure_key() == schema.structure_key() == wf._key
    assert wf.workflow_id == f"workflow-{wf._key[:12]}"


def test_the_schema_reads_steps_and_fingerprints_side_by_side_or_by_name_when_out_of_order() -> None:
    from fuseline_nb.workflow.structure import build
    from fuseline_nb.workflow.toschema import make_schema

    wf = _workflow()
    fps = wf.fingerprints()
    st = wf._full()
    in_order = make_schema(st, "w", "1", "w", (), fps)
    shuffled = dict(reversed(list(fps.items())))  # the same fingerprints in another order: looked up by name
    assert make_schema(st, "w", "1", "w", (), shuffled) == in_order
    marked = {n: f"{n}-fp" for n in fps}
    assert [s.fingerprint for s in make_schema(st, "w", "1", "w", (), dict(reversed(list(marked.items())))).steps] \
        == [f"{n}-fp" for n in st.order]
    # a structure whose steps dict is in another order than its order: each step found by name
    other = build(wf.outputs)
    other.steps = dict(reversed(list(other.steps.items())))
    assert make_schema(other, "w", "1", "w", (), fps) == in_order
    # a missing fingerprint is a KeyError naming the step, not a silent shift
    fewer = dict(list(fps.items())[1:])
    with pytest.raises(KeyError, match=repr(st.order[0])):
        make_schema(st, "w", "1", "w", (), fewer)


def test_neighbours_share_a_fingerprint_but_a_step_holding_its_own_value_gets_its_own() -> None:
    def work() -> None:
        return None

    head, tail = FunctionStep(noop, name="head"), FunctionStep(noop, name="tail")
    spokes = [FunctionStep(work, name=f"w{i}") for i in range(5)]
    spokes[2].threshold = 5  # an attribute of its own: part of its fingerprint
    for s in spokes:
        _ = head >> s >> tail
    fps = Workflow(outputs=[tail]).fingerprints()
    assert fps["w0"] == fps["w1"] == fps["w3"] == fps["w4"] != fps["w2"]
    assert fps["head"] == fps["tail"] != fps["w0"]


def test_the_key_of_edges_with_several_actions_and_groups_is_the_schemas() -> None:
    from fuseline_nb.workflow.schema import WorkflowSchema

    gate = FunctionStep(lambda: "z", name="gate")
    a, b, c = (FunctionStep(noop, name=n) for n in "abc")
    for action in ("z", "y", "x"):  # declared out of order: the schema keeps it, the key sorts
        _ = (gate - action) >> a
    _ = (a | b) >> c
    _ = gate >> b
    wf = Workflow(outputs=[c])
    schema = wf.to_schema()
    assert [e.action for e in schema.edges if (e.source, e.target) == ("gate", "a")] == ["z", "y", "x"]
    again = WorkflowSchema.from_json(schema.to_json())
    assert "_structure_key" not in again.__dict__
    assert again.structure_key() == schema.structure_key() == wf._key
