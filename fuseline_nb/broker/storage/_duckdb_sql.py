"""The SQL of the DuckDB history file: internal tables, migrations, user views.

Internal tables (``fl_*``) may change between versions; the views
``workflows``, ``runs``, ``steps`` and ``events`` are the documented, stable
surface (``docs/history.md``). Timestamps are stored as DOUBLE seconds since
the epoch (so a run read back equals the run written) and shown by the views
as ``TIMESTAMP WITH TIME ZONE``.

``schema_version`` holds one row. A new file gets the version-1 tables and
then every migration, so a fresh file and a migrated one are built by the
same statements. This module only holds text; ``duckdb.py`` runs it.

Examples
--------
>>> CURRENT_VERSION
8
>>> sorted(MIGRATIONS)
[1, 2, 3, 4, 5, 6, 7]
>>> [name for name, _ in VIEWS]
['workflows', 'runs', 'steps', 'events']
"""

from __future__ import annotations

from typing import Final

#: The schema version this code writes.
CURRENT_VERSION: Final = 8

TABLE_NAMES: Final = """
SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'
"""
GET_VERSION: Final = "SELECT max(version) FROM schema_version"
SET_VERSION: Final = "UPDATE schema_version SET version = ?"

#: Version 1: the first released layout (no split error columns, no result size).
CREATE_V1: Final = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES (1)",
    """CREATE TABLE fl_workflows (
        workflow_id VARCHAR NOT NULL, version VARCHAR NOT NULL, name VARCHAR,
        schema_json VARCHAR NOT NULL, registered_at DOUBLE,
        PRIMARY KEY (workflow_id, version))""",
    """CREATE TABLE fl_runs (
        run_id VARCHAR PRIMARY KEY, workflow_id VARCHAR NOT NULL, version VARCHAR NOT NULL,
        state VARCHAR NOT NULL, inputs_json VARCHAR, inputs_pickle BLOB,
        created_at DOUBLE, finished_at DOUBLE)""",
    """CREATE TABLE fl_steps (
        run_id VARCHAR NOT NULL, step VARCHAR NOT NULL, state VARCHAR NOT NULL,
        skip_reason VARCHAR, action VARCHAR, attempts INTEGER NOT NULL, worker VARCHAR,
        queued_at DOUBLE, started_at DOUBLE, finished_at DOUBLE,
        error VARCHAR, traceback VARCHAR, result_preview VARCHAR, result_pickle BLOB,
        PRIMARY KEY (run_id, step))""",
    """CREATE TABLE fl_events (
        run_id VARCHAR NOT NULL, seq INTEGER NOT NULL, "at" DOUBLE NOT NULL, step VARCHAR,
        kind VARCHAR NOT NULL, state VARCHAR, worker VARCHAR, attempt INTEGER,
        detail_json VARCHAR)""",
)

