"""A flush makes a column whose rows all hold one value from that value once (``_duckdb_arrow.array``):
the rows in the file are the same as when every row is converted, odd values included."""

from __future__ import annotations

import logging

import pytest

from fuseline_nb import Status
from fuseline_nb.broker.storage import DuckDBRuntimeStorage, _duckdb_arrow
from fuseline_nb.workflow.events import Event
from fuseline_nb.workflow.runinfo import StepInfo

N = 100  # over CONSTANT_FROM: the flushes below take the one-value path for most columns
assert N >= _duckdb_arrow.CONSTANT_FROM


def _history(path):
    """Two flushes of a 100-step run with columns of one value, and columns of one value but one."""
    names = [f"s{i:03}" for i in range(N)]
    with DuckDBRuntimeStorage(path, flush_interval=3600) as st:
        st._stopping = True  # the test's flushes only
        st.create_run("r", "wf", "1", {}, names, created_at=0.0)
        st.create_run("odd", "wf", "1", {}, names, created_at=0.0)
        st.flush()
        queued = StepInfo(Status.PENDING, queued_at=4.0)
        st.save_steps("r", [(n, queued) for n in names])  # one shared record: every column one value
        st.record_events([Event("step_queued", "r", i, 4.0, n, Status.PENDING) for i, n in enumerate(names)])
        st.flush()
        for i, n in enumerate(names):
            st.save_step("r", n, StepInfo(Status.SUCCEEDED, attempts=1, action="default",
                                          worker="w2" if i == N // 2 else "w1",  # one other value, mid-column
                                          queued_at=4.0, started_at=5.0 + i, finished_at=6.0 + i))
            st.set_result("r", n, None)
            st.record_event(Event("step_finished", "r", N + i, 6.0 + i, n, Status.SUCCEEDED, "w1", 1,
                                  {"action": "default", "error": None}))
        # one value out of range in every row: a time DuckDB cannot store, an attempt count over INTEGER
        for i, n in enumerate(names):
            st.save_step("odd", n, StepInfo(Status.FAILED, attempts=2**40, error="ValueError: bad",
                                            finished_at=1e300))
            st.record_event(Event("step_finished", "odd", i, 1e300, n, Status.FAILED, None, 2**40))
        st.flush()
        return {table: st._execute(f"SELECT * FROM {table} ORDER BY rowid") for table in ("fl_steps", "fl_events")}


def test_columns_of_one_value_give_the_rows_every_row_converted_gives(tmp_path, monkeypatch, caplog):
    made_once: list[int] = []
    real = _duckdb_arrow._one

    def counting(table, field, value, safe, n):
        made_once.append(n)
        return real(table, field, value, safe, n)

    monkeypatch.setattr(_duckdb_arrow, "_one", counting)
    with caplog.at_level(logging.WARNING):
        fast = _history(tmp_path / "fast.duckdb")
    fast_warnings = sorted({r.getMessage().replace("fast.duckdb", "x") for r in caplog.records})
    assert len(made_once) > 30  # the one-value path was taken

    caplog.clear()
    monkeypatch.setattr(_duckdb_arrow, "CONSTANT_FROM", 10**9)  # every row converted
    with caplog.at_level(logging.WARNING):
        slow = _history(tmp_path / "slow.duckdb")
    assert fast == slow
    assert fast_warnings == sorted({r.getMessage().replace("slow.duckdb", "x") for r in caplog.records})
    assert any("times outside" in w for w in fast_warnings)

    steps = {(r[0], r[1]): r for r in fast["fl_steps"]}
    assert steps[("r", "s050")][6] == "w2" and steps[("r", "s049")][6] == "w1"
    assert {r[2] for r in fast["fl_steps"] if r[0] == "r"} == {"SUCCEEDED"}
    odd = [r for r in fast["fl_steps"] if r[0] == "odd"]
    assert {(r[5], r[9]) for r in odd} == {(2**31 - 1, None)}  # clamped (the safe form), time NULL


@pytest.mark.parametrize("column", [("a",) * 80 + ("b",), ("b",) + ("a",) * 80, [None] * 80 + ["x"],
                                    [1.5] * 40 + [float("nan")] + [1.5] * 40, (Status.RUNNING,) * 81])
def test_a_column_is_the_same_whichever_way_it_is_made(column):
    field = {str: "worker", float: "finished_at", Status: "state"}.get(
        type(column[-1]) if column[-1] is not None else str)
    f = _duckdb_arrow.SCHEMAS["batch_steps"].field(field)
    made = _duckdb_arrow.array("batch_steps", f, column, False)
    assert made.equals(_duckdb_arrow._array("batch_steps", f, column, False)) or made.to_pylist() == [
        str(v) if isinstance(v, Status) else v for v in column]
    assert len(made) == len(column) and made.type == f.type


def test_a_details_text_is_reused_only_for_a_detail_that_writes_the_same_json():
    # most steps finish with one detail, encoded once per flush; equal details of other types
    # (True == 1 == 1.0, 0.0 == -0.0, a str enum == its text, {1: ..} vs {True: ..}) keep their own text
    from fuseline_nb.broker.storage._duckdb_arrow import ENCODER, details_json

    details = [{"action": "default", "error": None, "skip_reason": None}, {"n": 1}, {"n": True}, {"n": 1.0},
               {"n": 0.0}, {"n": -0.0}, {"n": False}, {"n": 0}, {"s": Status.RUNNING}, {"s": "RUNNING"},
               {1: "k"}, {True: "k"}, {"1": "k"}, {"t": (1,)}, {"t": (True,)}, {"l": [1]}, {"l": [True]}]
    events = [Event("step_finished", "r", i, 0.0, detail=d) for i, d in enumerate(details * 3)]
    assert details_json(events) == [ENCODER.encode(d) for d in details * 3]
