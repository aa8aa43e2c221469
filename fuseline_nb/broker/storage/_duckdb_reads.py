"""The reading half of :class:`~fuseline_nb.broker.storage.duckdb.DuckDBRuntimeStorage`.

Every read flushes first, so it sees every change written so far. Results
come back closed (:class:`~fuseline_nb.workflow.value.Value` s); a big one
kept in a file beside the history is read from it, unless this process
still holds it (then it is that value: no second copy).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ...workflow.events import Event
from ...workflow.runinfo import RunInfo
from ...workflow.value import Value
from . import _duckdb_sql as Q
from ._duckdb_cache import SELECT_CACHED
from ._duckdb_files import ValueFiles
from ._duckdb_rows import event_of, load_inputs, result_value, run_info, step_info

log = logging.getLogger(__name__)


class HistoryReads:
    """Runs, steps, events, results and inputs read back from the history file."""

    _unpicklable: dict[tuple[str, str], Any]
    _big: weakref.WeakValueDictionary[tuple[str, str], Value]
    _files: ValueFiles | None
    _unfinished_at_open: list[str] | None  # the unfinished runs read at open, until the first write
    _buf_lock: threading.Lock
    _batch: Any

    # provided by the storage
    flush: Callable[[], None]
    _execute: Callable[..., list[tuple[Any, ...]]]
    _require: Callable[[str], Any]

    def load_run(self, run_id: str) -> RunInfo | None:
        self.flush()
        rows = self._execute(Q.SELECT_RUN, [run_id])
        if not rows:
            return None
        info = run_info(rows[0], self._read)
        for row in self._execute(Q.SELECT_STEPS, [run_id]):
            info.steps[row[0]] = step_info(row[7:], self._result(run_id, row[0], row[1:7]))
        for step, source in self._execute(SELECT_CACHED, [run_id]):
            if step in info.steps:
                info.steps[step].cached, info.steps[step].cached_from = True, source
        return info

    def list_runs(self) -> list[RunInfo]:
        self.flush()
        return [run_info(row, self._read) for row in self._execute(Q.SELECT_RUNS)]

    def unfinished_runs(self) -> list[str]:
        with self._buf_lock:
            at_open = self._unfinished_at_open
            if at_open is not None and self._batch.empty:  # nothing written since the file was opened
                return list(at_open)
        self.flush()
        return [run_id for (run_id,) in self._execute(Q.SELECT_UNFINISHED)]

    def events(self, run_id: str) -> list[Event]:
        self._require(run_id)
        self.flush()
        return [event_of(row) for row in self._execute(Q.SELECT_EVENTS, [run_id])]

    def get_result(self, run_id: str, step: str) -> Any:
        self._require(run_id)
        self.flush()
        rows = self._execute(Q.SELECT_RESULT, [run_id, step])
        return self._result(run_id, step, rows[0] if rows else None)

    def get_inputs(self, run_id: str) -> dict[str, Any]:
        self._require(run_id)
        self.flush()
        text, blob = self._execute(Q.SELECT_INPUTS, [run_id])[0]
        return load_inputs(text, blob, self._read)

    @property
    def _read(self) -> Callable[[str], bytes] | None:
        """How big inputs kept beside the history are read (``None`` for ``:memory:``)."""
        return None if self._files is None else self._files.read

    def _result(self, run_id: str, step: str, row: tuple[Any, ...] | None) -> Any:
        if row is None or (row[0] is None and row[5] is None):
            return self._unpicklable.get((run_id, step))
        held = self._big.get((run_id, step))
        if held is not None:
            return held
        stored = self._with_bytes(row, f"step {step!r} of run {run_id}")
        if stored is None:
            return None
        value = result_value(*stored)
        value.origin = f"the result of step {step!r} of run {run_id}"
        return value

    def _with_bytes(self, row: tuple[Any, ...], what: str) -> tuple[Any, ...] | None:
        """Stored result columns with the bytes of a result kept in a file read in (``None``: gone)."""
        blob, *facts, name = row
        if blob is None and name is not None and self._files is not None:
            try:
                blob = self._files.read(name)
            except OSError as exc:
                log.warning("the result of %s is lost: its file %s is gone (%s); keep the folder %s "
                            "with the history file", what, name, exc, self._files.folder)
                return None
        return (blob, *facts)


__all__ = ["HistoryReads"]
