"""The shipped definitions of a DuckDB history (``fl_definitions``): stored, read back, pruned.

A definition is the workflow's bytes as shipped to the workers (so a
reopened file resumes its unfinished runs). DuckDB holds a BLOB several
times over while inserting it and keeps it in its buffer cache afterwards
(a 40 MB BLOB: +83 MB RSS kept, +123 MB at the peak; a 1,000,000-step
fan-out ships ~40 MB). So, as big results (:mod:`._duckdb_files`), a
definition bigger than :data:`~._duckdb_files.FILE_BYTES` is written to a
file in ``<history>.values/`` (straight from its bytes, synced) before the
transaction whose row names it (``definition_file``) commits; a smaller one
stays in the row. The file's name holds the workflow id, the version and
the bytes' hash: a replaced definition writes a new file and the old one is
removed once the row naming it is gone, so a crash leaves at most a file no
row names.

Examples
--------
>>> import duckdb, os, tempfile, threading
>>> from fuseline_nb.broker.storage._duckdb_open import migrate
>>> from fuseline_nb.broker.storage._duckdb_files import ValueFiles
>>> path = os.path.join(tempfile.mkdtemp(), "h.duckdb")
>>> con = duckdb.connect(path)
>>> execute = lambda sql, params=None: con.execute(sql, params).fetchall()
>>> migrate(execute, threading.RLock(), path)
>>> files, db = ValueFiles(path), (lambda fn, *a, **k: fn(*a, **k))
>>> put(db, con, files, "wf", "1", b"small")
>>> put(db, con, files, "wf", "2", b"x" * (2 << 20))  # bigger than FILE_BYTES: a file beside the history
>>> get(execute, files, "wf", "1"), len(get(execute, files, "wf", "2")), len(os.listdir(files.folder))
(b'small', 2097152, 1)
>>> prune(execute, files)  # no run needs version 1 or 2: the latest (2) stays
>>> get(execute, files, "wf", "1"), len(os.listdir(files.folder))
(None, 1)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import duckdb
import xxhash

from . import _duckdb_files
from . import _duckdb_sql as Q
from ._duckdb_files import ValueFiles

log = logging.getLogger(__name__)

Execute = Callable[..., list[tuple[Any, ...]]]


def put(db: Callable[..., Any], con: Any, files: ValueFiles | None, workflow_id: str, version: str,
        definition: bytes) -> None:
    """Store ``definition`` under ``(workflow_id, version)``, replacing the one there, in one transaction.

    ``db``: the storage's ``_db`` (DuckDB errors translated); ``files``:
    where big definitions go (``None``: an in-memory history keeps them in
    the row). The caller holds the connection's lock.
    """
    name = None
    if files is not None and len(definition) > _duckdb_files.FILE_BYTES:
        key = f"{workflow_id}\0{version}".encode("utf-8", "surrogateescape")
        name = files.write_named(f"{xxhash.xxh3_64_hexdigest(key)}-{xxhash.xxh3_128_hexdigest(definition)}"
                                 ".definition", definition)
    db(con.execute, "BEGIN TRANSACTION")
    try:
        gone = db(lambda: con.execute(Q.DELETE_DEFINITION, [workflow_id, version]).fetchall())
        db(con.execute, Q.PUT_DEFINITION,
           [workflow_id, version, None if name is not None else bytes(definition), time.time(), name])
        db(con.execute, "COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:  # no transaction left open: nothing to undo
            log.debug("rollback after a failed definition write failed", exc_info=True)
        raise
    _remove(files, [old for (old,) in gone if old != name])


def get(execute: Execute, files: ValueFiles | None, workflow_id: str, version: str) -> bytes | None:
    """The stored bytes, or ``None`` (none stored, or their file is gone: a warning names it)."""
    rows = execute(Q.GET_DEFINITION, [workflow_id, version])
    if not rows:
        return None
    blob, name = rows[0]
    if name is None:
        return bytes(blob)
    if files is not None:
        try:
            return files.read(name)
        except OSError as exc:
            log.warning("the stored definition of workflow %r version %r is gone (%s): keep the folder %s "
                        "with the history file", workflow_id, version, exc, files.folder)
    return None


def prune(execute: Execute, files: ValueFiles | None) -> None:
    """Delete the definitions no one needs any more (see ``Q.PRUNE_DEFINITIONS``) and their files."""
    _remove(files, [name for (name,) in execute(Q.PRUNE_DEFINITIONS) if name is not None])


def _remove(files: ValueFiles | None, names: list[str]) -> None:
    """Remove the files of definitions whose rows are gone (committed): a failure only leaves a file."""
    if files is None:
        return
    for name in names:
        try:
            (files.folder / name).unlink(missing_ok=True)
        except OSError:
            log.warning("could not remove %s (no history row names it any more)", files.folder / name,
                        exc_info=True)


__all__ = ["get", "prune", "put"]
