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


def _random_history(path, seed: int, reopen_at: int | None = None):
    """Random records, results and run ends over a few runs, flushed at random points; every row."""
    import random

    from fuseline_nb.workflow.value import Value

    rnd = random.Random(seed)
    names = {f"r{k}": [f"s{i}" for i in range(rnd.randint(1, 90))] for k in range(4)}
    infos = [
        lambda: StepInfo(Status.PENDING, queued_at=1.0),
        lambda: StepInfo(Status.RUNNING, attempts=1, worker="w1", queued_at=1.0, started_at=2.0),
        lambda: StepInfo(Status.SUCCEEDED, attempts=1, worker="w2", action="default", started_at=2.0, finished_at=3.0),
        lambda: StepInfo(Status.FAILED, attempts=2, error="ValueError: bad", traceback="Traceback ...", finished_at=4.0),
        lambda: StepInfo(Status.SKIPPED, skip_reason="a branch not taken"),
        lambda: StepInfo(Status.FAILED, attempts=1, error="lease expired", recovered=True),
        lambda: StepInfo(Status.PENDING, attempts=3, queued_at=5.0),  # a retry queued: the error goes
    ]
    results = [None, 1, "text", Value.of({"k": [1, 2]}), Value.of(list(range(50)))]
    st = DuckDBRuntimeStorage(path, flush_interval=3600)
    try:
        st._stopping = True
        for k, (run_id, steps) in enumerate(names.items()):
            st.create_run(run_id, "wf", "1", {}, steps, created_at=float(k))
        live = list(names)
        for turn in range(400):
            if reopen_at == turn:  # a later process goes on with the runs: it knows nothing of their rows
                st.close()
                st = DuckDBRuntimeStorage(path, flush_interval=3600)
                st._stopping = True
            run_id = rnd.choice(live) if live else None
            roll = rnd.random()
            if run_id is None or roll < 0.3:
                st.flush()
            elif roll < 0.7:
                steps = rnd.sample(names[run_id], rnd.randint(1, len(names[run_id])))
                info = rnd.choice(infos)()
                st.save_steps(run_id, [(s, info) for s in steps])
            elif roll < 0.85:
                st.set_result(run_id, rnd.choice(names[run_id]), rnd.choice(results))
            elif roll < 0.9:
                st.save_step(run_id, f"extra{turn}", rnd.choice(infos)())  # a step create_run did not name
            elif roll < 0.92 and len(live) > 1:
                st.finalize_run(run_id, Status.SUCCEEDED, 9.0)
                live.remove(run_id)
        st.flush()
        return st._execute("SELECT * FROM fl_steps ORDER BY run_id, step")
    finally:
        st.close()


@pytest.mark.parametrize("seed", range(6))
def test_the_columns_a_flush_leaves_out_hold_the_value_it_would_have_written(tmp_path, monkeypatch, seed):
    # DuckDB logs every column an UPDATE sets: a flush leaves out those its runs' rows still hold at
    # their PENDING value. Random histories (errors then retries, skips, recovered, results coming
    # apart, steps no create_run named, runs ending, a reopened file) give the same rows as setting all.
    from fuseline_nb.broker.storage import _duckdb_columns

    left: list[frozenset[str]] = []
    real = _duckdb_columns.CleanColumns.unchanged

    def recording(self, rows):
        out = real(self, rows)
        left.append(out)
        return out

    monkeypatch.setattr(_duckdb_columns.CleanColumns, "unchanged", recording)
    reopen = 200 if seed % 2 else None
    fewer = _random_history(tmp_path / "fewer.duckdb", seed, reopen)
    assert any(left)  # columns were left out
    monkeypatch.setattr(_duckdb_columns.CleanColumns, "unchanged", lambda self, rows: frozenset())
    assert _random_history(tmp_path / "all.duckdb", seed, reopen) == fewer


def test_a_fan_outs_queued_rows_set_one_column_and_its_finished_rows_leave_the_errors_alone(monkeypatch):
    from fuseline_nb.broker.storage import _duckdb_write

    scripts: list[str] = []
    real = _duckdb_write.run_script
    monkeypatch.setattr(_duckdb_write, "run_script",
                        lambda con, script, **tables: scripts.append(script) or real(con, script, **tables))
    names = [f"s{i}" for i in range(N)]
    with DuckDBRuntimeStorage(flush_interval=3600) as st:
        st._stopping = True
        st.create_run("r", "wf", "1", {}, names, created_at=0.0)
        st.flush()
        st.save_steps("r", [(n, StepInfo(Status.PENDING, queued_at=1.0)) for n in names])
        st.flush()
        update = scripts[-1][scripts[-1].index("UPDATE fl_steps"):]
        assert update.startswith("UPDATE fl_steps SET state = b.state, queued_at = b.queued_at FROM")
        for n in names:
            st.save_step("r", n, StepInfo(Status.SUCCEEDED, attempts=1, worker="w", queued_at=1.0, finished_at=2.0))
            st.set_result("r", n, None)
        st.flush()
        update = scripts[-1][scripts[-1].index("UPDATE fl_steps"):]
        for column in ("error", "traceback", "skip_reason", "recovered", "result_rich", "started_at"):
            assert f" {column} = " not in update
        for column in ("state", "worker", "finished_at", "queued_at", "result_preview", "result_pickle"):
            assert f" {column} = " in update
        st.save_step("r", "s0", StepInfo(Status.FAILED, attempts=2, error="ValueError: x"))
        st.flush()
        st.save_step("r", "s0", StepInfo(Status.PENDING, attempts=2, queued_at=3.0))  # retried: the error goes
        st.flush()
        assert " error = " in scripts[-1]
        assert st._execute("SELECT state, error, error_type, finished_at FROM fl_steps WHERE step = 's0'") == [
            ("PENDING", None, None, None)]