#: ``MIGRATIONS[v]`` turns a version-``v`` file into version ``v + 1``.
MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    # 1 -> 2: split "Type: message" errors into two columns for SQL, and
    # remember each result's pickled size.
    1: (
        "ALTER TABLE fl_steps ADD COLUMN error_type VARCHAR",
        "ALTER TABLE fl_steps ADD COLUMN error_message VARCHAR",
        "ALTER TABLE fl_steps ADD COLUMN result_bytes BIGINT",
        r"""UPDATE fl_steps SET
            error_type = nullif(regexp_extract(error, '^([A-Za-z_][A-Za-z0-9_.]*): ', 1), ''),
            error_message = CASE
                WHEN regexp_matches(error, '^[A-Za-z_][A-Za-z0-9_.]*: ')
                THEN regexp_replace(error, '^[A-Za-z_][A-Za-z0-9_.]*: ', '')
                ELSE error END,
            result_bytes = octet_length(result_pickle)
            WHERE error IS NOT NULL OR result_pickle IS NOT NULL""",
    ),
    # 2 -> 3: a FAILED step whose failure an OR-group fallback recovered.
    2: ("ALTER TABLE fl_steps ADD COLUMN recovered BOOLEAN DEFAULT false",),
    # 3 -> 4: keep each result's data fingerprint, type name and rich preview (a value is
    # made once, where it is born; reading it back must not pickle or hash it again).
    3: (
        "ALTER TABLE fl_steps ADD COLUMN result_fingerprint VARCHAR",
        "ALTER TABLE fl_steps ADD COLUMN result_type VARCHAR",
        "ALTER TABLE fl_steps ADD COLUMN result_rich VARCHAR",
    ),
    # 4 -> 5: the workflow bytes shipped to the workers (cloudpickle), beside the schema, so a
    # reopened file's unfinished runs resume without the workflow being submitted again.
    4: (
        """CREATE TABLE fl_definitions (
            workflow_id VARCHAR NOT NULL, version VARCHAR NOT NULL, definition BLOB NOT NULL,
            stored_at DOUBLE, PRIMARY KEY (workflow_id, version))""",
    ),
    # 5 -> 6: a result bigger than _duckdb_files.FILE_BYTES lives in a file beside the history
    # (DuckDB holds a big BLOB several times over while inserting it); the row names the file.
    5: ("ALTER TABLE fl_steps ADD COLUMN result_file VARCHAR",),
    # 6 -> 7: a workflow's definition as a row per step and edge naming the text it shares with
    # others (_duckdb_schema.py), not one ~350 B/step text DuckDB holds ~4x over while inserting;
    # the workflows view rebuilds schema_json (SCHEMA_JSON). Rows written before keep their text.
    6: (
        "ALTER TABLE fl_workflows ALTER COLUMN schema_json DROP NOT NULL",
        "ALTER TABLE fl_workflows ADD COLUMN parts_id INTEGER",
        "ALTER TABLE fl_workflows ADD COLUMN json_head VARCHAR",
        "ALTER TABLE fl_workflows ADD COLUMN json_middle VARCHAR",
        "ALTER TABLE fl_workflows ADD COLUMN json_tail VARCHAR",
        """CREATE TABLE fl_workflow_shapes (
            parts_id INTEGER NOT NULL, shape INTEGER NOT NULL, before VARCHAR NOT NULL, after VARCHAR NOT NULL)""",
        """CREATE TABLE fl_workflow_steps (
            parts_id INTEGER NOT NULL, pos INTEGER NOT NULL, shape INTEGER NOT NULL, name VARCHAR NOT NULL,
            name_json VARCHAR)""",
        """CREATE TABLE fl_workflow_edges (
            parts_id INTEGER NOT NULL, pos INTEGER NOT NULL, shape INTEGER NOT NULL, source VARCHAR NOT NULL,
            target VARCHAR NOT NULL, source_json VARCHAR, target_json VARCHAR)""",
    ),
    # 7 -> 8: a shipped definition bigger than _duckdb_files.FILE_BYTES lives in a file beside the
    # history (DuckDB held a 40 MB BLOB ~2x after inserting it); the row names the file.
    7: (
        "ALTER TABLE fl_definitions ALTER COLUMN definition DROP NOT NULL",
        "ALTER TABLE fl_definitions ADD COLUMN definition_file VARCHAR",
    ),
}

#: A workflow row's ``schema_json`` (``w``: a row of ``fl_workflows``): its own text (written before
#: version 7, or a schema whose names are not all strings), or the text rebuilt from its parts: the
#: edges and the steps, each its shape's texts around its name(s), joined in the schema's order.
SCHEMA_JSON: Final = """coalesce(w.schema_json, w.json_head
    || coalesce((SELECT string_agg(h.before || coalesce(e.source_json, '"' || e.source || '"') || h.after
                                   || coalesce(e.target_json, '"' || e.target || '"') || '}', ', ' ORDER BY e.pos)
                 FROM fl_workflow_edges e JOIN fl_workflow_shapes h ON h.parts_id = e.parts_id AND h.shape = e.shape
                 WHERE e.parts_id = w.parts_id), '')
    || w.json_middle
    || coalesce((SELECT string_agg(h.before || coalesce(s.name_json, '"' || s.name || '"') || h.after, ', '
                                   ORDER BY s.pos)
                 FROM fl_workflow_steps s JOIN fl_workflow_shapes h ON h.parts_id = s.parts_id AND h.shape = s.shape
                 WHERE s.parts_id = w.parts_id), '')
    || w.json_tail)"""

