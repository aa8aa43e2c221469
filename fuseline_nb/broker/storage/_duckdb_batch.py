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
from ._duckdb_rows import StepRow, inputs_columns, result_row, split_error

_S, _F, _I, _B = pa.string(), pa.float64(), pa.int32(), pa.binary()
_SCHEMAS = {
    "batch_workflows": pa.schema([("workflow_id", _S), ("version", _S), ("name", _S),
                                  ("schema_json", _S), ("registered_at", _F)]),
    "batch_runs": pa.schema([("run_id", _S), ("workflow_id", _S), ("version", _S), ("state", _S),
                             ("inputs_json", _S), ("inputs_pickle", _B), ("created_at", _F),
                             ("finished_at", _F)]),
    "batch_steps": pa.schema([("run_id", _S), ("step", _S), ("state", _S), ("skip_reason", _S),
                              ("action", _S), ("attempts", _I), ("worker", _S), ("queued_at", _F),
                              ("started_at", _F), ("finished_at", _F), ("error", _S), ("traceback", _S),
                              ("error_type", _S), ("error_message", _S)]),
    "batch_results": pa.schema([("run_id", _S), ("step", _S), ("result_preview", _S),
                                ("result_pickle", _B), ("result_bytes", pa.int64())]),
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

        Results that cannot be pickled are put in ``unpicklable`` instead.
        """
        rows: dict[str, list[tuple[Any, ...]]] = {
            "batch_workflows": [(s.workflow_id, s.version, s.name, s.to_json(), at)
                                for s, at in self.workflows],
            "batch_runs": [(run_id, wf, version, "RUNNING", *inputs_columns(run_id, inputs), created, None)
                           for run_id, (wf, version, inputs, created) in self.runs.items()],
            "batch_steps": [(*key, *row, *split_error(row[8])) for key, row in self.steps.items()],
            "batch_results": [],
            "batch_events": [(e.run_id, e.seq, e.at, e.step, e.kind,
                              None if e.state is None else e.state.value, e.worker, e.attempt,
                              None if e.detail is None else json.dumps(e.detail, default=repr))
                             for e in self.events],
            "batch_finals": [(run_id, state, at) for run_id, (state, at) in self.finals.items()],
        }
        for key, value in self.results.items():
            preview, blob, size = result_row(key, value)
            if blob is None:
                unpicklable[key] = value
            rows["batch_results"].append((*key, preview, blob, size))
        return {name: _table(name, r) for name, r in rows.items() if r}


def _table(name: str, rows: list[tuple[Any, ...]]) -> pa.Table:
    schema = _SCHEMAS[name]
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)],
                                schema=schema)
