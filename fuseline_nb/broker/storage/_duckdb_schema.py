"""A workflow's definition in the DuckDB history: small rows, its JSON text rebuilt by SQL.

The ``workflows`` view shows each workflow's ``schema_json``: the text of
:meth:`~fuseline_nb.workflow.schema.WorkflowSchema.to_json`. Stored as one
value, a 1,000,000-step definition is ~350 MB of text, and DuckDB holds a
statement's parameter several times over while inserting it (~4× its size
at the peak, ~2× kept until the connection closes). So a definition is
stored cut into the texts its steps share (``fl_workflow_shapes``: a
function's steps differ only by name) and a row per step and per edge
naming its shape (``fl_workflow_steps``, ``fl_workflow_edges``), written
from Arrow columns of the schema's own name strings; ``fl_workflows`` keeps
the text around the steps and edges and a ``parts_id`` naming the rows.
The view rebuilds the text byte for byte (:data:`SCHEMA_JSON`); a row
written before (version ≤ 6) or a schema whose names are not all strings
keeps its whole text in ``schema_json``.

Examples
--------
>>> import duckdb, threading
>>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
>>> from fuseline_nb.broker.storage._duckdb_open import migrate
>>> con = duckdb.connect(":memory:")
>>> execute = lambda sql, params=None: con.execute(sql, params).fetchall()
>>> migrate(execute, threading.RLock(), ":memory:")  # a new history: tables and views
>>> s = WorkflowSchema("w", steps=(StepSchema("a"), StepSchema('say "hi"')), edges=(EdgeSchema("a", 'say "hi"'),))
>>> write_workflow(lambda fn, *a, **k: fn(*a, **k), con, s, 0.0)
True
>>> write_workflow(lambda fn, *a, **k: fn(*a, **k), con, s, 1.0)  # known: nothing written
False
>>> [text] = con.execute("SELECT schema_json FROM workflows").fetchone()
>>> text == s.to_json()
True
>>> read_workflows(execute) == [s]
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from ...workflow._schema_json import from_pieces, pieces
from ...workflow.schema import WorkflowSchema
from . import _duckdb_sql as Q

Db = Callable[..., Any]

#: Steps (or edges) per INSERT: the Arrow columns made for one stay ~1 MB.
CHUNK = 1 << 16

_EXISTS = "SELECT count(*) FROM fl_workflows WHERE workflow_id = ? AND version = ?"
_NEXT_ID = "SELECT coalesce(max(parts_id), 0) + 1 FROM fl_workflows"
_INSERT_FRAME = """
INSERT INTO fl_workflows (workflow_id, version, name, schema_json, registered_at,
                          parts_id, json_head, json_middle, json_tail)
VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?)
"""
_INSERT_SHAPES = "INSERT INTO fl_workflow_shapes SELECT $1, shape, before, after FROM part_shapes"
_INSERT_STEPS = "INSERT INTO fl_workflow_steps SELECT $1, pos, shape, name, name_json FROM part_steps"
_INSERT_EDGES = ("INSERT INTO fl_workflow_edges SELECT $1, pos, shape, source, target, source_json, target_json "
                 "FROM part_edges")


def write_workflow(db: Db, con: Any, schema: WorkflowSchema, at: float) -> bool:
    """Store ``schema`` registered at ``at`` unless its id and version are stored; whether it was written.

    Runs inside the caller's transaction (the flush's); every DuckDB call
    goes through ``db`` (the storage's ``_db``).
    """
    key = [schema.workflow_id, schema.version]
    if db(lambda: con.execute(_EXISTS, key).fetchone())[0]:
        return False
    cut = pieces(schema)
    if cut is None or any(map(_not_utf8, cut.escaped)):  # a name that is not a string, or not
        # UTF-8 (a lone surrogate, kept by to_json as \ud800): the whole text, as before
        db(con.execute, Q.INSERT_WORKFLOW, [*key, schema.name, schema.to_json(), at])
        return True
    (parts_id,) = db(lambda: con.execute(_NEXT_ID).fetchone())
    db(con.execute, _INSERT_FRAME, [*key, schema.name, at, parts_id, cut.head, cut.middle, cut.tail])
    escaped = cut.escaped.get if cut.escaped else None
    shapes = pa.table({"shape": pa.array(range(len(cut.shapes)), pa.int32()),
                       "before": [b for b, _ in cut.shapes], "after": [a for _, a in cut.shapes]})
    db(_run, con, _INSERT_SHAPES, parts_id, part_shapes=shapes)
    del shapes
    steps, edges = schema.steps, schema.edges
    for lo in range(0, len(steps), CHUNK):  # a chunk at a time: Arrow columns of ~1 MB, not of every step
        names = [s.name for s in steps[lo:lo + CHUNK]]
        table = pa.table({"pos": _positions(lo, len(names)), "shape": _int32(cut.step_shapes, lo, len(names)),
                          "name": pa.array(names, pa.string()), "name_json": _escaped(names, escaped)})
        db(_run, con, _INSERT_STEPS, parts_id, part_steps=table)
    for lo in range(0, len(edges), CHUNK):
        sources = [e.source for e in edges[lo:lo + CHUNK]]
        targets = [e.target for e in edges[lo:lo + CHUNK]]
        table = pa.table({"pos": _positions(lo, len(sources)), "shape": _int32(cut.edge_shapes, lo, len(sources)),
                          "source": pa.array(sources, pa.string()), "target": pa.array(targets, pa.string()),
                          "source_json": _escaped(sources, escaped), "target_json": _escaped(targets, escaped)})
        db(_run, con, _INSERT_EDGES, parts_id, part_edges=table)
    return True


#: Every stored workflow, in the order registered: its whole text, or what names its parts.
_SELECT_ALL = """SELECT schema_json, parts_id, json_head, json_middle, json_tail FROM fl_workflows
ORDER BY registered_at, rowid"""
_SELECT_SHAPES = "SELECT shape, before, after FROM fl_workflow_shapes WHERE parts_id = ?"
# one row of lists, not a tuple per step
_SELECT_STEPS = "SELECT list(shape ORDER BY pos), list(name ORDER BY pos) FROM fl_workflow_steps WHERE parts_id = ?"
_SELECT_EDGES = """SELECT list(shape ORDER BY pos), list(source ORDER BY pos), list(target ORDER BY pos)
FROM fl_workflow_edges WHERE parts_id = ?"""


def read_workflows(execute: Callable[..., list[tuple[Any, ...]]]) -> list[WorkflowSchema]:
    """Every stored workflow, in the order registered (``execute``: the storage's ``_execute``).

    A definition stored in parts is made from them (each shape read once),
    not from its rebuilt text: no ~350 B/step text and no dict per step.
    """
    out = []
    for text, parts_id, head, middle, tail in execute(_SELECT_ALL):
        if text is not None:
            out.append(WorkflowSchema.from_json(text))
            continue
        shapes = {k: (before, after) for k, before, after in execute(_SELECT_SHAPES, [parts_id])}
        step_shapes, names = execute(_SELECT_STEPS, [parts_id])[0]
        edge_shapes, sources, targets = execute(_SELECT_EDGES, [parts_id])[0]
        out.append(from_pieces(head, middle, tail, shapes, step_shapes or [], names or [], edge_shapes or [],
                               sources or [], targets or []))
    return out


def _run(con: Any, sql: str, parts_id: int, part_shapes: Any = None, part_steps: Any = None, part_edges: Any = None) -> None:
    """Run ``sql`` over an Arrow table held in this function's locals (DuckDB's replacement scan finds it)."""
    con.execute(sql, [parts_id])


def _not_utf8(name: str) -> bool:
    """Whether ``name`` cannot be a DuckDB string (it holds a lone surrogate)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return True
    return False


def _positions(lo: int, n: int) -> pa.Array:
    return pa.array(range(lo, lo + n), pa.int32())


def _int32(values: Any, lo: int, n: int) -> pa.Array:
    """``values[lo:lo + n]`` of an ``array('i')`` as an Arrow int32 column, sharing its memory."""
    return pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(values)], offset=lo)


def _escaped(names: list[str], escaped: Callable[[str], str | None] | None) -> pa.Array:
    """Each name's JSON text where it is not the name in double quotes, NULL elsewhere."""
    if escaped is None:
        return pa.nulls(len(names), pa.string())
    return pa.array([escaped(n) for n in names], pa.string())


__all__ = ["CHUNK", "read_workflows", "write_workflow"]