#: The documented views, (name, SELECT), recreated on every open.
VIEWS: Final = (
    ("workflows", f"""SELECT w.workflow_id, w.version, w.name, {SCHEMA_JSON} AS schema_json,
        to_timestamp(w.registered_at) AS registered_at
        FROM fl_workflows w"""),
    ("runs", """SELECT run_id, workflow_id, version, state, inputs_json,
        to_timestamp(created_at) AS created_at, to_timestamp(finished_at) AS finished_at,
        finished_at - created_at AS duration_s
        FROM fl_runs"""),
    # ``cached``: SUCCEEDED from the result cache (fl_cached_steps, kept by _duckdb_cache.py)
    ("steps", """SELECT s.run_id, s.step, s.state, s.skip_reason, s.action, s.attempts, s.worker,
        to_timestamp(s.queued_at) AS queued_at, to_timestamp(s.started_at) AS started_at,
        to_timestamp(s.finished_at) AS finished_at, s.finished_at - s.started_at AS duration_s,
        s.result_preview, s.error_type, s.error_message, s.traceback,
        c.cached_from IS NOT NULL AS cached, c.cached_from, coalesce(s.recovered, false) AS recovered
        FROM fl_steps s LEFT JOIN fl_cached_steps c ON c.run_id = s.run_id AND c.step = s.step"""),
    ("events", """SELECT run_id, seq, to_timestamp("at") AS "at", step, kind, state, worker, attempt,
        detail_json
        FROM fl_events"""),
)

# -- batched writes (each reads a registered Arrow batch) ------------------------------
#: One workflow's row, its JSON text a parameter (not an Arrow batch), written only if new.
#: Not ``ON CONFLICT DO NOTHING``: DuckDB's conflict path holds the row's values again
#: (a 33 MB text: +198 MB RSS against +100 MB for a plain insert, and an Arrow table
#: adds one more copy), and the definition of a 1,000,000-step workflow is ~300 MB of text.
INSERT_WORKFLOW: Final = """
INSERT INTO fl_workflows (workflow_id, version, name, schema_json, registered_at)
SELECT $1, $2, $3, $4, $5
WHERE NOT EXISTS (SELECT 1 FROM fl_workflows WHERE workflow_id = $1 AND version = $2)
"""
INSERT_RUNS: Final = """
INSERT INTO fl_runs SELECT run_id, workflow_id, version, state, inputs_json, inputs_pickle,
    created_at, finished_at
FROM batch_runs
"""
STEP_COLUMNS: Final = (
    "run_id", "step", "state", "skip_reason", "action", "attempts", "worker", "queued_at",
    "started_at", "finished_at", "recovered", "error", "traceback", "error_type", "error_message",
)
RESULT_COLUMNS: Final = ("result_preview", "result_pickle", "result_bytes", "result_fingerprint",
                         "result_type", "result_rich", "result_file")
# A batch row carries a result only when the step's result arrived in that batch
# (the preview is never NULL then); otherwise the stored result stays. An UPDATE, not
# ``INSERT ... ON CONFLICT DO UPDATE``: DuckDB's upsert costs ~5 ms even for a few rows,
# the UPDATE about half. The flush runs it last, and its count says whether some rows were
# not in the file (a step no ``create_run`` named): those are inserted by INSERT_MISSING_STEPS.
UPDATE_STEPS: Final = (
    "UPDATE fl_steps SET "
    + ", ".join(f"{c} = b.{c}" for c in STEP_COLUMNS[2:]) + ", "
    + ", ".join(f"{c} = CASE WHEN b.result_preview IS NULL THEN fl_steps.{c} ELSE b.{c} END"
                for c in RESULT_COLUMNS)
    + " FROM batch_steps b WHERE fl_steps.run_id = b.run_id AND fl_steps.step = b.step"
)
#: UPDATE_STEPS for a batch none of whose rows carries a result (a fan-out's queued steps, steps
#: started): the same rows, without rewriting the seven result columns with their own values
#: (DuckDB updates, and logs, every column a SET names: 20 -> 13 columns a row).
UPDATE_STEPS_NO_RESULTS: Final = (
    "UPDATE fl_steps SET " + ", ".join(f"{c} = b.{c}" for c in STEP_COLUMNS[2:])
    + " FROM batch_steps b WHERE fl_steps.run_id = b.run_id AND fl_steps.step = b.step"
)
#: The two UPDATEs above for a batch that knows where its rows are (``rid``: the row id its run's
#: PENDING row got, see ``duckdb.DuckDBRuntimeStorage._place``): joined on the row id, with the keys
#: checked too. DuckDB then reads only the row ids in the batch's range instead of hashing the run id
#: and step name of every row of ``fl_steps`` on every flush (2,000 rows into a 1,000,000-row table:
#: 8.7 -> 4.3 µs a row). A row not found where it was placed is updated by its keys after.
UPDATE_STEPS_AT: Final = UPDATE_STEPS.replace(" WHERE ", " WHERE fl_steps.rowid = b.rid AND ")
UPDATE_STEPS_NO_RESULTS_AT: Final = UPDATE_STEPS_NO_RESULTS.replace(" WHERE ", " WHERE fl_steps.rowid = b.rid AND ")


