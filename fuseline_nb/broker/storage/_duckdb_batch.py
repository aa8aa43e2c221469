"""The write buffer of the DuckDB storage, and its conversion to Arrow batches.

The broker's thread only adds to a :class:`Batch` (dict and list writes);
the flusher swaps it for an empty one and turns it into one Arrow table per
statement of :data:`._duckdb_sql.WRITE_ORDER`.

Examples
--------
>>> b = Batch()
>>> b.empty
True
>>> b.runs["r1"] = ("wf", "1", {"x": 1}, 0.0)
>>> sorted(b.arrow_tables({}))
['batch_runs']
"""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa

from ...workflow.events import Event
from ...workflow.schema import WorkflowSchema
from ._duckdb_rows import ResultRow, StepRow, inputs_columns, result_row, split_error, to_json

_encode = json.JSONEncoder(default=repr).encode  # one encoder: json.dumps(default=) builds one per call


def _json(detail: dict[str, Any]) -> str:
    try:
        return _encode(detail)
    except (TypeError, ValueError):  # never let one odd detail block every later flush
        return to_json(detail)


_S, _F, _I, _B = pa.string(), pa.float64(), pa.int32(), pa.binary()
_SCHEMAS = {
    "batch_workflows": pa.schema([("workflow_id", _S), ("version", _S), ("name", _S),
                                  ("schema_json", _S), ("registered_at", _F)]),
    "batch_runs": pa.schema([("run_id", _S), ("workflow_id", _S), ("version", _S), ("state", _S),
                             ("inputs_json", _S), ("inputs_pickle", _B), ("created_at", _F),
                             ("finished_at", _F)]),
    "batch_steps": pa.schema([("run_id", _S), ("step", _S), ("state", _S), ("skip_reason", _S),
                              ("action", _S), ("attempts", _I), ("worker", _S), ("queued_at", _F),
                              ("started_at", _F), ("finished_at", _F), ("recovered", pa.bool_()), ("error", _S), ("traceback", _S),
                              ("error_type", _S), ("error_message", _S), ("result_preview", _S),
                              ("result_pickle", _B), ("result_bytes", pa.int64()),
                              ("result_fingerprint", _S), ("result_type", _S), ("result_rich", _S)]),
    "batch_results": pa.schema([("run_id", _S), ("step", _S), ("result_preview", _S),
                                ("result_pickle", _B), ("result_bytes", pa.int64()),
                                ("result_fingerprint", _S), ("result_type", _S), ("result_rich", _S)]),
    "batch_events": pa.schema([("run_id", _S), ("seq", _I), ("at", _F), ("step", _S), ("kind", _S),
                               ("state", _S), ("worker", _S), ("attempt", _I), ("detail_json", _S)]),
    "batch_finals": pa.schema([("run_id", _S), ("state", _S), ("finished_at", _F)]),
}


class Batch:
    """Changes not yet written: the latest record wins per run and per step."""

    __slots__ = ("events", "finals", "results", "runs", "steps", "workflows")

    def __init__(self) -> None:
        self.workflows: list[tuple[WorkflowSchema, float]] = []
        self.runs: dict[str, tuple[str, str, dict[str, Any], float]] = {}
        self.steps: dict[tuple[str, str], StepRow] = {}
        self.results: dict[tuple[str, str], Any] = {}
        self.events: list[Event] = []
        self.finals: dict[str, tuple[str, float]] = {}

    def add_workflow(self, schema: WorkflowSchema) -> None:
        """Buffer a newly registered workflow (stamped with the wall clock)."""
        self.workflows.append((schema, time.time()))

    @property
    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return not (self.workflows or self.runs or self.steps or self.results or self.events
                    or self.finals)

    def merged_with(self, newer: Batch) -> Batch:
        """This batch with ``newer`` applied on top (to keep changes a failed write held)."""
        out = Batch()
        out.workflows = self.workflows + newer.workflows
        out.runs = {**self.runs, **newer.runs}
        out.steps = {**self.steps, **newer.steps}
        out.results = {**self.results, **newer.results}
        out.events = self.events + newer.events
        out.finals = {**self.finals, **newer.finals}
        return out

    def arrow_tables(self, unpicklable: dict[tuple[str, str], Any]) -> dict[str, pa.Table]:
        """One Arrow table per non-empty part, named as the write statements expect.

        A result rides with its step's row, and a run's end with its creation,
        when both are in this batch (fewer statements: each costs ~1 ms). The
        big parts are built column by column: no tuple per row, so the flusher
        makes little garbage for the collector. Results that cannot be pickled
        are put in ``unpicklable`` instead.
        """
        columns: dict[str, list[Any]] = {}
        if self.workflows:
            columns["batch_workflows"] = _transpose([(s.workflow_id, s.version, s.name, s.to_json(), at)
                                                     for s, at in self.workflows])
        finals = dict(self.finals)
        if self.runs:
            runs = []
            for run_id, (wf, version, inputs, created) in self.runs.items():
                state, finished = finals.pop(run_id, ("RUNNING", None))
                runs.append((run_id, wf, version, state, *inputs_columns(run_id, inputs), created, finished))
            columns["batch_runs"] = _transpose(runs)
        results = dict(self.results)
        if self.steps:
            keys, rows = list(self.steps), list(self.steps.values())
            errors = [split_error(e) if e is not None else _NO_ERROR for (*_, e, _tb) in rows]
            stored = [self._result(key, results.pop(key), unpicklable) if key in results else _NO_RESULT
                      for key in keys]
            columns["batch_steps"] = [*zip(*keys, strict=True), *zip(*rows, strict=True),
                                      *zip(*errors, strict=True), *zip(*stored, strict=True)]
        if results:
            stored = [self._result(key, value, unpicklable) for key, value in results.items()]
            columns["batch_results"] = [*zip(*results, strict=True), *zip(*stored, strict=True)]
        if self.events:
            ev = self.events
            columns["batch_events"] = [
                [e.run_id for e in ev], [e.seq for e in ev], [e.at for e in ev], [e.step for e in ev],
                [e.kind for e in ev], [e.state for e in ev],  # a Status is a str: Arrow takes it as is
                [e.worker for e in ev], [e.attempt for e in ev],
                [None if e.detail is None else _json(e.detail) for e in ev],
            ]
        if finals:
            columns["batch_finals"] = _transpose([(run_id, state, at) for run_id, (state, at) in finals.items()])
        return {name: _table(name, cols) for name, cols in columns.items()}

    @staticmethod
    def _result(key: tuple[str, str], value: Any,
                unpicklable: dict[tuple[str, str], Any]) -> ResultRow:
        stored = result_row(key, value)
        if stored[1] is None:
            unpicklable[key] = value
        return stored


_NO_ERROR: tuple[None, None] = (None, None)
_NO_RESULT: ResultRow = (None, None, None, None, None, None)


def _transpose(rows: list[tuple[Any, ...]]) -> list[Any]:
    return list(zip(*rows, strict=True))


def _table(name: str, columns: list[Any]) -> pa.Table:
    schema = _SCHEMAS[name]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)],
                                schema=schema)
