"""Where the rows of a DuckDB history's big unfinished runs are, so a flush finds them by row id.

A flush updates the step records it holds with ``UPDATE fl_steps ... FROM
batch_steps``. Joined on the run id and step name, DuckDB hashes those two
columns of every row of ``fl_steps`` on every flush: the cost of a flush
grows with the file (2,000 records into a 1,000,000-row table: 8.7 µs a row).
A new run's rows are written as one block in ``create_run``'s order, so
once the flush that wrote them has committed, the storage asks where the
block starts (:data:`._duckdb_sql.SELECT_PLACES`), and each later record of
that run carries its row id (``rid``): DuckDB then reads only the row ids in
the batch's range (4.3 µs a row). The UPDATE still checks every row's keys,
and a row not found where it was placed is updated by its keys after
(:func:`._duckdb_write.write_batch`), so a wrong place costs time, never a
wrong row. Only runs of :data:`PLACED_STEPS` steps or more are placed: the
name -> position dict costs ~60 bytes a step (shared by the runs of one
workflow) while such a run is live.

Examples
--------
>>> places = RowPlaces()
>>> places.place("r1", "wf", "1", ("a", "b", "c"), first=100)
>>> places.row_ids(("r1", "r1"), ("c", "a")).to_pylist()
[102, 100]
>>> places.row_ids(("r1", "r2"), ("c", "a")) is None   # r2 not placed: found by its keys
True
>>> places.forget("r1"); places.runs, places.positions
({}, {})
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ...workflow.plan import StepOrder
from ._duckdb_sql import SELECT_PLACES

#: Runs with at least this many steps have their rows found by row id.
PLACED_STEPS = 1000


class RowPlaces:
    """The first row id of each placed run, and its steps' positions (shared per workflow)."""

    __slots__ = ("positions", "runs")

    def __init__(self) -> None:
        #: run id -> (row id of its first step, step name -> position in create_run's order)
        self.runs: dict[str, tuple[int, dict[str, int]]] = {}
        #: (workflow id, version) -> (step names, their positions): shared by that workflow's runs
        self.positions: dict[tuple[str, str], tuple[Sequence[str], dict[str, int]]] = {}

    def written(self, execute: Callable[..., list[tuple[Any, ...]]], runs: dict[str, tuple[Any, ...]],
                live: Container[str]) -> None:
        """After a flush wrote new ``runs`` (run id -> (workflow id, version, inputs, created,
        names)): place each big one still ``live`` whose rows are one block of its names."""
        big = [run_id for run_id, run in runs.items() if len(run[4]) >= PLACED_STEPS]
        if not big:
            return
        placed = set()
        # only runs still going are asked about (a run that ended before its first flush, a
        # whole fan-out written at once, has no later records to place: no scan of fl_steps for it)
        going = [run_id for run_id in big if run_id in live]
        for run_id, first, last, count in (execute(SELECT_PLACES.format(", ".join("?" * len(going))), going)
                                           if going else ()):
            workflow_id, version, _, _, names = runs[run_id]
            if count == len(names) and last - first + 1 == count:
                self.place(run_id, workflow_id, version, names, first)
                placed.add(run_id)
        for run_id in big:  # placed inside the flush's transaction, but not one block of its names now
            if run_id not in placed:
                self.forget(run_id)

    def place(self, run_id: str, workflow_id: str, version: str, names: Sequence[str], first: int) -> None:
        """Remember that run ``run_id``'s rows are ``names``, in order, from row id ``first``.

        ``names`` given as a plan's :class:`~fuseline_nb.workflow.plan.StepOrder` (what the
        broker's ``create_run`` passes) lends its positions: the broker's own dict, not a copy.
        """
        key = (workflow_id, version)
        cached = self.positions.get(key)
        if cached is None or (cached[0] is not names and cached[0] != names):
            made = names.positions if isinstance(names, StepOrder) else {name: i for i, name in enumerate(names)}
            cached = self.positions[key] = (names, made)
        self.runs[run_id] = (first, cached[1])

    def forget(self, run_id: str) -> None:
        """Forget the place of ``run_id`` (finished, or a row was not there); drop unused positions."""
        placed = self.runs.pop(run_id, None)
        if placed is None or any(p[1] is placed[1] for p in list(self.runs.values())):
            return
        for key, (_, positions) in list(self.positions.items()):
            if positions is placed[1]:
                del self.positions[key]

    def row_ids(self, run_ids: Sequence[str], steps: Sequence[str]) -> pa.Array | None:
        """The row id of each (run id, step) of the two columns, or None when one of them has no place.

        A batch of one run (the usual case) looks each step up in C (``map``), not in a
        Python loop; its positions become row ids in Arrow.
        """
        runs = self.runs
        if not runs or not run_ids:
            return None
        run = run_ids[0]
        try:
            if run_ids.count(run) == len(run_ids):  # one run: its first row id plus each step's position
                first, positions = runs[run]
                return pc.add(pa.array(list(map(positions.__getitem__, steps)), pa.int64()),
                              pa.scalar(first, pa.int64()))
            return pa.array([runs[r][0] + runs[r][1][s] for r, s in zip(run_ids, steps, strict=True)], pa.int64())
        except KeyError:  # a run (or a step) not placed: the batch is found by its keys
            return None


__all__ = ["PLACED_STEPS", "RowPlaces"]