def test_columns_moved_by_a_new_runs_rows_or_by_late_results_are_set_again_later():
    # the rows of a run recorded in its first flush are inserted with their values, and results
    # whose records came earlier are written apart: the columns they move are not left out later
    import pickle

    from fuseline_nb.workflow.value import Value

    rich = Value(pickle.dumps(1), "f" * 32, "1", "int", {"html": "<b>1</b>"})
    with DuckDBRuntimeStorage(flush_interval=3600) as st:
        st._stopping = True
        st.create_run("r", "wf", "1", {}, ["a", "b", "c"], created_at=0.0)
        st.save_steps("r", [(n, StepInfo(Status.FAILED, attempts=1, error="ValueError: x", recovered=True))
                            for n in "abc"])
        st.flush()  # inserted with the run, errors and all
        st.set_result("r", "a", rich)  # its record came in the flush before: written apart
        st.flush()
        st.save_steps("r", [(n, StepInfo(Status.SUCCEEDED, attempts=2)) for n in "abc"])
        st.set_result("r", "a", 2)
        st.flush()
        rows = st._execute("SELECT step, state, error, error_type, recovered, result_preview, result_rich "
                           "FROM fl_steps ORDER BY step")
    assert rows == [("a", "SUCCEEDED", None, None, False, "2", None),
                    ("b", "SUCCEEDED", None, None, False, None, None),
                    ("c", "SUCCEEDED", None, None, False, None, None)]


@pytest.mark.parametrize("extra", [False, True])
def test_a_run_created_and_queued_in_one_big_flush_is_updated_by_row_id(tmp_path, monkeypatch, extra):
    # a fan-out's root often queues every step before the run's first flush: that flush is written
    # in parts (the PENDING rows, then the records); the records are found by row id inside the
    # transaction (not by hashing every row's keys), the rows are the same, and after the commit the
    # run is placed at its real row ids (the next flush finds its rows there)
    from fuseline_nb.broker.storage import _duckdb_places, _duckdb_write

    monkeypatch.setattr(_duckdb_places, "PLACED_STEPS", 10)
    names = [f"s{i:02}" for i in range(30)][::-1]

    def history(path):
        scripts: list[str] = []
        real = _duckdb_write.run_script
        monkeypatch.setattr(_duckdb_write, "run_script",
                            lambda con, script, **tables: scripts.append(script) or real(con, script, **tables))
        with DuckDBRuntimeStorage(path, flush_interval=3600) as st:
            st._stopping = True
            st.create_run("before", "wf", "1", {}, ["x"], created_at=0.0)  # rows before the run's
            st.flush()
            st.create_run("r", "wf", "1", {}, names, created_at=0.0)
            st.save_steps("r", [(n, StepInfo(Status.PENDING, queued_at=1.0)) for n in names[:25]])
            if extra:  # a step create_run did not name: its row comes after the block, the run is not placed
                st.save_step("r", "not named", StepInfo(Status.SKIPPED, skip_reason="extra"))
            st.flush()
            first = st._execute("SELECT min(rowid) FROM fl_steps WHERE run_id = 'r'")[0][0]
            if extra:
                assert "r" not in st._places.runs  # not left at its row ids inside the transaction
            else:
                assert st._places.runs["r"][0] == first == 1  # placed again after the commit
            st.save_steps("r", [(n, StepInfo(Status.SUCCEEDED, attempts=1, finished_at=2.0)) for n in names[:9]])
            st.flush()
            rows = st._execute("SELECT * FROM fl_steps ORDER BY rowid")
            assert ("r" in st._places.runs) is not extra  # no row was missed where it was placed
        monkeypatch.setattr(_duckdb_write, "run_script", real)
        return rows, scripts

    whole, _ = history(tmp_path / "whole.duckdb")
    monkeypatch.setattr(_duckdb_write, "CHUNK_ROWS", 7)
    parts, scripts = history(tmp_path / "parts.duckdb")
    assert parts == whole
    updates = [s for s in scripts if "UPDATE fl_steps" in s]
    assert sum("b.rid" in s for s in updates) >= 3  # the queued parts (and the next flush's): by row id
    assert ("b.rid" in updates[-1]) is not extra


def test_a_value_whose_comparison_raises_is_converted_as_every_row_is():
    class Odd:
        def __eq__(self, other):
            raise ValueError("no comparing me")

        __hash__ = object.__hash__

    f = _duckdb_arrow.SCHEMAS["batch_steps"].field("worker")
    made = _duckdb_arrow.array("batch_steps", f, ["w"] * 80 + [Odd()], False)  # made writable, not raised
    assert made.to_pylist()[:80] == ["w"] * 80 and len(made) == 81
