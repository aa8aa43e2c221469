"""Shipped definitions bigger than FILE_BYTES live in files beside the DuckDB history.

DuckDB kept ~2x a big BLOB in memory after inserting it (a 1,000,000-step
fan-out ships ~40 MB); a definition file is written before its row commits,
replaced and pruned with its row, and a file that is gone is named.
"""

from __future__ import annotations

import logging
import os

import duckdb
import pytest

from fuseline_nb.broker.storage import DuckDBRuntimeStorage, _duckdb_files
from fuseline_nb.broker.storage import _duckdb_sql as Q
from fuseline_nb.errors import StorageError
from fuseline_nb.workflow.status import Status

BIG = b"\x80big definition " * 8


@pytest.fixture
def small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_duckdb_files, "FILE_BYTES", 64)  # BIG (128 bytes) goes to a file, b"a1" does not


def _files(st: DuckDBRuntimeStorage) -> list[str]:
    folder = st._files.folder if st._files is not None else None
    return sorted(os.listdir(folder)) if folder is not None and folder.exists() else []


def _rows(st: DuckDBRuntimeStorage) -> list[tuple[str, str, bool, str | None]]:
    return sorted(st._execute("SELECT workflow_id, version, definition IS NULL, definition_file "
                              "FROM fl_definitions"))


def test_a_big_definition_is_a_file_named_by_its_row_and_reads_back(tmp_path, small_files) -> None:
    path = tmp_path / "h.duckdb"
    with DuckDBRuntimeStorage(path) as st:
        st.put_definition("a", "1", BIG)
        st.put_definition("b", "1", b"b1")  # small: in the row
        [name] = _files(st)
        assert _rows(st) == [("a", "1", True, name), ("b", "1", False, None)]
        assert (st._files.folder / name).read_bytes() == BIG
        assert st.get_definition("a", "1") == BIG and st.get_definition("b", "1") == b"b1"
    with DuckDBRuntimeStorage(path) as st:  # reopened (another process would read the same)
        assert st.get_definition("a", "1") == BIG


def test_a_replaced_or_pruned_definition_takes_its_file_with_it(tmp_path, small_files) -> None:
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
        st.put_definition("a", "1", BIG)
        [first] = _files(st)
        st.put_definition("a", "1", BIG)  # the same bytes again: the same file, kept
        assert _files(st) == [first]
        st.put_definition("a", "1", BIG + b" edited")  # replaced: a new file, the old one removed
        [second] = _files(st)
        assert second != first and st.get_definition("a", "1") == BIG + b" edited"
        st.put_definition("a", "1", b"small now")  # small again: back in the row, no file left
        assert _files(st) == [] and st.get_definition("a", "1") == b"small now"
        st.put_definition("a", "2", BIG)
        st.create_run("r1", "a", "2", {}, ["s"], created_at=0.0)
        st.put_definition("a", "3", BIG + b"3")  # r1 (unfinished) still needs version 2: both files stay
        assert len(_files(st)) == 2 and st.get_definition("a", "1") is None
        st.finalize_run("r1", Status.SUCCEEDED, 1.0)
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:  # opening prunes version 2 and its file
        assert [r[:2] for r in _rows(st)] == [("a", "3")]
        assert _files(st) == [_rows(st)[0][3]]


def test_a_failed_row_write_keeps_the_definition_before_and_its_file(tmp_path, small_files, monkeypatch) -> None:
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
        st.put_definition("a", "1", BIG)
        [first] = _files(st)
        with monkeypatch.context() as m:  # the INSERT fails after the DELETE ran: rolled back
            m.setattr(Q, "PUT_DEFINITION", "INSERT INTO fl_definitions (workflow_id, version, definition, "
                      "stored_at, definition_file) SELECT CASE WHEN ? IS NULL THEN 'x' END, ?, ?, ?, ?")
            with pytest.raises(StorageError, match="NOT NULL"):
                st.put_definition("a", "1", BIG + b" edited")
        assert st.get_definition("a", "1") == BIG
        assert first in _files(st)  # the new file may stay (no row names it); the old one must


def test_a_definition_file_that_is_gone_is_named(tmp_path, small_files, caplog) -> None:
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
        st.put_definition("a", "1", BIG)
        for name in _files(st):
            (st._files.folder / name).unlink()
        with caplog.at_level(logging.WARNING, logger="fuseline_nb"):
            assert st.get_definition("a", "1") is None
    assert "stored definition of workflow 'a' version '1' is gone" in caplog.text
    assert "h.duckdb.values with the history file" in caplog.text


def test_an_in_memory_history_keeps_big_definitions_in_the_row(small_files) -> None:
    with DuckDBRuntimeStorage() as st:
        st.put_definition("a", "1", BIG)
        assert _rows(st) == [("a", "1", False, None)] and st.get_definition("a", "1") == BIG


def test_a_version_7_file_migrates_and_keeps_its_definitions(tmp_path, small_files) -> None:
    path = str(tmp_path / "v7.duckdb")
    con = duckdb.connect(path)
    for sql in Q.CREATE_V1:
        con.execute(sql)
    for version in range(1, 7):
        for sql in Q.MIGRATIONS[version]:
            con.execute(sql)
    con.execute("UPDATE schema_version SET version = 7")
    con.execute("INSERT INTO fl_definitions VALUES ('a', '1', ?, 1.0)", [BIG])  # version 7: the BLOB in the row
    con.close()
    with DuckDBRuntimeStorage(path) as st:
        assert st._execute("SELECT version FROM schema_version") == [(Q.CURRENT_VERSION,)]
        assert st.get_definition("a", "1") == BIG
        st.put_definition("b", "1", BIG)
        assert _rows(st)[0] == ("a", "1", False, None) and _rows(st)[1][2:3] == (True,)
