"""One flush of the DuckDB history: the buffered batch written in one transaction.

:func:`flush_buffered` takes a storage's buffered batch and writes it;
:func:`write_batch` runs the set-based statements of
:data:`._duckdb_sql.WRITE_ORDER` over the batch's Arrow tables, with the
new workflows' rows first (:func:`._duckdb_schema.write_workflow`), and
turns DuckDB's ``build_side_probe_side`` optimizer off for the flush's own
statements where this DuckDB has it (:func:`can_pin_sides`); after a failed
write, :func:`write_apart` writes what it can run by run.

Examples
--------
>>> import duckdb
>>> con = duckdb.connect(":memory:")
>>> isinstance(can_pin_sides(con), bool)
True
>>> run_script(con, "SELECT count(*) FROM range(3)")
3
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Callable
from typing import Any

import duckdb

from ...errors import StorageError
from ...limits import safe_str
from ...workflow.gcpause import paused_gc
from . import _duckdb_sql as Q
from ._duckdb_arrow import small_flush
from ._duckdb_batch import Batch
from ._duckdb_columns import CleanColumns
from ._duckdb_places import RowPlaces
from ._duckdb_schema import write_workflow

log = logging.getLogger(__name__)

#: What DuckDB (or the OS) says when the file itself cannot take a write — the disk, not a value.
_FILE_FAULT = re.compile(r"No space left on device|File too large|Disk quota exceeded|Read-only file system"
                         r"|Permission denied|Input/output error")
_FILE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.EIO})


def file_fault(exc: BaseException | None) -> str | None:
    """Why the history file (its disk) refused a write, when that is what ``exc`` (or its cause) says; else None.

    Examples
    --------
    >>> file_fault(OSError(28, "No space left on device"))
    'No space left on device'
    >>> file_fault(StorageError('DuckDB failed on "h.duckdb": Could not write file "h.duckdb.wal": File too large'))
    'File too large'
    >>> file_fault(ValueError("cannot convert")) is None
    True
    """
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _FILE_ERRNOS:
            return exc.strerror or errno.errorcode.get(exc.errno or 0, "I/O error")
        found = _FILE_FAULT.search(safe_str(exc))
        if found:
            return found.group(0)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def fault_error(path: str, why: str) -> StorageError:
    """The error a flush raises while the history file cannot be written (a full disk): what to do, what is kept."""
    return StorageError(
        f"the run history {path!r} cannot be written ({why}): free space on its disk (or make the file "
        "writable again); nothing is lost yet — the changes wait in memory and are written at the next try, "
        "but they are lost if this process ends before")


#: Rows per part of a big flush (see :meth:`._duckdb_batch.Batch.chunks`): each part's Arrow tables
#: (~100-200 bytes a row, and the Python columns they are made from) exist only while it is written.
CHUNK_ROWS = 50_000


def flush_buffered(st: Any, last: bool = False) -> None:
    """One flush of ``st`` (a :class:`~fuseline_nb.broker.storage.duckdb.DuckDBRuntimeStorage`):
    its buffered batch swapped for an empty one and written through ``st._write``.

    When the batch cannot be written, it is written apart (:func:`write_apart`);
    when the file itself refused it (:func:`file_fault`: a full disk) or
    nothing of it could be written, it is kept in the buffer whole (newer
    buffered changes win) and a :class:`~fuseline_nb.errors.StorageError`
    raised (for a full disk: :func:`fault_error`, saying what to do).
    ``last`` (``close()``: no next try) writes what fits of a batch the
    file refuses in the safe form, as for a bad value, and says so. Does nothing once ``st`` is closed (the flusher may wake after
    ``close()`` wrote everything).
    """
    with st._io_lock:
        if st._closed:
            return
        if st._cache is not None:
            st._cache.write_pending()
        with st._buf_lock:
            batch, st._batch = st._batch, Batch()
            st._first = 0.0
            if not batch.empty:
                st._unfinished_at_open = None  # the runs change in the file from here on
        if batch.empty:
            return
        batch.flatten()  # the rows the broker added per run, keyed as the flush writes them (off its thread)
        st._pressure.taken()  # the buffer is empty again: a writer waiting for room goes on
        try:
            st._write(batch)
        except Exception as exc:
            why = file_fault(exc)
            if why is not None and last:  # closing: no next try, so what fits goes in without its values
                kept = write_apart(st._write, batch, exc, st.path, hold_faults=False)
                raise StorageError(
                    f"closing the run history {st.path!r}: it cannot be written ({why}); "
                    + ("its last changes are lost" if kept is not None else
                       "of its last changes, what fit was written without results and event details, "
                       "the rest is lost (the log names the runs)")
                    + ". Free space on its disk before closing a session on it: while it is open, "
                    "the changes wait in memory until they can be written") from exc
            # the file at fault (a full disk): keep every row as it is for the next try, values included
            kept = batch if why is not None else write_apart(st._write, batch, exc, st.path)
            st._pressure.failed(kept is not None)
            if kept is not None:
                with st._buf_lock:  # keep the changes: newer buffered ones win
                    st._batch = kept.merged_with(st._batch)
                    st._first = 1.0  # overdue: the flusher's back-off decides when it tries again
                if why is not None:
                    raise fault_error(st.path, why) from exc
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"writing run history to {st.path!r} failed: "
                                   f"{type(exc).__name__}: {safe_str(exc)}") from exc
        except BaseException:
            with st._buf_lock:
                st._batch = batch.merged_with(st._batch)
                st._first = 1.0
            raise
        else:
            st._pressure.failed(False)


def write_batch(db: Callable[..., Any], con: Any, batch: Batch, *, pin: bool, path: str,
                unpicklable: Any, write_file: Any, places: RowPlaces | None = None,
                clean: CleanColumns | None = None,
                place_new: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Write ``batch`` through ``con`` in one transaction, each DuckDB call made by ``db`` (the storage's
    ``_db``: one thread, Ctrl-C translated); on any failure roll back and reset the optimizer, then raise.

    A big batch is written a part of :data:`CHUNK_ROWS` rows at a time, all in
    that one transaction. ``pin``: the result of :func:`can_pin_sides` for this connection.
    ``places``: where the rows of big runs are (the step records of those runs are then updated
    by row id); a run with a row not where it was placed is dropped from it.
    ``clean``: which columns the runs' rows still hold at their PENDING value (the steps UPDATE
    leaves those out where the batch does too); told of every column this flush moves.
    ``place_new(runs)``: places the batch's new runs (see :mod:`._duckdb_places`); called inside
    the transaction before the first part of step records of a flush written in parts.
    """
    # one script per part, one call: each call into duckdb releases and retakes the GIL, and
    # retaking it from a busy broker thread can wait a whole switch interval
    head = ["BEGIN TRANSACTION", *([Q.PIN_SIDES] if pin else [])]
    try:
        if batch.workflows:  # new workflows first, in the same transaction, their text a parameter
            db(con.execute, head.pop(0))
            for schema, at in batch.workflows:
                write_workflow(db, con, schema, at)
        placing = bool(batch.runs)
        for part in batch.chunks(CHUNK_ROWS):
            small_flush(part is batch)  # the flusher gives the GIL away in a small flush only (see give_way)
            if placing and place_new is not None and part is not batch and part.steps:
                # a big flush that creates a run and holds records of its steps too (a fan-out's root
                # queued them all before the run's first flush): the parts before inserted the run's
                # rows; placed now (their row ids in this transaction), its records are found by row
                # id, not by hashing every row's keys (the storage places it again after the commit)
                place_new(batch.runs)
                placing = False
            # the collector paused while the columns are made: a transposition (``zip(*rows)``)
            # makes an iterator per row, and collections walking them cost 1.6 -> 0.6 µs a row
            # (50,000 queued rows); everything made here is gone when the part is written
            with paused_gc(promote=False):
                tables = part.arrow_tables(unpicklable, write_file, places)
            left_out: frozenset[str] = frozenset()
            if clean is not None:
                if "batch_steps" in tables:
                    left_out = clean.unchanged(tables["batch_steps"])
                for name in ("batch_steps", "batch_new_steps", "batch_results"):
                    clean.written(tables.get(name))
            script = ";\n".join([*head, *(_statement(name, sql, tables, left_out=left_out)
                                           for name, sql in Q.WRITE_ORDER if name in tables)])
            head = []
            count = db(run_script, con, script, **tables) if script else None
            steps = tables.get("batch_steps")
            if steps is not None and count != steps.num_rows and "rid" in steps.column_names:
                # a row not where its run's rows were placed: every row again by its keys (the
                # same values), and that run no longer placed
                count = db(run_script, con, _statement("batch_steps", Q.UPDATE_STEPS, tables, by_keys=True,
                                                       left_out=left_out), batch_steps=steps)
                for run_id in set(steps.column("run_id").to_pylist()):
                    if places is not None:
                        places.forget(run_id)
            if steps is not None and count != steps.num_rows:  # rows not in the file yet
                db(run_script, con, f"{Q.UNPIN_SIDES};\n{Q.INSERT_MISSING_STEPS}" if pin
                   else Q.INSERT_MISSING_STEPS, batch_steps=steps)
                head = [Q.PIN_SIDES] if pin else []  # for the next part
            del tables, steps  # this part's Arrow tables go before the next part's are made
        db(con.execute, f"{Q.UNPIN_SIDES};\nCOMMIT" if pin else "COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:  # no transaction left open: nothing to undo
            log.debug("rollback after a failed flush of %s failed", path, exc_info=True)
        if pin:  # a setting, not undone by the rollback
            try:
                con.execute(Q.UNPIN_SIDES)
            except duckdb.Error:
                log.debug("resetting the optimizers after a failed flush of %s failed", path, exc_info=True)
        raise


def _statement(name: str, sql: str, tables: dict[str, Any], by_keys: bool = False,
               left_out: frozenset[str] = frozenset()) -> str:
    """The statement writing table ``name``. The steps UPDATE leaves out ``left_out`` (columns the
    batch and the file both hold at their PENDING value, see :mod:`._duckdb_columns`), and the result
    columns when no row of the batch carries a result (they would be set to their own values); it
    finds the rows by row id when the batch has them (unless ``by_keys``)."""
    if name == "batch_steps":
        steps = tables[name]
        at = not by_keys and "rid" in steps.column_names
        if steps.column("result_preview").null_count == steps.num_rows:
            left_out = left_out | _RESULTS
        return Q.update_steps(left_out, at)
    return sql


_RESULTS = frozenset(Q.RESULT_COLUMNS)


def can_pin_sides(con: Any) -> bool:
    """Whether this DuckDB lets a flush keep its batch on the build side of its ``UPDATE ... FROM batch_*``.

    DuckDB's ``build_side_probe_side`` optimizer builds the hash table on the
    side it estimates narrower; once a batch holds more than ~40 % of
    ``fl_steps`` (a fan-out's QUEUED rows, a long flush interval, a flusher
    that fell behind) that is ``fl_steps``, the batch is probed, and the
    UPDATE gets its row ids in the batch's order instead of the file's.
    Updating rows out of order costs DuckDB ~30-100 µs a row instead of ~1
    (1->100,000->1: 2.3 s for one flush of 100,000 QUEUED rows; 60,000
    shuffled rows of a 100,000-row table: 5.9 s against 0.07 s). With it off,
    the join order optimizer builds on the smaller input (the batch, at most
    the table) and ``fl_steps`` is scanned in row order.

    The setting is per database (DuckDB refuses a session scope for it), so a
    flush turns it off only for its own statements (``PIN_SIDES`` after BEGIN,
    ``UNPIN_SIDES`` before COMMIT, ~0.2 ms): other queries (the cache's LEFT
    JOIN of fl_steps, ``sql()``) keep the optimizer. A DuckDB without this
    optimizer is left as it is.
    """
    try:
        con.execute(Q.PIN_SIDES)
        con.execute(Q.UNPIN_SIDES)
    except duckdb.Error:  # an older DuckDB without the optimizer (or a renamed one): nothing to turn off
        log.debug("DuckDB refused %s", Q.PIN_SIDES, exc_info=True)
        return False
    return True


def run_script(con: Any, script: str, batch_runs: Any = None,
                batch_new_steps: Any = None, batch_steps: Any = None, batch_results: Any = None,
                batch_events: Any = None, batch_finals: Any = None) -> int | None:
    """Run ``script`` over the batch's Arrow tables; the count its last statement returned.

    The tables are this function's locals: DuckDB's replacement scan finds a
    name the catalog lacks among the caller's locals, and reads the Arrow table
    there. That costs ~0.5 ms per table less than ``register`` + ``unregister``
    (each a catalog change), paid on every flush.
    """
    rows = con.execute(script).fetchall()
    return rows[0][0] if rows else None


def write_apart(write: Callable[[Batch], None], batch: Batch, first: Exception, path: str, *,
                hold_faults: bool = True) -> Batch | None:
    """After a failed flush: write run by run, a run that fails again in its safe form.

    One bad value must never block the history: a run whose rows cannot be
    written as they are is written in the safe form (no pickles, no event
    details, numbers clamped; its values stay in memory), and a run that
    cannot be written even so is dropped with an error in the log. The
    parts the file itself refuses (:func:`file_fault`: the disk is full)
    and, when nothing at all can be written (a table is gone), every part
    are kept whole, values included, to be retried with the next batch;
    that is what is returned then. ``hold_faults=False`` (closing) treats
    a part the file refuses as one with a bad value: its safe form may fit.
    """
    parts = batch.split()
    failed: list[Batch] = []
    held: list[Batch] = []  # parts the file refused (a full disk): kept whole for the next try
    written = 0
    for part in parts:
        try:
            write(part)
            written += 1
            continue
        except Exception as exc:
            if hold_faults and file_fault(exc) is not None:
                held.append(part)
                continue
            why = f"{type(exc).__name__}: {safe_str(exc)}"
        part.safe = True
        try:
            write(part)
            written += 1
            log.error("run history %s: the rows of run(s) %s could not be written as they are (%s); "
                      "written without their pickled values and event details", path,
                      part.run_ids(), why)
        except Exception as exc:
            part.safe = False
            (held if hold_faults and file_fault(exc) is not None else failed).append(part)
            log.debug("safe form of %s failed too: %s", part.run_ids(), safe_str(exc))
    if failed and not written:
        held += failed
        failed = []
    for part in failed:
        log.error("run history %s: the rows of run(s) %s cannot be written, even in a safe form; "
                  "they are left out of the file (%s: %s)", path, part.run_ids(),
                  type(first).__name__, safe_str(first))
    if held:
        keep = Batch()
        for part in held:
            keep = keep.merged_with(part)
        return keep
    return None
