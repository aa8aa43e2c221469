"""The write buffer of the DuckDB storage, and its conversion to Arrow batches.

The broker's thread only adds to a :class:`Batch` (dict and list writes);
the flusher swaps it for an empty one and turns it into one Arrow table per
statement of :data:`._duckdb_sql.WRITE_ORDER`.

Examples
--------
>>> b = Batch()
>>> b.empty
True
>>> b.runs["r1"] = ("wf", "1", {"x": 1}, 0.0, ("a", "b"))
>>> tables = b.arrow_tables({})
>>> sorted(tables)
['batch_new_steps', 'batch_runs']
>>> tables["batch_new_steps"].column("step").to_pylist()   # the new run's PENDING rows, made here
['a', 'b']
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from itertools import islice, repeat
from typing import Any

import pyarrow as pa

from ...workflow.events import Event
from ...workflow.runinfo import StepInfo
from ...workflow.schema import WorkflowSchema
from ._duckdb_arrow import SCHEMAS, WITH_ROWID, array, details_json, give_way, table
from ._duckdb_files import FILE_BYTES
from ._duckdb_places import RowPlaces
from ._duckdb_rows import StepRow, inputs_columns, result_row, split_error, step_row


class Batch:
    """Changes not yet written: the latest record wins per run and per step.

    The broker's thread adds step rows and results per run (``run_steps``,
    ``run_results``: ``{run_id: {step: ...}}``, no key tuple made per row on
    its path, and a run's results added in one C call); :meth:`flatten` moves
    them into the ``(run_id, step)``-keyed ``steps`` and ``results`` the
    flush works with, on the flusher's thread. ``rows`` counts the rows held
    per run (for the bound on the buffer, see :mod:`._duckdb_pressure`).

    Examples
    --------
    >>> b = Batch(); b.run_steps["r"] = {"a": _PENDING}; b.rows = 1
    >>> b.empty, list(b.flatten().steps), b.run_steps, b.rows
    (False, [('r', 'a')], {}, 0)
    """

    __slots__ = ("events", "finals", "more_pending", "results", "rows", "run_results", "run_steps", "runs", "safe",
                 "steps", "workflows")

    def __init__(self) -> None:
        #: Write the safe form: no pickles, no event details, numbers clamped (see :meth:`split`).
        self.safe = False
        self.workflows: list[tuple[WorkflowSchema, float]] = []
        #: New runs: workflow id, version, inputs, creation time and the names of their steps
        #: (PENDING unless ``steps`` holds a later record; no row per step until the flush).
        self.runs: dict[str, tuple[str, str, dict[str, Any], float, Sequence[str]]] = {}
        self.steps: dict[tuple[str, str], StepRow] = {}
        self.results: dict[tuple[str, str], Any] = {}
        #: What the broker's thread adds, per run (moved into ``steps`` / ``results`` by :meth:`flatten`).
        self.run_steps: dict[str, dict[str, StepRow]] = {}
        self.run_results: dict[str, dict[str, Any]] = {}
        self.rows = 0  # entries of run_steps and run_results
        self.events: list[Event] = []
        self.finals: dict[str, tuple[str, float]] = {}
        #: More PENDING rows of runs created in an earlier part of the same flush (see :meth:`chunks`).
        self.more_pending: list[tuple[str, Sequence[str]]] = []

    def add_workflow(self, schema: WorkflowSchema) -> None:
        """Buffer a newly registered workflow (stamped with the wall clock)."""
        self.workflows.append((schema, time.time()))

    @property
    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return not (self.workflows or self.runs or self.steps or self.results or self.events
                    or self.finals or self.more_pending or self.run_steps or self.run_results)

    def flatten(self) -> Batch:
        """Move the per-run rows and results into ``steps`` and ``results`` (later ones win); this batch."""
        for nested, flat in ((self.run_steps, self.steps), (self.run_results, self.results)):
            if nested:
                for run_id, part in nested.items():
                    flat.update(zip(zip(repeat(run_id), part), part.values(), strict=True))
                nested.clear()
        self.rows = 0
        return self

    def merged_with(self, newer: Batch) -> Batch:
        """This batch with ``newer`` applied on top (to keep changes a failed write held)."""
        self.flatten()
        newer.flatten()
        out = Batch()
        out.workflows = self.workflows + newer.workflows
        out.runs = {**self.runs, **newer.runs}
        out.steps = {**self.steps, **newer.steps}
        out.results = {**self.results, **newer.results}
        out.events = self.events + newer.events
        out.finals = {**self.finals, **newer.finals}
        return out

    def chunks(self, rows: int) -> Iterator[Batch]:
        """This batch as parts of about ``rows`` rows each, to be written in order in one transaction.

        A fan-out's root that finishes queues all its steps at once: one
        flush then holds a row and an event per step (a million at 1->1,000,000->1),
        and its Arrow tables, built whole, would be as big again. Written a
        part at a time, only one part's tables exist at once. The first part
        holds the new workflows, the new runs and the ends of runs; then come
        the new runs' PENDING rows (before any record updates one), then the
        step records (each with the result that came with it) and the events,
        then the other results, each in slices in the order they were
        buffered. Every part of a flush is written in the same transaction, so
        what a crash leaves is the same as with one part.

        Examples
        --------
        >>> b = Batch()
        >>> b.runs["r"] = ("wf", "1", {}, 0.0, ("a", "b", "c"))
        >>> b.steps[("r", "a")] = _PENDING; b.steps[("r", "b")] = _PENDING
        >>> for p in b.chunks(2):
        ...     print(list(p.runs), [names for _, names in p.more_pending], list(p.steps))
        ['r'] [('a', 'b')] []
        [] [('c',)] []
        [] [] [('r', 'a'), ('r', 'b')]
        >>> [p is b for p in b.chunks(10)]
        [True]
        """
        self.flatten()
        names = sum(len(run[4]) for run in self.runs.values())
        if max(names, len(self.steps), len(self.events), len(self.results)) <= rows:
            yield self
            return
        head = Batch()
        head.safe, head.workflows, head.finals = self.safe, self.workflows, self.finals
        # every step of a new run PENDING first, in parts, before any record updates one
        packs: list[list[tuple[str, Sequence[str]]]] = [[]]
        room = rows
        for run_id, (wf, version, inputs, created, all_names) in self.runs.items():
            head.runs[run_id] = (wf, version, inputs, created, ())
            lo = 0
            while lo < len(all_names):
                if not room:
                    packs.append([])
                    room = rows
                names_part = all_names[lo:lo + room]
                packs[-1].append((run_id, names_part))
                room -= len(names_part)
                lo += len(names_part)
        head.more_pending = packs[0]
        yield head
        for pack in packs[1:]:
            part = Batch()
            part.safe, part.more_pending = self.safe, pack
            yield part
        results = dict(self.results)
        steps, events = iter(self.steps.items()), iter(self.events)
        while True:
            part = Batch()
            part.safe = self.safe
            part.steps = dict(islice(steps, rows))
            part.events = list(islice(events, rows))
            if not (part.steps or part.events):
                break
            if results and part.steps:
                part.results = {key: results.pop(key) for key in part.steps if key in results}
            yield part
        left = iter(results.items())  # results whose step has no record in this batch
        while results:
            part.results = dict(islice(left, rows))
            if not part.results:
                break
            yield part
            part = Batch()
            part.safe = self.safe

    def split(self) -> list[Batch]:
        """This batch as one batch of workflows and one per run (to find a row that cannot be written).

        Examples
        --------
        >>> b = Batch()
        >>> b.runs["r1"] = ("wf", "1", {}, 0.0, ()); b.finals["r2"] = ("SUCCEEDED", 1.0)
        >>> [(list(p.runs), list(p.finals)) for p in b.split()]
        [(['r1'], []), ([], ['r2'])]
        """
        self.flatten()
        parts: dict[str, Batch] = {}

        def part(run_id: str) -> Batch:
            b = parts.get(run_id)
            if b is None:
                b = parts[run_id] = Batch()
            return b

        head = Batch()
        head.workflows = list(self.workflows)
        for run_id, run in self.runs.items():
            part(run_id).runs[run_id] = run
        for key, row in self.steps.items():
            part(key[0]).steps[key] = row
        for key, value in self.results.items():
            part(key[0]).results[key] = value
        for e in self.events:
            part(e.run_id).events.append(e)
        for run_id, final in self.finals.items():
            part(run_id).finals[run_id] = final
        return ([head] if head.workflows else []) + list(parts.values())

    def run_ids(self) -> list[str]:
        """The runs this batch touches (for messages)."""
        self.flatten()
        ids = {*self.runs, *self.finals, *(k[0] for k in self.steps), *(k[0] for k in self.results),
               *(e.run_id for e in self.events)}
        return sorted(ids, key=str)

    def arrow_tables(self, unpicklable: dict[tuple[str, str], Any],
                     spill: Callable[[tuple[str, str], bytes], str] | None = None,
                     places: RowPlaces | None = None) -> dict[str, pa.Table]:
        """One Arrow table per non-empty part, named as the write statements expect.

        Not the workflows: the flush writes each one's JSON text as a statement
        parameter (an Arrow table would be one more copy of a text that is
        ~300 MB for a 1,000,000-step workflow).

        A result rides with its step's row, and a run's end with its creation,
        when both are in this batch (fewer statements: each costs ~1 ms). The
        big parts are built column by column: no tuple per row, so the flusher
        makes little garbage for the collector. Results that cannot be pickled
        are put in ``unpicklable`` instead; a result pickled bigger than
        ``FILE_BYTES`` goes to ``spill(key, bytes)``, which writes it to a file
        and names it (see :mod:`._duckdb_files`). When ``places`` knows where
        every step record's row is, ``batch_steps`` has their row ids too (``rid``).
        """
        self.flatten()
        columns: dict[str, list[Any]] = {}
        tables: dict[str, pa.Table] = {}
        finals = dict(self.finals)
        if self.runs:
            runs = []
            for run_id, (wf, version, inputs, created, _names) in self.runs.items():
                state, finished = finals.pop(run_id, ("RUNNING", None))
                text, blob = inputs_columns(run_id, inputs, None if self.safe else spill)
                runs.append((run_id, wf, version, state, text, None if self.safe else blob, created, finished))
            columns["batch_runs"] = _transpose(runs)
        results = dict(self.results)
        steps, pending = self.steps, []
        if self.runs:
            # the steps of a run created in this batch cannot be in the file yet: inserted, not updated
            steps, new = dict(steps), {}
            saved = Counter(key[0] for key in steps if key[0] in self.runs)
            for run_id, (*_, names) in self.runs.items():
                if not names:  # written in parts (see chunks): its rows are in more_pending
                    continue
                if saved[run_id] * 2 > len(names):  # most have a record already (a short run): rows in order
                    new.update({(run_id, n): steps.pop((run_id, n), _PENDING) for n in names})
                else:  # all PENDING (made as whole columns), the few recorded ones updated after
                    pending.append(self._pending(run_id, names))
            if new:
                pending.append(table("batch_new_steps", self._step_columns(new, results, unpicklable, spill),
                                      self.safe))
        pending += (self._pending(run_id, names) for run_id, names in self.more_pending)
        if pending:
            tables["batch_new_steps"] = pending[0] if len(pending) == 1 else pa.concat_tables(pending)
        if steps:
            columns["batch_steps"] = self._step_columns(steps, results, unpicklable, spill)
            step_columns = columns["batch_steps"]
            rid = None if places is None else places.row_ids(step_columns[0], step_columns[1])
            if rid is not None:
                tables["batch_steps"] = pa.Table.from_arrays(
                    [*table("batch_steps", columns.pop("batch_steps"), self.safe).columns, rid],
                    schema=WITH_ROWID)
        if results:
            stored = [self._result(key, value, unpicklable, spill) for key, value in results.items()]
            columns["batch_results"] = [*zip(*results, strict=True), *zip(*stored, strict=True)]
        if self.events:
            ev = self.events
            columns["batch_events"] = [
                [e.run_id for e in ev], [e.seq for e in ev], [e.at for e in ev], [e.step for e in ev],
                [e.kind for e in ev], [e.state for e in ev],  # a Status is a str: Arrow takes it as is
                [e.worker for e in ev], [e.attempt for e in ev],
                _nones(len(ev)) if self.safe else details_json(ev),
            ]
        if finals:
            columns["batch_finals"] = _transpose([(run_id, state, at) for run_id, (state, at) in finals.items()])
        tables.update((name, table(name, cols, self.safe)) for name, cols in columns.items())
        return tables

    def _pending(self, run_id: str, names: Sequence[str]) -> pa.Table:
        """The PENDING rows of a new run's steps, as whole Arrow columns (no Python object per row)."""
        schema, n = SCHEMAS["batch_new_steps"], len(names)
        row = (run_id, None, *_PENDING, *_NO_ERROR, *_NO_RESULT)  # None: the names' column
        arrays = [array("batch_new_steps", field, names, self.safe) if value is None and i == 1
                  else pa.repeat(array("batch_new_steps", field, [value], self.safe)[0], n)
                  for i, (field, value) in enumerate(zip(schema, row, strict=True))]
        return pa.Table.from_arrays(arrays, schema=schema)

    def _step_columns(self, part: dict[tuple[str, str], StepRow], results: dict[tuple[str, str], Any],
                      unpicklable: dict[tuple[str, str], Any],
                      spill: Callable[[tuple[str, str], bytes], str] | None) -> list[Any]:
        """The columns of ``part``'s step rows, each result that arrived with its step (popped from
        ``results``) beside it. Whole columns at a time: a flush of a long run has thousands of rows."""
        n = len(part)
        columns: list[Any] = [*zip(*part, strict=True), *zip(*part.values(), strict=True)]
        errors = columns[11]  # the key's two columns, then StepRow's ``error``
        if errors.count(None) == n:
            columns += (_nones(n),) * 2
        else:
            columns += zip(*[_NO_ERROR if e is None else split_error(e) for e in errors], strict=True)
        give_way()
        if results and not results.keys().isdisjoint(part):
            columns += zip(*self._results_of(part, results, unpicklable, spill), strict=True)
            give_way()
        else:
            columns += (_nones(n),) * len(_NO_RESULT)
        return columns

    def _results_of(self, part: dict[tuple[str, str], StepRow], results: dict[tuple[str, str], Any],
                    unpicklable: dict[tuple[str, str], Any],
                    spill: Callable[[tuple[str, str], bytes], str] | None) -> list[StoredResult]:
        """The stored result of each step of ``part`` (popped from ``results``; ``_NO_RESULT`` for a
        step whose result is not in this batch). A step that returned None (most do) costs no call."""
        none = _NONE_STORED if not self.safe else None  # the safe form stores None's preview only
        out: list[StoredResult] = []
        pop, add = results.pop, out.append
        for key in part:
            value = pop(key, _NO_RESULT)
            if value is None and none is not None:
                add(none)
            elif value is _NO_RESULT:
                add(_NO_RESULT)
            else:
                add(self._result(key, value, unpicklable, spill))
        return out

    def _result(self, key: tuple[str, str], value: Any, unpicklable: dict[tuple[str, str], Any],
                spill: Callable[[tuple[str, str], bytes], str] | None) -> StoredResult:
        preview_text, blob, size, fp, type_name, rich = result_row(key, value)
        if self.safe and blob is not None:  # the safe form keeps the preview, the value in memory
            blob = size = fp = rich = None
        if blob is None:
            unpicklable[key] = value
        elif spill is not None and len(blob) > FILE_BYTES:
            return preview_text, None, size, fp, type_name, rich, spill(key, blob)
        return preview_text, blob, size, fp, type_name, rich, None


#: Stored result columns: a ``ResultRow`` and the name of the file holding big bytes (else None).
StoredResult = tuple[str | None, bytes | None, int | None, str | None, str | None, str | None, str | None]
_NO_ERROR: tuple[None, None] = (None, None)
_PENDING: StepRow = step_row(StepInfo())  # a step no record has reached yet
_NO_RESULT: StoredResult = (None, None, None, None, None, None, None)
_NONE_STORED: StoredResult = (*result_row(("", ""), None), None)  # a step that returned None


def _nones(n: int) -> tuple[None, ...]:
    return (None,) * n


def _transpose(rows: list[tuple[Any, ...]]) -> list[Any]:
    return list(zip(*rows, strict=True))
