"""The schema's JSON (stored in DuckDB, served over HTTP): every field of every schema class round-trips, the
text is exactly ``json.dumps(to_dict(), sort_keys=True)``, and definitions written by older versions still read."""

from __future__ import annotations

import dataclasses
import json
import pickle
import random

import duckdb
import pytest

from fuseline_nb.broker.storage.duckdb import DuckDBRuntimeStorage
from fuseline_nb.workflow.schema import EdgeSchema, StepSchema, WorkflowSchema, edge_schema, step_schema

# A value for every field of every schema class, none of them the default: a field added later without a
# value here fails test_every_field_has_a_test_value (so it cannot go untested through the JSON).
STEP_VALUES = {
    "name": 'load "ü" \\ step',
    "kind": "function",
    "target": "etl.jobs:load",
    "policies": ({"name": "retry", "config": {"max_retries": 2, "wait": 0.5, "on": ["A", "B"]}},
                 {"type": "Custom"}),
    "conditional": True,
    "fingerprint": "0123456789abcdef0123456789abcdef",
    "cache": False,
    "reads": ("path", "limit"),
    "inputs": ("path",),
}
EDGE_VALUES = {"source": "a", "target": "b", "action": "approve", "group": "inputs"}
WORKFLOW_VALUES = {
    "workflow_id": "wf-1", "version": "7", "name": "Demo ✓", "outputs": ("b",),
    "policies": ({"name": "timeout", "config": {"seconds": 3}},),
}


def _full_schema() -> WorkflowSchema:
    steps = (StepSchema(**STEP_VALUES), StepSchema("a"), StepSchema("b", reads=(), inputs=("x", "y")),
             StepSchema("c", policies=({"name": "retry", "config": {}},)), StepSchema("d", cache=False))
    edges = (EdgeSchema(**EDGE_VALUES), EdgeSchema("a", "b", "reject", "inputs"), EdgeSchema("a", "c"),
             EdgeSchema("c", "d"), EdgeSchema(STEP_VALUES["name"], "d", group="g"))
    return WorkflowSchema(steps=steps, edges=edges, **WORKFLOW_VALUES)  # type: ignore[arg-type]


def test_every_field_has_a_test_value() -> None:
    for cls, values in ((StepSchema, STEP_VALUES), (EdgeSchema, EDGE_VALUES)):
        for f in dataclasses.fields(cls):
            assert f.name in values, f"add a test value for {cls.__name__}.{f.name}"
            assert values[f.name] != f.default, f"{cls.__name__}.{f.name}'s test value is its default"
    assert {f.name for f in dataclasses.fields(WorkflowSchema)} == {*WORKFLOW_VALUES, "steps", "edges"}


def test_json_is_exactly_the_sorted_dump_of_to_dict_and_round_trips_every_field() -> None:
    schema = _full_schema()
    text = schema.to_json()
    assert text == json.dumps(schema.to_dict(), sort_keys=True)
    back = WorkflowSchema.from_json(text)
    assert back == schema
    for a, b in zip(back.steps, schema.steps, strict=True):
        for f in dataclasses.fields(StepSchema):
            assert getattr(a, f.name) == getattr(b, f.name), f.name
            assert type(getattr(a, f.name)) is type(getattr(b, f.name)), f.name
    assert WorkflowSchema.from_dict(schema.to_dict()) == schema
    assert back.to_json() == text


def test_steps_sharing_their_fields_and_odd_values_write_the_same_text_as_json_dumps() -> None:
    shared = ("x",)
    steps = [step_schema(f"m{i}", "function", "mod:f", (), False, "f" * 32, True, None, shared) for i in range(50)]
    steps.append(StepSchema("lone\ttab", reads=("r",)))
    steps.append(StepSchema("p", policies=({"b": 1, "a": [1.5, None, True]},)))
    steps.append(StepSchema("q", policies=({"b": 1, "a": [1.5, None, True]},)))  # equal specs, another tuple
    edges = [edge_schema("m0", f"m{i}", "default", None) for i in range(1, 50)]
    edges.append(EdgeSchema("m1", "p", "go", None))
    edges.append(EdgeSchema("not a step", "q"))  # a name no step has: written as any string
    schema = WorkflowSchema("w", steps=tuple(steps), edges=tuple(edges), outputs=("q", "p"))
    assert schema.to_json() == json.dumps(schema.to_dict(), sort_keys=True)
    assert WorkflowSchema.from_json(schema.to_json()) == schema


def test_read_back_steps_share_repeated_values_like_built_ones() -> None:
    schema = WorkflowSchema("w", steps=tuple(StepSchema(f"s{i}", "function", "m:f", fingerprint="a" * 32,
                                                        inputs=("x",)) for i in range(3)),
                            edges=(EdgeSchema("s0", "s1"), EdgeSchema("s0", "s2")))
    back = WorkflowSchema.from_json(schema.to_json())
    assert back.steps[1].target is back.steps[2].target
    assert back.steps[1].fingerprint is back.steps[2].fingerprint
    assert back.steps[1].inputs is back.steps[2].inputs
    assert back.edges[0].source is back.edges[1].source is back.steps[0].name


