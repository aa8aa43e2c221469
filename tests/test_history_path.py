"""A history path DuckDB cannot open is refused with a message naming it (not DuckDB's bare std::bad_cast)."""
from __future__ import annotations

import os

import pytest

from fuseline_nb import Session
from fuseline_nb.broker.storage.duckdb import DuckDBRuntimeStorage
from fuseline_nb.errors import StorageError


def _undecodable_folder(tmp_path) -> str:
    """A folder whose name holds a byte that is not UTF-8 (a name made on a Latin-1 system), as Python names it."""
    raw = os.fsencode(tmp_path) + b"/caf\xe9"
    try:
        os.mkdir(raw)
    except OSError as exc:  # a file system that refuses such names has no such paths either
        pytest.skip(f"this file system refuses non-UTF-8 names: {exc}")
    return os.fsdecode(raw)


def test_a_session_on_a_folder_named_in_another_encoding_names_the_path(tmp_path):
    folder = _undecodable_folder(tmp_path)
    path = os.path.join(folder, "runs.duckdb")
    with pytest.raises(StorageError, match=r"holds bytes that are not UTF-8 .*rename that folder or file"):
        Session(path, workers=0)
    assert os.listdir(os.fsencode(folder)) == []  # nothing written there


def test_the_storage_refuses_it_before_claiming_the_file(tmp_path):
    path = os.path.join(_undecodable_folder(tmp_path), "runs.duckdb")
    with pytest.raises(StorageError, match=r"caf\\udce9"):
        DuckDBRuntimeStorage(path)
    with pytest.raises(StorageError, match="not UTF-8"):  # refused again, not "held by this process"
        DuckDBRuntimeStorage(path)


def test_a_utf8_folder_name_with_accents_works(tmp_path):
    folder = tmp_path / "café"
    folder.mkdir()
    with Session(folder / "runs.duckdb", workers=0) as session:
        assert session.runs() == []
