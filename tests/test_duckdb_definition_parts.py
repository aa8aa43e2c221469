"""A workflow's definition in the DuckDB history as parts: rows per step and edge, the view's text rebuilt.

The ``workflows`` view's ``schema_json`` must stay byte for byte
``WorkflowSchema.to_json()`` (tests and users compare it), whatever the
names hold; a file written before (version 6, the whole text in the row)
opens, migrates and reads as before; a known definition registered again
writes nothing.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from fuseline_nb.broker import DuckDBBroker
from fuseline_nb.broker.storage import DuckDBRuntimeStorage, _duckdb_schema
from fuseline_nb.broker.storage import _duckdb_sql as Q
from fuseline_nb.workflow._schema_json import pieces
from fuseline_nb.workflow.schema import EdgeSchema, StepSchema, WorkflowSchema

ODD_NAMES = ['say "hi"', "back\\slash", "tab\there", "é-accent", "line\nbreak", "😀", "plain"]


def _odd_schema(ghost: bool = True) -> WorkflowSchema:
    """Steps of several shapes (policies, reads, inputs, no cache), odd names, every kind of edge.

    ``ghost``: with an edge naming a step the schema lacks (a storage keeps what it is given;
    a broker refuses it when it makes the plan)."""
    retry = ({"name": "retry", "config": {"max_retries": 2, "wait": 0.5}},)
    steps = [StepSchema("head", "function", "m:head", fingerprint="f0", inputs=("x",))]
    steps += [StepSchema(n, "function", "m:f", retry, fingerprint="f1", reads=("x", "y")) for n in ODD_NAMES]
    steps += [StepSchema(f"c{i}", "class", "m:C", conditional=True, cache=False, fingerprint="f2")
              for i in range(3)]
    steps += [StepSchema("tail", "function", "m:tail", fingerprint="f3", reads=())]
    edges = [EdgeSchema("head", n) for n in ODD_NAMES]
    edges += [EdgeSchema(n, "tail", action="ok", group="g") for n in ODD_NAMES]
    edges += [EdgeSchema("head", f"c{i}", action="branch é") for i in range(3)]
    edges += [EdgeSchema("c0", "ghost")] if ghost else []
    return WorkflowSchema("odd", "3", tuple(steps), tuple(edges), outputs=("tail", 'say "hi"'), name='odd "é"',
                          policies=({"name": "timeout", "config": {"seconds": 3}},))


def _count(st: DuckDBRuntimeStorage, table: str) -> int:
    return st._execute(f"SELECT count(*) FROM {table}")[0][0]


@pytest.mark.parametrize("chunk", [_duckdb_schema.CHUNK, 7])  # 7: steps and edges written over several INSERTs
def test_the_view_rebuilds_to_json_byte_for_byte_and_the_file_reads_the_schema_back(tmp_path, monkeypatch,
                                                                                    chunk: int) -> None:
    monkeypatch.setattr(_duckdb_schema, "CHUNK", chunk)
    odd, empty = _odd_schema(), WorkflowSchema("empty", name="nothing")
    fan = WorkflowSchema("fan", steps=(StepSchema("h"), *(StepSchema(f"m{i}") for i in range(300)), StepSchema("t")),
                         edges=tuple(EdgeSchema(a, b) for i in range(300) for a, b in (("h", f"m{i}"), (f"m{i}", "t"))),
                         outputs=("t",))
    path = tmp_path / "h.duckdb"
    with DuckDBRuntimeStorage(path) as st:
        for schema in (odd, empty, fan):
            st.register_workflow(schema)
        st.flush()
        # stored as parts: no row holds the text; the fan-out's 302 steps share one shape
        assert st._execute("SELECT count(*) FROM fl_workflows WHERE schema_json IS NOT NULL") == [(0,)]
        assert st._execute("SELECT count(*), count(DISTINCT shape) FROM fl_workflow_steps s "
                           "JOIN fl_workflows w USING (parts_id) WHERE w.workflow_id = 'fan'") == [(302, 1)]
        texts = dict(st.sql("SELECT workflow_id, schema_json FROM workflows").fetchall())
        for schema in (odd, empty, fan):
            assert texts[schema.workflow_id] == schema.to_json() == json.dumps(schema.to_dict(), sort_keys=True)
    with DuckDBRuntimeStorage(path) as st:  # read back from the parts, in the order registered
        assert st.list_workflows() == [odd, empty, fan]
        back = st.get_workflow("fan", "1")
        assert back is not None and back.edges[0].target is back.steps[1].name  # edges name the steps' strings


def test_a_schema_whose_names_are_not_all_strings_keeps_its_whole_text(tmp_path) -> None:
    schema = WorkflowSchema("ints", steps=(StepSchema(7),), outputs=(7,))  # type: ignore[arg-type]
    assert pieces(schema) is None
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
        st.register_workflow(schema)
        st.flush()
        assert st._execute("SELECT schema_json FROM fl_workflows") == [(schema.to_json(),)]
        assert st.sql("SELECT schema_json FROM workflows").fetchall() == [(schema.to_json(),)]
        assert _count(st, "fl_workflow_steps") == 0


def test_a_known_definition_registered_again_writes_nothing(tmp_path) -> None:
    schema = _odd_schema()
    path = tmp_path / "h.duckdb"
    with DuckDBRuntimeStorage(path) as st:
        st.register_workflow(schema)
        st.flush()
        counts = [_count(st, t) for t in ("fl_workflows", "fl_workflow_shapes", "fl_workflow_steps",
                                          "fl_workflow_edges")]
        assert counts == [1, 4 + 3, len(schema.steps), len(schema.edges)]  # step shapes, edge shapes
    with DuckDBRuntimeStorage(path) as st:  # another session on the file: known from the file
        st.register_workflow(schema)
        assert st._batch.empty
        # even a batch naming it again (a write retried after a failure) adds no row
        st._batch.add_workflow(schema)
        st.flush()
        assert [_count(st, t) for t in ("fl_workflows", "fl_workflow_shapes", "fl_workflow_steps",
                                        "fl_workflow_edges")] == counts


#: A version-6 file's fl_workflows row, as version 6 wrote it: the whole text in schema_json.
def _version_6_file(path: str, schema: WorkflowSchema) -> None:
    con = duckdb.connect(path)
    for sql in Q.CREATE_V1:
        con.execute(sql)
    for version in range(1, 6):
        for sql in Q.MIGRATIONS[version]:
            con.execute(sql)
    con.execute("UPDATE schema_version SET version = 6")
    con.execute("INSERT INTO fl_workflows VALUES (?, ?, ?, ?, 1.0)",
                [schema.workflow_id, schema.version, schema.name, schema.to_json()])
    con.execute("INSERT INTO fl_runs VALUES ('r1', ?, ?, 'SUCCEEDED', '{}', NULL, 1.0, 2.0)",
                [schema.workflow_id, schema.version])
    con.close()


def test_a_version_6_file_is_migrated_and_its_definition_reads_as_before(tmp_path) -> None:
    old, new = _odd_schema(ghost=False), WorkflowSchema("new", steps=(StepSchema("a"), StepSchema("b")),
                                             edges=(EdgeSchema("a", "b"),))
    path = str(tmp_path / "v6.duckdb")
    _version_6_file(path, old)
    with DuckDBBroker(path) as broker:
        st = broker.storage
        assert st._execute("SELECT version FROM schema_version") == [(Q.CURRENT_VERSION,)]
        assert st.get_workflow(old.workflow_id, old.version) == old
        st.register_workflow(new)  # a new definition in the migrated file: stored as parts
        rows = broker.sql("SELECT w.workflow_id, w.schema_json, r.run_id FROM workflows w "
                          "LEFT JOIN runs r USING (workflow_id, version) ORDER BY w.registered_at").fetchall()
        assert rows == [(old.workflow_id, old.to_json(), "r1"), ("new", new.to_json(), None)]
        assert st._execute("SELECT workflow_id FROM fl_workflows WHERE schema_json IS NULL") == [("new",)]
    with DuckDBBroker(path) as broker:
        assert broker.storage.list_workflows() == [old, new]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_each_odd_name_alone_round_trips(tmp_path, name: str) -> None:
    schema = WorkflowSchema("w", steps=(StepSchema(name), StepSchema("x")), edges=(EdgeSchema(name, "x"),),
                            outputs=(name,))
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
        st.register_workflow(schema)
        assert st.sql("SELECT schema_json FROM workflows").fetchall() == [(schema.to_json(),)]
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
        assert st.list_workflows() == [schema]


def _row(path) -> tuple:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT parts_id, registered_at FROM fl_workflows").fetchall()
    finally:
        con.close()


def test_the_same_definition_again_writes_nothing_and_an_edited_one_replaces_it(tmp_path) -> None:
    from dataclasses import replace

    path = tmp_path / "h.duckdb"
    schema = _odd_schema(ghost=False)
    # the cell edited and run again: the same structure, another fingerprint and retry setting
    edited = replace(schema, steps=(replace(schema.steps[0], fingerprint="f0-edited"),
                                    replace(schema.steps[1], policies=({"name": "retry", "config": {
                                        "max_retries": 5, "wait": 0.5}},)), *schema.steps[2:]))
    tables = ("fl_workflows", "fl_workflow_shapes", "fl_workflow_steps", "fl_workflow_edges")
    with DuckDBBroker(path) as broker:
        broker.dispatch_workflow(schema, {"x": 1})
        broker.storage.flush()
        counts = [_count(broker.storage, t) for t in tables]
        (first,) = broker.storage._execute("SELECT parts_id, registered_at FROM fl_workflows")
        # the same object and an equal copy (read back from JSON): nothing buffered, nothing written
        broker.dispatch_workflow(schema, {"x": 1})
        broker.dispatch_workflow(WorkflowSchema.from_json(schema.to_json()), {"x": 1})
        assert not broker.storage._batch.workflows
        broker.storage.flush()
        assert broker.storage._execute("SELECT parts_id, registered_at FROM fl_workflows") == [first]
        broker.dispatch_workflow(edited, {"x": 1})
        broker.storage.flush()
        (row,) = broker.storage._execute("SELECT parts_id, registered_at FROM fl_workflows")
        assert row[1] > first[1]  # written again, registered now
        # one definition's rows: the older parts are gone (the edited step has a shape of its own)
        assert [_count(broker.storage, t) for t in tables] == [1, len(pieces(edited).shapes), *counts[2:]]
        assert len(pieces(edited).shapes) == counts[1] + 1
        [(text,)] = broker.storage.sql("SELECT schema_json FROM workflows").fetchall()
        assert text == edited.to_json()
    assert _row(path) == [row]
    with DuckDBBroker(path) as broker:  # reopened: the edited definition is the key's
        assert broker.list_workflows() == [edited]
        [(text,)] = broker.storage.sql("SELECT schema_json FROM workflows").fetchall()
        assert json.loads(text)["steps"][0]["fingerprint"] == "f0-edited"
