"""The batch calls of :class:`~fuseline_nb.broker.storage.duckdb.DuckDBRuntimeStorage`: one buffer lock per call.

A broker hands over what one of its calls changed at once (the optional
batch methods of :class:`~fuseline_nb.broker.storage.base.RuntimeStorage`).
These entries put the rows into the storage's existing buffer (the
:class:`~fuseline_nb.broker.storage._duckdb_batch.Batch` the flusher
writes) exactly as the one-by-one methods do, taking its lock once per
call instead of once per row; a record shared by several steps (steps
queued together) is snapshotted once.

Examples
--------
>>> from fuseline_nb.broker.storage import DuckDBRuntimeStorage
>>> from fuseline_nb.workflow.runinfo import StepInfo
>>> st = DuckDBRuntimeStorage(":memory:")
>>> st.create_run("r1", "wf", "1", {}, ["a", "b"], created_at=0.0)
>>> st.enqueue_steps("r1", ["a", "b"]); pending = StepInfo(queued_at=1.0)
>>> st.save_steps("r1", [("a", pending), ("b", pending)]); st.fetch_steps("r1", 5)
['a', 'b']
>>> st.load_run("r1").steps["b"].queued_at
1.0
>>> st.close()
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ...workflow.events import Event
from ...workflow.runinfo import StepInfo
from ._duckdb_batch import Batch
from ._duckdb_pressure import Pressure
from ._duckdb_queued import Queued
from ._duckdb_rows import SNAPSHOT_REST, step_row


class ManyRows:
    """The batch methods, mixed into ``DuckDBRuntimeStorage`` (which provides the attributes below).

    Examples
    --------
    >>> from fuseline_nb.broker.storage import DuckDBRuntimeStorage
    >>> issubclass(DuckDBRuntimeStorage, ManyRows)
    True
    """

    _batch: Batch
    _buf_lock: threading.Lock
    _known: set[str]
    _queues: dict[str, tuple[deque[str], Any]]  # members: a set, or a Queued
    _require: Callable[[str], tuple[deque[str], Any]]  # a run's queue, or UnknownRunError
    _pressure: Pressure  # the bound on the rows buffered (see _duckdb_pressure)
    _thread: threading.Thread  # the flusher
    _wake: threading.Event  # wakes the flusher
    _full: threading.Event  # tells the flusher to skip its gap
    _stopping: bool
    _first: float  # when the oldest event buffered was (0: none)

    def _buffered(self) -> int:
        """Rows buffered: step records, events, results."""
        b = self._batch
        return b.rows + len(b.events) + len(b.steps) + len(b.results)

    def _relieve(self) -> None:
        """More rows than the bound are buffered: wake the flusher and wait until it took them
        (see :mod:`._duckdb_pressure`)."""
        self._pressure.relieve(self._buffered, self._thread, self._hurry, lambda: self._stopping)

    def _hurry(self) -> None:
        self._full.set()
        self._wake.set()

    def enqueue_steps(self, run_id: str, steps: list[str]) -> None:
        queue, members = self._queues.get(run_id) or self._require(run_id)
        if members.__class__ is Queued:  # a byte per step of the run's plan (see _duckdb_queued)
            queue.extend(members.mark_new(steps))
            return
        for step in steps:
            if step not in members:
                members.add(step)
                queue.append(step)

    def fetch_steps(self, run_id: str, n: int) -> list[str]:
        queue, members = self._queues.get(run_id) or self._require(run_id)
        if not queue:
            return []
        out = [queue.popleft() for _ in range(min(n, len(queue)))]
        members.difference_update(out)
        return out

    def save_steps(self, run_id: str, records: list[tuple[str, StepInfo]]) -> None:
        if run_id not in self._known:
            self._require(run_id)
        # each row stored under its step in the run's part of the buffer straight away: no key tuple,
        # no pair per step (a fan-out's root stores a million)
        rest = SNAPSHOT_REST
        last: Any = None
        row: Any = None
        with self._buf_lock:
            b = self._batch
            steps = b.run_steps.get(run_id)
            if steps is None:
                steps = b.run_steps[run_id] = {}
            held = len(steps)
            try:
                for step, info in records:
                    if info is not last:  # a record shared by steps queued together: one snapshot
                        d = info.__dict__  # step_row, written out: once per record on the broker's thread
                        last, row = info, (d["state"]._value_,) + rest(d)  # noqa: RUF005 (a * unpack: +35 ns)
                    steps[step] = row
            except (AttributeError, KeyError):  # not a plain StepInfo: step_row reads its attributes
                for step, info in records:
                    if info is not last:
                        last, row = info, step_row(info)
                    steps[step] = row
            b.rows += len(steps) - held
            over = b.rows + len(b.events) + len(b.steps) + len(b.results) > self._pressure.bound
        if over:
            self._relieve()

    def set_results(self, run_id: str, results: list[tuple[str, Any]]) -> None:
        if run_id not in self._known:
            self._require(run_id)
        with self._buf_lock:  # (big results are noted at the flush: see DuckDBRuntimeStorage._write)
            b = self._batch
            stored = b.run_results.get(run_id)
            if stored is None:
                stored = b.run_results[run_id] = {}
            held = len(stored)
            stored.update(results)
            b.rows += len(stored) - held

    def record_events(self, events: list[Event]) -> None:
        known = self._known
        for e in events:
            if e.run_id not in known:
                self._require(e.run_id)
        with self._buf_lock:
            b = self._batch
            b.events.extend(events)
            self._first = self._first or time.monotonic()  # the oldest change buffered (see flush_loop)
            over = b.rows + len(b.events) + len(b.steps) + len(b.results) > self._pressure.bound
        if over:
            self._relieve()


__all__ = ["ManyRows"]