def update_steps(left_out: frozenset[str] = frozenset(), at: bool = False) -> str:
    """The steps UPDATE setting every column but ``left_out`` (by row id when ``at``).

    Leaving out the seven result columns gives ``UPDATE_STEPS_NO_RESULTS``; leaving out
    nothing, ``UPDATE_STEPS`` (``_AT`` for each). ``state`` is always set.

    Examples
    --------
    >>> update_steps() == UPDATE_STEPS, update_steps(frozenset(RESULT_COLUMNS), True) == UPDATE_STEPS_NO_RESULTS_AT
    (True, True)
    >>> update_steps(frozenset(STEP_COLUMNS[3:] + RESULT_COLUMNS))
    'UPDATE fl_steps SET state = b.state FROM batch_steps b WHERE fl_steps.run_id = b.run_id AND fl_steps.step = b.step'
    """
    sets = [f"{c} = b.{c}" for c in STEP_COLUMNS[2:] if c == "state" or c not in left_out]
    sets += [f"{c} = CASE WHEN b.result_preview IS NULL THEN fl_steps.{c} ELSE b.{c} END"
             for c in RESULT_COLUMNS if c not in left_out]
    where = " WHERE fl_steps.rowid = b.rid AND " if at else " WHERE "
    return f"UPDATE fl_steps SET {', '.join(sets)} FROM batch_steps b{where}fl_steps.run_id = b.run_id AND fl_steps.step = b.step"


#: Where the rows of new big runs went: their first row id and their count, after the flush that wrote them.
SELECT_PLACES: Final = "SELECT run_id, min(rowid), max(rowid), count(*) FROM fl_steps WHERE run_id IN ({}) GROUP BY run_id"
INSERT_MISSING_STEPS: Final = (
    f"INSERT INTO fl_steps ({', '.join(STEP_COLUMNS + RESULT_COLUMNS)}) "
    f"SELECT {', '.join('b.' + c for c in STEP_COLUMNS + RESULT_COLUMNS)} FROM batch_steps b "
    "ANTI JOIN fl_steps s ON s.run_id = b.run_id AND s.step = b.step"
)
#: The steps of runs created in the same batch: none of them can be in the file yet, so a
#: plain INSERT (~2 ms for hundreds of rows) instead of the upsert (~5 ms even for a few).
INSERT_NEW_STEPS: Final = (
    f"INSERT INTO fl_steps ({', '.join(STEP_COLUMNS + RESULT_COLUMNS)}) "
    f"SELECT {', '.join(STEP_COLUMNS + RESULT_COLUMNS)} FROM batch_new_steps"
)
UPDATE_RESULTS: Final = """
UPDATE fl_steps SET result_preview = b.result_preview, result_pickle = b.result_pickle,
    result_bytes = b.result_bytes, result_fingerprint = b.result_fingerprint,
    result_type = b.result_type, result_rich = b.result_rich, result_file = b.result_file
FROM batch_results b WHERE fl_steps.run_id = b.run_id AND fl_steps.step = b.step
"""
INSERT_EVENTS: Final = """
INSERT INTO fl_events SELECT run_id, seq, "at", step, kind, state, worker, attempt, detail_json
FROM batch_events
"""
FINALIZE_RUNS: Final = """
UPDATE fl_runs SET state = b.state, finished_at = b.finished_at
FROM batch_finals b WHERE fl_runs.run_id = b.run_id
"""

