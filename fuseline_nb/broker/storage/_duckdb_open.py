"""Opening a DuckDB history file safely, and keeping user SQL read-only.

* :func:`refuse_foreign`: a DuckDB file of something else is inspected
  read-only and refused before anything is written to it.
* :func:`migrate`: a new file gets the version-1 tables and every migration
  (``_duckdb_sql.MIGRATIONS``), an older one the migrations it lacks, each in
  its own transaction; the views are recreated and the definitions nothing
  needs any more are pruned.
* :func:`check_read_only`: ``sql()`` runs one read-only statement; DuckDB's
  own parser tells the statement's kind.

:mod:`.duckdb` calls these with its connection's ``execute`` (every DuckDB
error already turned into a :class:`~fuseline_nb.errors.StorageError`).

Examples
--------
>>> check_read_only("SELECT 1", "h.duckdb")
>>> check_read_only("DROP TABLE fl_runs", "h.duckdb")
Traceback (most recent call last):
fuseline_nb.errors.StorageError: sql() runs read-only statements only (SELECT, EXPLAIN); refused DROP statement 'DROP TABLE fl_runs': the history is written by fuseline_nb only; to change 'h.duckdb' yourself, close the session first and open it with duckdb.connect('h.duckdb')
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import duckdb

from ...errors import StorageError, StorageVersionError
from . import _duckdb_sql as Q
from ._duckdb_cache import CREATE as CACHE_TABLES
from ._duckdb_cache import VIEW as CACHE_VIEW
from ._duckdb_definitions import prune
from ._duckdb_files import ValueFiles
from ._duckdb_life import translate

log = logging.getLogger(__name__)

Execute = Callable[..., list[tuple[Any, ...]]]


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def require_utf8(path: str) -> None:
    r"""Refuse a path DuckDB cannot open: one holding characters that are not UTF-8.

    Python names undecodable bytes of a file name with lone surrogates
    (``os.fsdecode``); DuckDB takes paths as UTF-8 and fails on them with a
    bare ``std::bad_cast``.

    Examples
    --------
    >>> require_utf8("runs.duckdb")
    >>> require_utf8("caf\udce9/runs.duckdb")
    Traceback (most recent call last):
    fuseline_nb.errors.StorageError: the history path 'caf\udce9/runs.duckdb' holds bytes that are not UTF-8 (at character 3, from a file or folder name in another encoding): DuckDB cannot open it; rename that folder or file, or pick a path of UTF-8 characters
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StorageError(
            f"the history path {path!r} holds bytes that are not UTF-8 (at character {exc.start}, from a file or "
            "folder name in another encoding): DuckDB cannot open it; rename that folder or file, or pick a "
            "path of UTF-8 characters") from None


def refuse_foreign(path: str) -> None:
    """Refuse, before writing anything, a DuckDB file that holds tables but not run history.

    Raises
    ------
    StorageError
        Names the file and some of its tables.
    """
    if path == ":memory:" or not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    try:
        con = duckdb.connect(path, read_only=True)
        try:
            tables = {name for (name,) in con.execute(Q.TABLE_NAMES).fetchall()}
        finally:
            con.close()
    except duckdb.Error as exc:
        raise translate(str(exc), path) from exc
    if tables and not {"schema_version", "fl_runs"} <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise StorageError(
            f"{path!r} is a DuckDB file of something else (tables: {shown}), not a fuseline_nb "
            "run history: nothing was written to it; pass a new file name or a history file"
        )


def migrate(execute: Execute, lock: threading.RLock, path: str) -> None:
    """Bring the file to ``CURRENT_VERSION``, recreate the views, prune unneeded definitions, remove
    half-written big values (a process killed while writing one).

    Raises
    ------
    StorageVersionError
        The file was written by a newer fuseline_nb.
    """
    tables = {name for (name,) in execute(Q.TABLE_NAMES)}
    version = execute(Q.GET_VERSION)[0][0] or 0 if "schema_version" in tables else 0
    if version > Q.CURRENT_VERSION:
        raise StorageVersionError(
            f"{path!r} was written by a newer fuseline_nb (history schema version {version}); "
            f"this one reads up to version {Q.CURRENT_VERSION}: upgrade fuseline_nb, or use another file"
        )
    steps: list[tuple[int, tuple[str, ...]]] = [] if version else [(1, Q.CREATE_V1)]
    steps += [(v + 1, Q.MIGRATIONS[v]) for v in range(max(version, 1), Q.CURRENT_VERSION)]
    for target, statements in steps:
        with lock:
            execute("BEGIN TRANSACTION")
            try:
                for sql in statements:
                    execute(sql)
                execute(Q.SET_VERSION, [target])
                execute("COMMIT")
            except BaseException:
                execute("ROLLBACK")
                raise
        if version:
            log.info("migrated %s to history schema version %d", path, target)
    for sql in CACHE_TABLES:
        execute(sql)
    for name, select in (*Q.VIEWS, CACHE_VIEW):
        execute(f"CREATE OR REPLACE VIEW {name} AS {select}")
    # what the runs finished since the last store left behind, and what a process killed mid-write left
    files = None if path == ":memory:" else ValueFiles(path)
    prune(execute, files)
    if files is not None:
        files.sweep()


def check_read_only(query: str, path: str) -> None:
    """Refuse anything but one read-only statement (SELECT, EXPLAIN without ANALYZE).

    Raises
    ------
    StorageError
        Names the refused statement and how to change the file on purpose.
    """
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise translate(str(exc), path) from exc
    where = "this file" if path == ":memory:" else repr(path)
    how = (f"the history is written by fuseline_nb only; to change {where} yourself, close the "
           f"session first and open it with duckdb.connect({path!r})")
    if len(statements) != 1:
        raise StorageError(f"sql() runs one read-only statement at a time, not {len(statements)}: "
                           f"{_clip(query)!r}")
    st = statements[0]
    kind = st.type.name
    if kind == "SELECT" or (kind == "EXPLAIN" and "ANALYZE" not in st.query.upper().split()[:3]):
        return
    raise StorageError(f"sql() runs read-only statements only (SELECT, EXPLAIN); refused "
                       f"{kind} statement {_clip(st.query.strip())!r}: {how}")


__all__ = ["check_read_only", "migrate", "refuse_foreign", "require_utf8"]
