"""A built workflow keeps one table of its edges: the structure's until the schema is made, the schema's after."""

from __future__ import annotations

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
