"""Issue 18, files: a foreign DuckDB file is refused untouched; session.sql runs read-only statements."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

import fuseline_nb as fl
from fuseline_nb.broker.storage import DuckDBRuntimeStorage
from fuseline_nb.errors import StorageError


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_foreign_duckdb_file_is_refused_without_writing_anything(tmp_path) -> None:
    path = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE runs (id INTEGER, note VARCHAR)")
    con.execute("INSERT INTO runs VALUES (1, 'mine')")
    con.close()
    before = _digest(path)
    with pytest.raises(StorageError, match=r"is a DuckDB file of something else \(tables: runs\), not a "
                                           r"fuseline_nb run history: nothing was written"):
        fl.Session(path, workers=0)
    assert _digest(path) == before
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT table_name FROM information_schema.tables").fetchall() == [("runs",)]
    con.close()
    DuckDBRuntimeStorage(tmp_path / "new.duckdb").close()  # a new file, and a history file, still open
    DuckDBRuntimeStorage(tmp_path / "new.duckdb").close()


@pytest.mark.parametrize(("query", "kind"), [
    ("UPDATE runs SET state = 'SUCCEEDED'", "UPDATE"),
    ("DELETE FROM fl_runs", "DELETE"),
    ("DROP TABLE fl_events", "DROP"),
    ("COPY fl_runs TO 'out.csv'", "COPY"),
    ("CREATE TABLE x AS SELECT 1", "CREATE"),
    ("ATTACH 'other.duckdb'", "ATTACH"),
    ("EXPLAIN ANALYZE DELETE FROM fl_runs", "EXPLAIN"),
])
def test_session_sql_refuses_writes_naming_the_statement(tmp_path, query, kind) -> None:
    with fl.Session(tmp_path / "h.duckdb", workers=0) as session:
        session.submit(fl.Workflow(outputs=[fl.FunctionStep(lambda: 1, name="one")]))
        with pytest.raises(StorageError, match=rf"read-only statements only \(SELECT, EXPLAIN\); refused "
                                               rf"{kind} statement .*duckdb.connect\("):
            session.sql(query)
        assert session.sql("SELECT count(*) FROM runs").fetchall() == [(1,)]
        assert session.sql("SELECT count(*) FROM fl_events").fetchall()[0][0] >= 1


def test_session_sql_refuses_several_statements_and_reads_explain(tmp_path) -> None:
    with fl.Session(tmp_path / "h.duckdb", workers=0) as session:
        with pytest.raises(StorageError, match="one read-only statement at a time, not 2"):
            session.sql("SELECT 1; DROP TABLE fl_events")
        assert session.sql("EXPLAIN SELECT * FROM runs").fetchall()
        assert session.sql("FROM runs").fetchall() == []
        assert session.sql("DESCRIBE runs").fetchall()
