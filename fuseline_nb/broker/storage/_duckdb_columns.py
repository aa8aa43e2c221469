"""Which columns a flush's steps UPDATE may leave out: those still at their PENDING value in every row of its runs.

DuckDB logs every column an UPDATE sets (~20 bytes a row each in its
write-ahead log, whether the value changed or not), and its checkpoints
rewrite them: a fan-out's queued steps, whose rows change only
``queued_at``, were written as 13 columns, and each finished step as 20,
of which the error, traceback, skip reason, ``recovered`` and the rich
preview stay at their PENDING values in most runs. A column may be left
out of a batch's UPDATE when every row of the batch holds its PENDING
value there *and* no row of the batch's runs ever left it in the file:
then the file already holds that value. :class:`CleanColumns` knows this
for the runs created by this storage (their rows start as PENDING rows
written here); every column a flush writes with another value is noted
for the runs of that batch, whatever the statement (UPDATE, the insert of
a new run's recorded rows or of rows not in the file, the late results).
A run it does not know (one written by an earlier process) has every
column set, as before.

Examples
--------
>>> import pyarrow as pa
>>> clean = CleanColumns()
>>> clean.track("r")
>>> rows = pa.table({"run_id": ["r", "r"], "state": ["PENDING", "PENDING"], "queued_at": [1.0, 1.0],
...                  "error": pa.nulls(2, pa.string())})
>>> sorted(clean.unchanged(rows))
['error']
>>> clean.written(rows); clean.runs["r"]
{'queued_at'}
>>> clean.unchanged(rows.set_column(0, "run_id", pa.array(["r", "other"])))   # a run it does not know
frozenset()
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ._duckdb_sql import RESULT_COLUMNS, STEP_COLUMNS

#: The value of each step column in a row no record has reached (``_duckdb_batch._PENDING``).
#: ``state`` is never left out: the UPDATE's count of the rows it found needs one column set.
PENDING_VALUES: dict[str, Any] = {
    **{c: None for c in STEP_COLUMNS[3:] + RESULT_COLUMNS}, "attempts": 0, "recovered": False}


def _all_pending(column: pa.ChunkedArray | pa.Array, value: Any) -> bool:
    if value is None:
        return column.null_count == len(column)
    return column.null_count == 0 and bool(pc.all(pc.equal(column, pa.scalar(value, column.type))).as_py())


class CleanColumns:
    """The columns each run created here has left its PENDING value in (in some row, in the file)."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        #: run id -> the columns some row of it was written with another value than its PENDING one
        self.runs: dict[str, set[str]] = {}

    def track(self, run_id: str) -> None:
        """Run ``run_id`` was created here: its rows are written PENDING first."""
        self.runs[run_id] = set()

    def forget(self, run_id: str) -> None:
        """Stop tracking ``run_id`` (it ended): its later rows set every column."""
        self.runs.pop(run_id, None)

    def _of(self, rows: pa.Table) -> list[set[str]] | None:
        ids = pc.unique(rows.column("run_id")).to_pylist()
        out = [self.runs.get(run_id) for run_id in ids]
        return None if any(moved is None for moved in out) else out  # type: ignore[return-value]

    def unchanged(self, rows: pa.Table) -> frozenset[str]:
        """The columns of batch ``rows`` an UPDATE need not set: PENDING in every row and in the file."""
        if not self.runs or not rows.num_rows:
            return frozenset()
        runs = self._of(rows)
        if runs is None:
            return frozenset()
        moved = set().union(*runs)
        return frozenset(c for c in rows.column_names if c in PENDING_VALUES and c not in moved
                         and _all_pending(rows.column(c), PENDING_VALUES[c]))

    def written(self, rows: pa.Table | None) -> None:
        """Batch ``rows`` (step or result columns) are being written: note the columns they move."""
        if rows is None or not self.runs or not rows.num_rows:
            return
        ids = pc.unique(rows.column("run_id")).to_pylist()
        runs = [self.runs[run_id] for run_id in ids if run_id in self.runs]
        if not runs:
            return
        moved = [c for c in rows.column_names if c in PENDING_VALUES
                 and not _all_pending(rows.column(c), PENDING_VALUES[c])]
        for known in runs:
            known.update(moved)


__all__ = ["PENDING_VALUES", "CleanColumns"]
