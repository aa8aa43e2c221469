"""DuckDB :class:`RuntimeStorage`: run history in one file you can query with SQL.

DuckDB is an analytics engine: one row per statement costs ~0.5 ms, a batch
from Arrow costs about the same for thousands of rows. So nothing here puts
a DuckDB round trip on the broker's per-step path. Writes land in memory
buffers (the latest record per step, new events, new results) and a flusher
thread writes them in one transaction of set-based statements every
``flush_interval`` seconds (0.1 by default), soon after a run ends, on
:meth:`~DuckDBRuntimeStorage.flush` and on close. Every read flushes first,
so it sees everything written so far. After a crash, only the changes of the
last ``flush_interval`` are lost: the broker re-runs those steps on resume.

The user-facing views ``workflows``, ``runs``, ``steps`` and ``events`` are
described in ``docs/history.md``; the SQL lives in :mod:`._duckdb_sql`.
Only this module, :mod:`._duckdb_write` (one flush's transaction) and
:mod:`._duckdb_open` (opening a file, checking user SQL) import duckdb.

Examples
--------
>>> from fuseline_nb.workflow.runinfo import StepInfo
>>> with DuckDBRuntimeStorage(":memory:") as st:
...     st.create_run("r1", "wf", "1", {"x": 2}, ["a"], created_at=0.0)
...     st.save_step("r1", "a", StepInfo(Status.SUCCEEDED, attempts=1))
...     st.set_result("r1", "a", 42)
...     st.sql("SELECT step, state, result_preview FROM steps").fetchall()
[('a', 'SUCCEEDED', '42')]
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from ...errors import StorageClosedError, UnknownRunError
from ...workflow.events import Event
from ...workflow.plan import StepOrder
from ...workflow.runinfo import StepInfo
from ...workflow.schema import WorkflowSchema
from ...workflow.status import Status
from ...workflow.value import Value
from . import _duckdb_definitions as definitions
from . import _duckdb_sql as Q
from ._duckdb_batch import Batch
from ._duckdb_cache import DuckDBCacheStore
from ._duckdb_columns import CleanColumns
from ._duckdb_files import FILE_BYTES, ValueFiles
from ._duckdb_life import claim, flush_loop, release, track, translate, wait_warm, will_warm_up
from ._duckdb_many import ManyRows
from ._duckdb_open import check_read_only, migrate, refuse_foreign, require_utf8
from ._duckdb_places import RowPlaces
from ._duckdb_pressure import Pressure
from ._duckdb_queued import members_for
from ._duckdb_reads import HistoryReads
from ._duckdb_rows import step_row
from ._duckdb_schema import read_workflows
from ._duckdb_write import can_pin_sides, flush_buffered, write_batch
from ._trim import big_flush, give_back
from .base import RuntimeStorage, batches_match

log = logging.getLogger(__name__)


@batches_match

class DuckDBRuntimeStorage(ManyRows, HistoryReads, RuntimeStorage):
    """Runs, steps, results and events in a DuckDB file (or ``":memory:"``).

    Parameters
    ----------
    path:
        The database file (created if missing), or ``":memory:"``.
    flush_interval:
        Seconds between background flushes of buffered changes.

    Raises
    ------
    StorageLockedError
        The file is open in another process (or another storage in this one).
    StorageVersionError
        The file was written by a newer fuseline_nb.
    StorageError
        The file is not a DuckDB database, or DuckDB failed.

    Examples
    --------
    >>> st = DuckDBRuntimeStorage(":memory:")
    >>> st.list_runs()
    []
    >>> st.close(); st.close()
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, flush_interval: float = 0.1) -> None:
        if not 0 < flush_interval <= threading.TIMEOUT_MAX:  # (nan: a flusher spinning; inf: one that dies)
            raise ValueError(f"flush_interval must be > 0, not {flush_interval!r}: a number of seconds, "
                             f"at most {threading.TIMEOUT_MAX:g} (reads, flush() and close() write at once anyway)")
        self.path = os.fspath(path)
        require_utf8(self.path)
        self.flush_interval = float(flush_interval)
        self._closed = True  # until the file is open: close() then does nothing
        self._key = None if self.path == ":memory:" else str(Path(self.path).resolve())
        claim(self._key, self)
        self._con: Any = None
        self._reader: Any = None
        self._io_lock = threading.RLock()  # one statement at a time on the connection
        self._buf_lock = threading.Lock()  # guards the buffers (held for microseconds)
        self._batch = Batch()
        self._pressure = Pressure()  # the most rows buffered before the broker waits for the flusher
        self._row: tuple[Any, ...] = ()  # the last step row buffered (equal rows share one tuple)
        self._places = RowPlaces()  # where the rows of this storage's big unfinished runs are
        self._clean = CleanColumns()  # the columns its live runs' rows still hold at their PENDING value
        self._queues: dict[str, tuple[deque[str], Any]] = {}  # live run -> queue, members (set or Queued)
        self._known: set[str] = set()  # runs known to exist (no lookup needed)
        self._unpicklable: dict[tuple[str, str], Any] = {}
        self._workflows: dict[tuple[str, str], WorkflowSchema] = {}
        self._cache: DuckDBCacheStore | None = None
        self._files = None if self.path == ":memory:" else ValueFiles(self.path)  # big results
        # big results still held in this process (by a run, a report, the notebook): read back as
        # themselves, not read from their file again (a copy each time)
        self._big: weakref.WeakValueDictionary[tuple[str, str], Value] = weakref.WeakValueDictionary()
        try:
            refuse_foreign(self.path)
            # one DuckDB thread: the flusher's statements are small and serial, and on a
            # busy machine (workers on the other cores) DuckDB's extra threads only add CPU:
            # replaying a 1->20,000->1 run's writes, -25 % of the flush's DuckDB CPU
            self._con = self._db(duckdb.connect, self.path, config={"threads": 1})
            self._pin_sides = can_pin_sides(self._con)
            migrate(self._execute, self._io_lock, self.path)
            for s in read_workflows(self._execute):
                self._workflows[(s.workflow_id, s.version)] = s
            # Read now, before the flusher starts its warm-up (pyarrow importing pandas, ~1 s): the
            # broker opening this file asks first thing, and would wait for the warm-up to end.
            self._unfinished_at_open: list[str] | None = [
                run_id for (run_id,) in self._execute(Q.SELECT_UNFINISHED)]
        except BaseException:
            release(self._key, self)
            if self._con is not None:
                self._con.close()
            raise
        self._closed = False  # and the flusher's:
        self._wake, self._stop, self._full = threading.Event(), threading.Event(), threading.Event()  # see flush_loop
        # closing; a run ended since the last flush; when the oldest event buffered was (0: none): see flush_loop
        self._stopping, self._ended, self._first = False, False, 0.0
        loop = (weakref.ref(self), self._wake, self._stop, self._full)
        self._thread = threading.Thread(target=flush_loop, args=loop,
                                        name=f"fuseline-duckdb-flush:{Path(self.path).name}", daemon=True)
        will_warm_up(self._thread)
        self._thread.start()
        track(self)

    # -- the choke point ---------------------------------------------------------------
    def _db(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """Call a duckdb function; every duckdb error leaves here as a StorageError. A Ctrl-C DuckDB turned
        into ``RuntimeError('Query interrupted')`` leaves as the ``KeyboardInterrupt`` it was (no
        ``except Exception`` on the way swallows it)."""
        wait_warm()  # never call into DuckDB while another thread imports what DuckDB imports
        try:
            return fn(*args, **kw)
        except duckdb.Error as exc:
            raise translate(str(exc), self.path) from exc
        except RuntimeError as exc:
            if str(exc) == "Query interrupted":  # DuckDB took a Ctrl-C for itself: hand it back as one
                raise KeyboardInterrupt(f"a query on {self.path!r} was interrupted") from exc
            raise

    def _execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._io_lock:
            return self._db(lambda: self._con.execute(sql, params).fetchall())

    # -- opening and schema --------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:  # reached by a view, a replay or a timeline of a closed Session too: say what to do
            if self.path == ":memory:":
                raise StorageClosedError("the run history (DuckDB in memory) is closed, and what it held went with it")
            raise StorageClosedError(
                f"the run history {self.path!r} is closed (its Session or broker was closed); the file is kept: "
                f"read it with a new fl.Session({self.path!r}, workers=0), or duckdb.connect({self.path!r}, "
                "read_only=True)")

    def _require(self, run_id: str) -> tuple[deque[str], Any]:
        """The queue of a run, checking (off the hot path) that the run exists."""
        self._check_open()
        q = self._queues.get(run_id)
        if q is None:
            if run_id not in self._known:
                self.flush()
                if not self._execute(Q.RUN_EXISTS, [run_id])[0][0]:
                    raise UnknownRunError(f"unknown run: {run_id!r}")
                self._known.add(run_id)
            q = self._queues[run_id] = (deque(), set())
        return q

    # -- workflows -------------------------------------------------------------------------
    def register_workflow(self, schema: WorkflowSchema) -> None:
        self._check_open()
        key = (schema.workflow_id, schema.version)
        known = self._workflows.get(key)
        if known is None or (known is not schema and known != schema):  # new, or the key's newer definition
            self._workflows[key] = schema
            with self._buf_lock:
                self._batch.add_workflow(schema)

    def get_workflow(self, workflow_id: str, version: str) -> WorkflowSchema | None:
        self._check_open()
        return self._workflows.get((workflow_id, version))

    def list_workflows(self) -> list[WorkflowSchema]:
        self._check_open()
        return list(self._workflows.values())

    def put_definition(self, workflow_id: str, version: str, definition: bytes) -> None:
        """Write the shipped bytes at once (once per definition, so not through the batch).

        Definitions nothing needs any more are deleted then: the file keeps the
        latest one of each workflow id and those of unfinished runs (the
        buffered runs are flushed first, so a live run's definition stays).
        A big one is kept in a file beside the history (:mod:`._duckdb_definitions`).
        """
        self._check_open()
        with self._io_lock:
            definitions.put(self._db, self._con, self._files, workflow_id, version, definition)
        self.flush()
        definitions.prune(self._execute, self._files)

    def get_definition(self, workflow_id: str, version: str) -> bytes | None:
        self._check_open()
        return definitions.get(self._execute, self._files, workflow_id, version)

    # -- the hot path: memory only -------------------------------------------------------------
    def create_run(self, run_id: str, workflow_id: str, version: str, inputs: dict[str, Any],
                   steps: Iterable[str], created_at: float) -> None:
        self._check_open()
        # PENDING rows made at the flush, as whole columns: no record per step here. A plan's StepOrder
        # is kept as it is (read-only; its positions are the row places' too: see _duckdb_places)
        names = steps if isinstance(steps, StepOrder) else tuple(steps)
        with self._buf_lock:
            self._batch.runs[run_id] = (workflow_id, version, dict(inputs), created_at, names)
        self._queues[run_id] = (deque(), members_for(names))  # a byte per step, not a set entry
        self._known.add(run_id)
        self._clean.track(run_id)

    def enqueue(self, run_id: str, step: str) -> None:
        queue, members = self._queues.get(run_id) or self._require(run_id)
        if step not in members:
            members.add(step)
            queue.append(step)

    def fetch_next(self, run_id: str) -> str | None:
        queue, members = self._queues.get(run_id) or self._require(run_id)
        if not queue:
            return None
        step = queue.popleft()
        members.discard(step)
        return step

    def save_step(self, run_id: str, step: str, info: StepInfo) -> None:
        if run_id not in self._known:
            self._require(run_id)
        row = step_row(info)
        if row == self._row:  # the steps one transition queues share one row (a fan-out: a million)
            row = self._row
        else:
            self._row = row
        with self._buf_lock:
            b = self._batch
            steps = b.run_steps.get(run_id)
            if steps is None:
                steps = b.run_steps[run_id] = {}
            b.rows += step not in steps
            steps[step] = row

    def set_result(self, run_id: str, step: str, result: Any) -> None:
        if run_id not in self._known:
            self._require(run_id)
        with self._buf_lock:
            b = self._batch
            stored = b.run_results.get(run_id)
            if stored is None:
                stored = b.run_results[run_id] = {}
            b.rows += step not in stored
            stored[step] = result

    def record_event(self, event: Event) -> None:
        if event.run_id not in self._known:
            self._require(event.run_id)
        with self._buf_lock:
            self._batch.events.append(event)
            self._first = self._first or time.monotonic()  # the oldest change buffered (see flush_loop)
        if self._buffered() > self._pressure.bound:  # the flusher is behind: wait (see _duckdb_pressure)
            self._relieve()

    def finalize_run(self, run_id: str, state: Status, finished_at: float) -> None:
        if run_id not in self._known:
            self._require(run_id)
        with self._buf_lock:
            self._batch.finals[run_id] = (Status(state).value, finished_at)
        self._queues.pop(run_id, None)
        self._ended = True  # write the finished run soon (see flush_loop), without blocking the broker
        self._wake.set()

    # -- writing -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every buffered change now, in one transaction.

        Examples
        --------
        >>> with DuckDBRuntimeStorage(":memory:") as st:
        ...     st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
        ...     st.flush()
        ...     st._execute("SELECT count(*) FROM fl_runs")
        [(1,)]
        """
        self._check_open()
        self._flush()

    def _flush(self) -> None:
        flush_buffered(self)  # swap the buffers out and write them; keep them if nothing could be written

    def _write(self, batch: Batch) -> None:
        big = self._big  # big results still held here are read back as themselves (see HistoryReads)
        for key, value in batch.flatten().results.items():
            if value.__class__ is Value and len(value.data) > FILE_BYTES:
                big[key] = value
        write_batch(self._db, self._con, batch, pin=self._pin_sides, path=self.path, places=self._places,
                    clean=self._clean, place_new=self._place_new, unpicklable=self._unpicklable,
                    write_file=None if self._files is None else self._files.write)
        if batch.runs:  # new big runs: remember where their rows went (see _duckdb_places)
            self._place_new(batch.runs)
        for run_id in batch.finals:  # kept until the run's last rows are written: found by row id too
            self._places.forget(run_id)
            self._clean.forget(run_id)
        if big_flush(len(batch.steps) + len(batch.events) + sum(len(run[4]) for run in batch.runs.values()),
                     sum(len(schema.steps) for schema, _ in batch.workflows)):
            give_back()  # what DuckDB and the Arrow tables freed goes back to the system (see _trim)

    def _place_new(self, runs: dict[str, Any]) -> None:
        """Place the new big ``runs`` whose rows the open transaction (or the last flush) wrote."""
        self._places.written(self._execute, runs, self._queues)

    # -- reading: see HistoryReads (flush first, so reads see every change) ----------------
    def cache_store(self) -> DuckDBCacheStore:
        """The result cache kept in this file (table ``fl_cache``, view ``cache``)."""
        self._check_open()
        if self._cache is None:
            self._cache = DuckDBCacheStore(self)
        return self._cache

    def sql(self, query: str, params: Any = None) -> duckdb.DuckDBPyRelation:
        """Run ``query`` over the history (after a flush); return a DuckDB relation.

        The relation runs on a reader connection of its own, so ``.fetchall()``,
        ``.df()`` (pandas) or ``.pl()`` (polars) never race the flusher.

        Examples
        --------
        >>> with DuckDBRuntimeStorage(":memory:") as st:
        ...     st.sql("SELECT count(*) AS n FROM runs WHERE state = ?", ["FAILED"]).fetchall()
        [(0,)]
        """
        check_read_only(query, self.path)
        self.flush()
        with self._io_lock:
            if self._reader is None:
                self._reader = self._db(self._con.cursor)
        return self._db(self._reader.sql, query, params=params)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Flush, stop the flusher and release the file; idempotent.

        Examples
        --------
        >>> st = DuckDBRuntimeStorage(":memory:"); st.close(); st.close()
        >>> st.list_runs()
        Traceback (most recent call last):
        fuseline_nb.errors.StorageClosedError: the run history (DuckDB in memory) is closed, and what it held went with it
        """
        with self._io_lock:
            if self._closed:
                return
            try:
                flush_buffered(self, last=True)  # (a full disk: what fits is written in the safe form)
            finally:
                self._closed = True
                self._known.clear()  # so a late write on a live run raises StorageClosedError
                self._queues.clear()
                self._stopping = True
                self._stop.set()
                self._wake.set()
                self._full.set()
                if self._reader is not None:
                    self._reader.close()
                self._db(self._con.close)
                release(self._key, self)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # never raise from a finalizer; the log says what was lost
                log.exception("closing %r while collecting it failed", getattr(self, "path", "?"))

    def __repr__(self) -> str:
        return f"DuckDBRuntimeStorage({self.path!r}{', closed' if self._closed else ''})"


__all__ = ["DuckDBRuntimeStorage"]