# -- stored definitions (written once per shipped definition, not batched) ------------
#: The latest bytes shipped under an id and version win (a re-shipped, edited step): the old
#: row deleted, the new one inserted, in one transaction. Not ``INSERT OR REPLACE``: DuckDB's
#: conflict path holds the BLOB several times over (a 33 MB BLOB: +261 MB RSS against +99).
#: (Each DELETE returns the file of a definition kept beside the history, removed after the commit.)
DELETE_DEFINITION: Final = """DELETE FROM fl_definitions WHERE workflow_id = ? AND version = ?
RETURNING definition_file"""
PUT_DEFINITION: Final = """INSERT INTO fl_definitions (workflow_id, version, definition, stored_at, definition_file)
VALUES (?, ?, ?, ?, ?)"""
GET_DEFINITION: Final = "SELECT definition, definition_file FROM fl_definitions WHERE workflow_id = ? AND version = ?"
#: Kept: the latest definition stored per workflow id, and every one an unfinished run needs.
PRUNE_DEFINITIONS: Final = """
DELETE FROM fl_definitions d
WHERE d.stored_at < (SELECT max(x.stored_at) FROM fl_definitions x WHERE x.workflow_id = d.workflow_id)
  AND NOT EXISTS (SELECT 1 FROM fl_runs r WHERE r.workflow_id = d.workflow_id AND r.version = d.version
                  AND r.state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'SKIPPED'))
RETURNING definition_file
"""

# -- reads -----------------------------------------------------------------------------
RUN_COLUMNS: Final = "run_id, workflow_id, version, state, inputs_json, inputs_pickle, created_at, finished_at"
SELECT_RUN: Final = f"SELECT {RUN_COLUMNS} FROM fl_runs WHERE run_id = ?"
SELECT_RUNS: Final = f"SELECT {RUN_COLUMNS} FROM fl_runs ORDER BY created_at, rowid"
SELECT_UNFINISHED: Final = """
SELECT run_id FROM fl_runs WHERE state NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED', 'SKIPPED')
ORDER BY created_at, rowid
"""
RUN_EXISTS: Final = "SELECT count(*) FROM fl_runs WHERE run_id = ?"
SELECT_STEPS: Final = """
SELECT step, result_pickle, result_fingerprint, result_preview, result_type, result_rich, result_file,
    state, attempts, worker, error, traceback, action, skip_reason, queued_at, started_at, finished_at,
    coalesce(recovered, false)
FROM fl_steps WHERE run_id = ? ORDER BY rowid
"""
SELECT_RESULT: Final = """
SELECT result_pickle, result_fingerprint, result_preview, result_type, result_rich, result_file
FROM fl_steps WHERE run_id = ? AND step = ?
"""
SELECT_INPUTS: Final = "SELECT inputs_json, inputs_pickle FROM fl_runs WHERE run_id = ?"
SELECT_EVENTS: Final = """
SELECT kind, run_id, seq, "at", step, state, worker, attempt, detail_json
FROM fl_events WHERE run_id = ? ORDER BY seq, rowid
"""

#: A flush's UPDATEs join ``fl_steps`` with a batch: the batch must be hashed, ``fl_steps``
#: scanned, so the rows are updated in the file's order (see ``_duckdb_write.can_pin_sides``).
#: Per database in DuckDB: a flush sets it after BEGIN and resets it before COMMIT.
PIN_SIDES: Final = "SET disabled_optimizers = 'build_side_probe_side'"
UNPIN_SIDES: Final = "RESET disabled_optimizers"

#: Batch statements in the order a flush runs them (one transaction). The steps UPDATE comes
#: last: the flush reads its count (see UPDATE_STEPS); batch_results never holds a step of
#: batch_steps, so the two may run in either order.
#: (New workflows come first, each written by _duckdb_schema.write_workflow, in the same transaction.)
WRITE_ORDER: Final = (
    ("batch_runs", INSERT_RUNS),
    ("batch_new_steps", INSERT_NEW_STEPS),
    ("batch_results", UPDATE_RESULTS),
    ("batch_events", INSERT_EVENTS),
    ("batch_finals", FINALIZE_RUNS),
    ("batch_steps", UPDATE_STEPS),
)