def test_schema_objects_have_no_dict_and_stay_frozen() -> None:
    s = StepSchema("a")
    assert not hasattr(s, "__dict__") and not hasattr(EdgeSchema("a", "b"), "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "b"  # type: ignore[misc]
    made = step_schema("a", "step", "", (), False, "", True, None, ())
    assert type(made) is StepSchema and made == s and hash(made) == hash(s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.kind = "x"  # type: ignore[misc]
    e = edge_schema("a", "b", "default", None)
    assert type(e) is EdgeSchema and e == EdgeSchema("a", "b")


def test_pickle_and_pydantic_round_trip_every_field() -> None:
    from pydantic import TypeAdapter

    schema = _full_schema()
    assert pickle.loads(pickle.dumps(schema)) == schema
    assert pickle.loads(pickle.dumps(schema.steps[0])) == schema.steps[0]
    adapter = TypeAdapter(WorkflowSchema)
    assert adapter.validate_json(adapter.dump_json(schema)) == schema


# What the first version (81f0afd) wrote: steps without fingerprint, cache, reads or inputs.
OLD_DEFINITION = (
    '{"edges": [{"action": "default", "group": null, "source": "load", "target": "total"}], "name": "old", '
    '"outputs": ["total"], "policies": [], "steps": [{"conditional": false, "kind": "function", "name": "load", '
    '"policies": [], "target": "__main__:load"}, {"conditional": false, "kind": "function", "name": "total", '
    '"policies": [{"config": {"max_retries": 1, "wait": 0}, "name": "retry"}], "target": "__main__:total"}], '
    '"version": "1", "workflow_id": "old-wf"}'
)
# And a hand-written one with only the required keys.
MINIMAL_DEFINITION = '{"workflow_id": "mini", "steps": [{"name": "a"}, {"name": "b"}], ' \
                     '"edges": [{"source": "a", "target": "b"}]}'


def test_old_and_minimal_definitions_read_with_defaults() -> None:
    old = WorkflowSchema.from_json(OLD_DEFINITION)
    assert old.step_names == ("load", "total")
    assert old.steps[0] == StepSchema("load", "function", "__main__:load")
    assert old.steps[1].policies == ({"config": {"max_retries": 1, "wait": 0}, "name": "retry"},)
    assert (old.steps[1].cache, old.steps[1].reads, old.steps[1].inputs, old.steps[1].fingerprint) == (
        True, None, (), "")
    assert old.edges == (EdgeSchema("load", "total"),)
    mini = WorkflowSchema.from_json(MINIMAL_DEFINITION)
    assert mini == WorkflowSchema("mini", steps=(StepSchema("a"), StepSchema("b")), edges=(EdgeSchema("a", "b"),))


def test_a_duckdb_file_holding_an_old_definition_still_opens_and_reads_it(tmp_path) -> None:
    path = str(tmp_path / "h.duckdb")
    DuckDBRuntimeStorage(path).close()  # a file with today's tables
    con = duckdb.connect(path)
    con.execute("INSERT INTO fl_workflows (workflow_id, version, name, schema_json, registered_at) "
                "VALUES (?, ?, ?, ?, 1.0)", ["old-wf", "1", "old", OLD_DEFINITION])
    con.close()
    storage = DuckDBRuntimeStorage(path)
    try:
        got = storage.get_workflow("old-wf", "1")
        assert got == WorkflowSchema.from_json(OLD_DEFINITION)
        assert got is not None and got.outputs == ("total",)
    finally:
        storage.close()


def test_random_small_schemas_write_json_dumps_text_and_their_pieces_make_them_again() -> None:
    # no steps, no edges, edges only, edges naming unknown steps, odd names and fields, in any mix:
    # to_json (one join of every part) is json.dumps's text, and pieces/from_pieces give the schema back
    from fuseline_nb.workflow._schema_json import from_pieces, pieces

    rng = random.Random(13)
    for trial in range(300):
        names = [rng.choice(["a", 'b"q', "é", "t\tx", "n\\"]) + str(i) for i in range(rng.randint(0, 5))]
        steps = tuple(StepSchema(n, rng.choice(["function", "class"]), "m:f", cache=rng.random() < 0.5,
                                 reads=rng.choice([None, ("x",)])) for n in names)
        edges = tuple(EdgeSchema(rng.choice([*names, "ghost"]), rng.choice([*names, "z"]),
                                 action=rng.choice(["default", "x"]), group=rng.choice([None, "g"]))
                      for _ in range(rng.randint(0, 4)))
        schema = WorkflowSchema(f"w{trial}", steps=steps, edges=edges, outputs=tuple(names[:1]),
                                name=rng.choice(["", 'é"']))
        assert schema.to_json() == json.dumps(schema.to_dict(), sort_keys=True)
        p = pieces(schema)
        assert p is not None
        assert from_pieces(p.head, p.middle, p.tail, dict(enumerate(p.shapes)), list(p.step_shapes), list(names),
                           list(p.edge_shapes), [e.source for e in edges], [e.target for e in edges]) == schema
