"""DuckDBRuntimeStorage and DuckDBBroker in one process: round trips, views, errors, misuse.

Grouped as in CPython's dbm.sqlite3 tests: ReadWrite, Views, Misuse, BadFile, Migration.
The cross-process tests (lock, restart, crash) are in test_duckdb_restart.py.
"""

from __future__ import annotations

import sys
import threading
import time

import duckdb
import pytest

from fuseline_nb import Depends, FunctionStep, Status, Workflow
from fuseline_nb.broker import DuckDBBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.broker.storage import DuckDBRuntimeStorage
from fuseline_nb.broker.storage import _duckdb_sql as Q
from fuseline_nb.broker.storage._duckdb_batch import Batch
from fuseline_nb.broker.storage._duckdb_sql import CURRENT_VERSION
from fuseline_nb.errors import (
    StorageClosedError,
    StorageError,
    StorageLockedError,
    StorageVersionError,
    UnknownRunError,
)
from fuseline_nb.worker import ProcessEngine
from fuseline_nb.workflow.events import Event
from fuseline_nb.workflow.runinfo import StepInfo
from fuseline_nb.workflow.schema import StepSchema, WorkflowSchema

_BY_ROW_ID = "WHERE fl_steps.rowid = b.rid"  # the steps UPDATE finds its rows by row id
_SETS_RESULTS = "result_preview = CASE"  # ... and sets the results that came with them

VIEW_COLUMNS = {
    "workflows": ["workflow_id", "version", "name", "schema_json", "registered_at"],
    "runs": ["run_id", "workflow_id", "version", "state", "inputs_json", "created_at", "finished_at",
             "duration_s"],
    "steps": ["run_id", "step", "state", "skip_reason", "action", "attempts", "worker", "queued_at",
              "started_at", "finished_at", "duration_s", "result_preview", "error_type", "error_message",
              "traceback", "cached", "cached_from", "recovered"],
    "events": ["run_id", "seq", "at", "step", "kind", "state", "worker", "attempt", "detail_json"],
    "cache": ["step", "key", "code_fingerprint", "result_bytes", "hits", "created_at", "last_hit_at",
              "workflow_id", "run_id", "action", "result_fingerprint"],
}


def _workflow() -> Workflow:
    def load(x):
        return [x, x + 1]

    def total(rows=Depends(load)):
        return sum(rows)

    def boom(rows=Depends(load)):
        raise ValueError(f"bad rows: {rows}")

    return Workflow(outputs=[FunctionStep(total), FunctionStep(boom)], workflow_id="hist")


def _run(broker, wf: Workflow, inputs: dict) -> str:
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema(), inputs)
    ProcessEngine(client, [wf]).work()
    return run_id


class TestReadWrite:
    def test_a_run_reads_back_with_results_inputs_and_errors(self, tmp_path):
        wf = _workflow()
        with DuckDBBroker(tmp_path / "h.duckdb") as broker:
            run_id = _run(broker, wf, {"x": 2})
            info = broker.get_run(run_id)
        assert info.state is Status.FAILED
        assert info.inputs == {"x": 2}
        assert info.steps["load"].result == [2, 3]
        assert info.steps["total"].result == 5
        assert info.steps["boom"].state is Status.FAILED
        assert info.steps["boom"].error == "ValueError: bad rows: [2, 3]"
        assert "Traceback" in info.steps["boom"].traceback
        assert info.steps["total"].attempts == 1 and info.steps["total"].worker

    def test_a_finished_run_equals_the_live_one(self, tmp_path):
        st = DuckDBRuntimeStorage(tmp_path / "h.duckdb")
        st.create_run("r1", "wf", "1", {"when": {1, 2}}, ["a", "b"], created_at=10.0)
        done = StepInfo(Status.SUCCEEDED, attempts=2, worker="w1", action="default",
                        queued_at=10.5, started_at=11.0, finished_at=12.25)
        st.save_step("r1", "a", done)
        st.set_result("r1", "a", {"rows": 3})
        skipped = StepInfo(Status.SKIPPED, skip_reason="not_reached", finished_at=12.5)
        st.save_step("r1", "b", skipped)
        event = Event("step_finished", "r1", 1, 12.25, "a", Status.SUCCEEDED, "w1", 2, {"action": "default"})
        st.record_event(event)
        st.finalize_run("r1", Status.SUCCEEDED, 13.0)
        st.close()
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
            info = st.load_run("r1")
            assert info.state is Status.SUCCEEDED and info.finished_at == 13.0
            assert info.inputs == {"when": {1, 2}}  # the pickle, not the JSON text
            done.result = {"rows": 3}
            assert info.steps == {"a": done, "b": skipped}
            assert st.events("r1") == [event]
            assert st.get_result("r1", "a").load() == {"rows": 3} and st.get_result("r1", "b") is None
            assert st.unfinished_runs() == []
            assert [r.run_id for r in st.list_runs()] == ["r1"]

    def test_reads_see_buffered_changes_without_an_explicit_flush(self):
        with DuckDBRuntimeStorage(":memory:", flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
            st.save_step("r1", "a", StepInfo(Status.RUNNING, attempts=1))
            assert st.unfinished_runs() == ["r1"]
            assert st.load_run("r1").steps["a"].state is Status.RUNNING
            assert st.sql("SELECT state FROM steps").fetchall() == [("RUNNING",)]

    def test_the_flusher_writes_within_its_interval(self):
        with DuckDBRuntimeStorage(":memory:", flush_interval=0.05) as st:
            st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
            deadline = time.monotonic() + 2
            while st._execute("SELECT count(*) FROM fl_runs")[0][0] == 0:  # no flush on this read
                assert time.monotonic() < deadline, "nothing was flushed within 2 s"
                time.sleep(0.01)

    def test_changes_split_across_flushes_read_back_whole(self):
        with DuckDBRuntimeStorage(flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, ["a", "b"], created_at=0.0)
            st.flush()
            st.set_result("r1", "a", "first")  # a result without its step row in the batch
            st.flush()
            st.save_step("r1", "a", StepInfo(Status.SUCCEEDED, attempts=1))  # a row without its result
            st.set_result("r1", "b", [1])
            st.save_step("r1", "b", StepInfo(Status.SUCCEEDED, attempts=1))
            st.flush()
            st.finalize_run("r1", Status.SUCCEEDED, 5.0)  # the end in a later batch than the start
            info = st.load_run("r1")
            assert (info.steps["a"].result, info.steps["b"].result) == ("first", [1])
            assert (info.state, info.finished_at) == (Status.SUCCEEDED, 5.0)
            assert st.sql("SELECT step, result_preview FROM steps ORDER BY step").fetchall() == [
                ("a", "'first'"), ("b", "[1]")]

    def test_steps_are_written_whether_new_known_or_never_named(self, tmp_path):
        # a flush inserts the steps of a run created in the same batch, updates the rows
        # already in the file, and inserts the rows of steps no create_run named
        path = tmp_path / "h.duckdb"
        with DuckDBRuntimeStorage(path, flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, ["a", "b"], created_at=0.0)
            st.save_step("r1", "a", StepInfo(Status.RUNNING, attempts=1))
            st.flush()
            st.create_run("r2", "wf", "1", {}, ["a"], created_at=1.0)  # a new run beside a known one
            st.save_step("r2", "a", StepInfo(Status.SUCCEEDED, attempts=1))
            st.set_result("r2", "a", "two")
            st.save_step("r1", "a", StepInfo(Status.SUCCEEDED, attempts=1))
            st.set_result("r1", "a", "one")
            st.save_step("r1", "extra", StepInfo(Status.SKIPPED, skip_reason="not named at create_run"))
            st.flush()
            st.save_step("r1", "a", StepInfo(Status.SUCCEEDED, attempts=2))  # the result stays
        with DuckDBRuntimeStorage(path, flush_interval=3600) as st:
            st.save_step("r1", "b", StepInfo(Status.FAILED, attempts=1, error="ValueError: x"))
            st.save_step("r1", "late", StepInfo(Status.SKIPPED))  # a reopened file: rows of old runs
            rows = st.sql("SELECT run_id, step, state, attempts, result_preview, error_type, skip_reason "
                          "FROM steps ORDER BY run_id, step").fetchall()
        assert rows == [("r1", "a", "SUCCEEDED", 2, "'one'", None, None),
                        ("r1", "b", "FAILED", 1, None, "ValueError", None),
                        ("r1", "extra", "SKIPPED", 0, None, None, "not named at create_run"),
                        ("r1", "late", "SKIPPED", 0, None, None, None),
                        ("r2", "a", "SUCCEEDED", 1, "'two'", None, None)]

    def test_a_long_runs_flush_writes_each_rows_own_error_and_result(self, tmp_path):
        # the flusher builds whole columns; a column of one error or one result among many
        names = [f"s{i:03}" for i in range(300)]
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, names, created_at=0.0)
            st.flush()
            st.set_result("r1", "s299", "early")  # its row comes in a later batch
            st.flush()
            for name in names[:299]:
                st.save_step("r1", name, StepInfo(Status.SUCCEEDED, attempts=1))
            st.save_step("r1", "s007", StepInfo(Status.FAILED, attempts=2, error="ValueError: bad row 7"))
            st.set_result("r1", "s003", {"n": 3})
            st.save_step("r1", "s299", StepInfo(Status.SUCCEEDED, attempts=1))
            rows = st.sql("SELECT step, state, attempts, error_type, error_message, result_preview FROM steps "
                          "ORDER BY step").fetchall()
        expected = {n: (n, "SUCCEEDED", 1, None, None, None) for n in names}
        expected["s003"] = ("s003", "SUCCEEDED", 1, None, None, "{'n': 3}")
        expected["s007"] = ("s007", "FAILED", 2, "ValueError", "bad row 7", None)
        expected["s299"] = ("s299", "SUCCEEDED", 1, None, None, "'early'")
        assert rows == list(expected.values())

    @pytest.mark.parametrize("recorded", [2, 250])  # of 300: a big run just dispatched, a short run done
    def test_a_new_runs_steps_are_written_in_their_order_with_their_latest_records(self, tmp_path, recorded):
        names = [f"s{i:03}" for i in range(300)][::-1]  # not sorted: the order create_run gave
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, names, created_at=0.0)
            assert not st._batch.steps  # no record per step until the flush: a 1M-step run costs no 1M rows here
            for name in names[:recorded]:
                st.save_step("r1", name, StepInfo(Status.SUCCEEDED, attempts=1, queued_at=1.0))
            st.set_result("r1", names[0], {"first": True})
            st.set_result("r1", names[-1], "a result before its record")
            st.save_step("r1", "extra", StepInfo(Status.SKIPPED, skip_reason="not named at create_run"))
            st.flush()
            info = st.load_run("r1")
            rows = st._execute("SELECT step, state, attempts, epoch(queued_at), result_preview FROM steps "
                               "ORDER BY (SELECT rowid FROM fl_steps f WHERE f.step = steps.step)")
        assert list(info.steps) == [*names, "extra"]
        assert [(s.state, s.attempts, s.queued_at) for s in info.steps.values()] == [
            *[(Status.SUCCEEDED, 1, 1.0)] * recorded, *[(Status.PENDING, 0, None)] * (300 - recorded),
            (Status.SKIPPED, 0, None)]
        assert info.steps[names[0]].result == {"first": True}
        assert info.steps[names[-1]].result == "a result before its record"
        assert [r[0] for r in rows] == [*names, "extra"]
        assert rows[0] == (names[0], "SUCCEEDED", 1, 1.0, "{'first': True}")
        assert rows[-2] == (names[-1], "PENDING", 0, None, "'a result before its record'")

    def test_the_flusher_uses_one_duckdb_thread(self):
        with DuckDBRuntimeStorage() as st:  # its statements are small and serial: more threads only cost CPU
            assert st._execute("SELECT current_setting('threads')") == [(1,)]

    def test_a_batch_of_most_steps_is_hashed_and_the_file_scanned_in_row_order(self, monkeypatch):
        # A batch holding > ~40 % of fl_steps (a fan-out's QUEUED rows, a flusher that fell
        # behind) made DuckDB's build_side_probe_side optimizer hash fl_steps and probe the
        # batch: the UPDATE then got its row ids in the batch's (random) order, ~50x slower.
        # The flush turns that optimizer off for its own statements only.
        import json
        import random

        from fuseline_nb.broker.storage import _duckdb_write

        scripts: list[str] = []
        real = _duckdb_write.run_script

        def recording(con, script, **tables):
            scripts.append(script)
            return real(con, script, **tables)

        monkeypatch.setattr(_duckdb_write, "run_script", recording)

        def joins(node):
            if node["name"] == "HASH_JOIN":
                yield node
            for child in node["children"]:
                yield from joins(child)

        def sides(con, batch_steps):  # (probe, build) of the UPDATE's join over this batch
            plan = json.loads(con.execute("EXPLAIN (FORMAT json) " + Q.UPDATE_STEPS).fetchall()[0][1])
            [join] = [j for root in plan for j in joins(root)]
            return tuple(child["name"] for child in join["children"])

        setting = "SELECT current_setting('disabled_optimizers')"
        names = [f"s{i}" for i in range(1000)]
        done = random.Random(7).sample(names, 600)
        with DuckDBRuntimeStorage(flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, names, created_at=0.0)
            st.flush()
            for i, name in enumerate(done):
                st.save_step("r1", name, StepInfo(Status.SUCCEEDED, attempts=1, finished_at=float(i)))
            batch = st._batch.arrow_tables({})["batch_steps"]
            assert sides(st._con, batch) == ("PYTHON_ARROW_SCAN", "SEQ_SCAN")  # DuckDB's own choice
            st._con.execute(Q.PIN_SIDES)
            assert sides(st._con, batch) == ("SEQ_SCAN", "PYTHON_ARROW_SCAN")
            st._con.execute(Q.UNPIN_SIDES)
            st.flush()
            script = scripts[-1]
            assert _BY_ROW_ID in script and _SETS_RESULTS not in script  # a big run: its rows found by row id
            assert script.index(Q.PIN_SIDES) < script.index("UPDATE fl_steps")
            assert st._execute(setting) == [("",)]  # other queries keep the optimizer
            rows = dict(st._execute("SELECT step, finished_at FROM fl_steps"))
            assert rows == {n: (float(done.index(n)) if n in done else None) for n in names}
            # a failed flush resets it too
            st._execute("ALTER TABLE fl_events RENAME TO fl_events_away")
            st.record_event(Event("step_queued", "r1", 1, 1.0, "s1", Status.PENDING))
            with pytest.raises(StorageError, match="fl_events"):
                st.flush()
            assert Q.PIN_SIDES in scripts[-1]
            assert st._execute(setting) == [("",)]
            st._execute("ALTER TABLE fl_events_away RENAME TO fl_events")

    def test_records_without_results_leave_the_stored_results_and_skip_their_columns(self, monkeypatch):
        from fuseline_nb.broker.storage import _duckdb_write

        scripts: list[str] = []
        real = _duckdb_write.run_script
        monkeypatch.setattr(_duckdb_write, "run_script",
                            lambda con, script, **tables: scripts.append(script) or real(con, script, **tables))
        with DuckDBRuntimeStorage(flush_interval=3600) as st:
            st._stopping = True
            st.create_run("r1", "wf", "1", {}, ["a", "b", "c"], created_at=0.0)
            st.flush()
            st.save_step("r1", "a", StepInfo(Status.SUCCEEDED, attempts=1))
            st.set_result("r1", "a", {"a": 1})
            st.set_result("r1", "b", "b's")  # its record comes later
            st.flush()
            assert _SETS_RESULTS in scripts[-1]
            st.save_step("r1", "a", StepInfo(Status.FAILED, attempts=2, error="ValueError: again"))
            st.save_step("r1", "b", StepInfo(Status.SUCCEEDED, attempts=1, worker="w"))
            st.save_step("r1", "c", StepInfo(Status.PENDING, queued_at=3.0))
            st.flush()
            assert "UPDATE fl_steps" in scripts[-1] and _SETS_RESULTS not in scripts[-1]
            rows = st._execute("SELECT step, state, attempts, worker, queued_at, error_type, result_preview, "
                               "result_type FROM fl_steps ORDER BY rowid")
            assert st.load_run("r1").steps["a"].result == {"a": 1}
        assert rows == [("a", "FAILED", 2, None, None, "ValueError", "{'a': 1}", "dict"),
                        ("b", "SUCCEEDED", 1, "w", None, None, "\"b's\"", "str"),
                        ("c", "PENDING", 0, None, 3.0, None, None, None)]

    def test_a_big_runs_records_are_found_by_row_id_and_a_wrong_place_costs_no_wrong_row(self, tmp_path,
                                                                                        monkeypatch):
        from fuseline_nb.broker.storage import _duckdb_write
        from fuseline_nb.broker.storage._duckdb_places import PLACED_STEPS

        scripts: list[str] = []
        real = _duckdb_write.run_script
        monkeypatch.setattr(_duckdb_write, "run_script",
                            lambda con, script, **tables: scripts.append(script) or real(con, script, **tables))
        names = [f"s{i:04}" for i in range(PLACED_STEPS + 200)][::-1]
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
            st._stopping = True
            st.create_run("small", "wf", "1", {}, ["x", "y"], created_at=0.0)  # rows before the big ones
            st.flush()
            st.create_run("r1", "wf", "1", {}, names, created_at=0.0)
            st.create_run("r2", "wf", "1", {}, names, created_at=0.0)
            st.create_run("odd", "wf", "1", {}, names, created_at=0.0)
            st.save_step("odd", "not named", StepInfo(Status.SKIPPED, skip_reason="extra"))
            st.flush()
            places = st._places.runs
            assert sorted(places) == ["r1", "r2"]  # "odd" is not one block of its names: not placed
            assert places["r1"][1] is places["r2"][1]  # one workflow: one positions dict
            assert places["r1"][0] == 2 and places["r2"][0] == 2 + len(names)
            for run_id in ("r1", "r2"):
                for name in names[:300:3]:
                    st.save_step(run_id, name, StepInfo(Status.SUCCEEDED, attempts=1, worker="w", finished_at=1.0))
                    st.set_result(run_id, name, name.upper())
            st.flush()
            assert _BY_ROW_ID in scripts[-1] and _SETS_RESULTS in scripts[-1] and "r1" in st._places.runs
            first, positions = st._places.runs["r2"]
            st._places.runs["r2"] = (first + 1, positions)  # a wrong place
            for name in names[1:300:3]:
                st.save_step("r2", name, StepInfo(Status.FAILED, attempts=2, error="ValueError: no"))
            st.flush()
            assert "r2" not in st._places.runs  # no longer guessed; its rows were updated by their keys
            st.save_step("r2", names[2], StepInfo(Status.SUCCEEDED, attempts=1))
            st.flush()
            assert "UPDATE fl_steps" in scripts[-1] and _BY_ROW_ID not in scripts[-1]
            assert _SETS_RESULTS not in scripts[-1]
            st.finalize_run("r1", Status.SUCCEEDED, 2.0)
            assert "r1" in st._places.runs  # its last rows are still to be written: found by row id
            st.flush()
            assert "r1" not in st._places.runs and st._places.positions == {}
            rows = {(r, n): rest for r, n, *rest in st._execute(
                "SELECT run_id, step, state, attempts, worker, error_type, result_preview FROM fl_steps")}
        for name in names:
            assert rows[("r1", name)] == (["SUCCEEDED", 1, "w", None, repr(name.upper())]
                                          if name in names[:300:3] else ["PENDING", 0, None, None, None])
        assert rows[("r2", names[1])] == ["FAILED", 2, None, "ValueError", None]
        assert rows[("r2", names[2])] == ["SUCCEEDED", 1, None, None, None]
        assert rows[("r2", names[3])] == ["SUCCEEDED", 1, "w", None, repr(names[3].upper())]
        assert rows[("odd", "not named")] == ["SKIPPED", 0, None, None, None]
        assert len(rows) == 2 + 3 * len(names) + 1

    @staticmethod
    def _history(path, *, crash_at=None):
        """Write one scripted history into ``path``; return every table's rows in file order."""
        names = [f"s{i:02}" for i in range(30)][::-1]
        with DuckDBRuntimeStorage(path, flush_interval=3600) as st:
            st._stopping = True  # no flusher thread woken by finalize_run: the test's flushes only
            st.create_run("big", "wf", "1", {"x": 1}, names, created_at=0.0)
            st.create_run("short", "wf", "1", {}, ["a", "b"], created_at=0.5)
            for i, name in enumerate(["a", "b"]):  # a short run done inside its first flush
                st.save_step("short", name, StepInfo(Status.SUCCEEDED, attempts=1, finished_at=1.0 + i))
                st.set_result("short", name, i)
            st.finalize_run("short", Status.SUCCEEDED, 3.0)
            st.flush()
            seq = 0
            for name in names[:25]:  # a fan-out's root queues most of the run at once
                st.save_step("big", name, StepInfo(Status.PENDING, queued_at=4.0))
                seq += 1
                st.record_event(Event("step_queued", "big", seq, 4.0, name, Status.PENDING))
            for i, name in enumerate(names[:9]):  # some finish in the same batch
                st.save_step("big", name, StepInfo(Status.SUCCEEDED, attempts=1, worker="w1",
                                                   queued_at=4.0, finished_at=5.0 + i))
                st.set_result("big", name, {"i": i})
                seq += 1
                st.record_event(Event("step_finished", "big", seq, 5.0 + i, name, Status.SUCCEEDED, "w1", 1,
                                      {"action": "default", "i": i}))
            for name in names[26:]:  # results whose records came in an earlier batch
                st.set_result("big", name, f"late {name}")
            st.save_step("big", "not named", StepInfo(Status.SKIPPED, skip_reason="not named at create_run"))
            st.finalize_run("big", Status.FAILED, 9.0)
            if crash_at is not None:
                return st._batch, crash_at(st)
            st.flush()
            return {table: st._execute(f"SELECT * FROM {table} ORDER BY rowid")
                    for table in ("fl_runs", "fl_steps", "fl_events")}

    def test_a_big_flush_is_written_in_parts_with_the_same_rows(self, tmp_path, monkeypatch):
        # A fan-out's root queues every step at once: the flush holding them is written a
        # part at a time (only one part's Arrow tables at once), with the same rows.
        from fuseline_nb.broker.storage import _duckdb_write

        whole = self._history(tmp_path / "whole.duckdb")
        scripts: list[str] = []
        real = _duckdb_write.run_script

        def recording(con, script, **tables):
            scripts.append(script)
            assert all(t.num_rows <= 7 for t in tables.values() if t is not None)
            return real(con, script, **tables)

        monkeypatch.setattr(_duckdb_write, "CHUNK_ROWS", 7)
        monkeypatch.setattr(_duckdb_write, "run_script", recording)
        parts = self._history(tmp_path / "parts.duckdb")
        assert parts == whole
        assert len(parts["fl_steps"]) == 33 and len(parts["fl_events"]) == 34
        assert sum("BEGIN TRANSACTION" in s for s in scripts) == 2  # one transaction per flush
        assert len(scripts) > 8

    def test_a_part_that_fails_leaves_nothing_of_its_flush_and_keeps_the_batch(self, tmp_path, monkeypatch):
        from fuseline_nb.broker.storage import _duckdb_write

        real = _duckdb_write.run_script
        calls: list[str] = []

        def failing_third(con, script, **tables):  # the disk fills up after two parts
            calls.append(script)
            if len(calls) >= 3:
                raise duckdb.IOException("disk full (test)")
            return real(con, script, **tables)

        def crash(st):
            before = st._execute("SELECT count(*) FROM fl_events"), st._execute(
                "SELECT count(*) FROM fl_steps WHERE queued_at IS NOT NULL")
            calls.clear()
            monkeypatch.setattr(_duckdb_write, "run_script", failing_third)
            with pytest.raises(StorageError, match="disk full"):
                st.flush()
            after = st._execute("SELECT count(*) FROM fl_events"), st._execute(
                "SELECT count(*) FROM fl_steps WHERE queued_at IS NOT NULL")
            monkeypatch.setattr(_duckdb_write, "run_script", real)
            st.flush()  # the batch was kept: all of it is written now
            return before, after, {table: st._execute(f"SELECT * FROM {table} ORDER BY rowid")
                                   for table in ("fl_runs", "fl_steps", "fl_events")}

        whole = self._history(tmp_path / "whole.duckdb")
        monkeypatch.setattr(_duckdb_write, "CHUNK_ROWS", 7)
        _, (before, after, rows) = self._history(tmp_path / "parts.duckdb", crash_at=crash)
        assert len(calls) >= 3  # it failed in a later part, after two parts had run
        assert after == before  # the two parts written before were rolled back with it
        assert rows == whole

    def test_event_details_are_the_json_the_encoder_writes_and_odd_ones_fall_back(self):
        # one C encoder per flush instead of one per detail: the text must not change, and a
        # detail that fails (a cycle) must not leave marks that fail the details after it
        import json
        import math

        from fuseline_nb.broker.storage._duckdb_arrow import ENCODER as _ENCODER
        from fuseline_nb.broker.storage._duckdb_arrow import details_json as _details
        from fuseline_nb.broker.storage._duckdb_rows import to_json

        cycle: dict = {"a": 1}
        cycle["self"] = cycle
        shared = {"action": "default", "error": None, "skip_reason": None}
        plain = [shared, {"error": "ValueError: é ✓\n", "n": math.nan, "big": 10**30}, {"x": [1, 2.5, None]},
                 {"s": {3}, "o": ValueError("bad")}, {1: "int key"}, shared]
        details = [*plain[:3], None, cycle, *plain[3:]]
        events = [Event("step_finished", "r1", i, 1.0, "a", Status.SUCCEEDED, detail=d)
                  for i, d in enumerate(details)]
        texts = _details(events)
        assert texts[3] is None
        assert texts[4] == to_json(cycle) and "self" in texts[4]
        assert [t for i, t in enumerate(texts) if i not in (3, 4)] == [_ENCODER.encode(d) for d in plain]
        assert json.loads(texts[0]) == shared and texts[-1] == texts[0]
        with DuckDBRuntimeStorage(flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
            for e in events:
                st.record_event(e)
            assert [e.detail for e in st.events("r1")][:3] == [json.loads(t) for t in texts[:3]]

    def test_a_failed_write_keeps_the_changes_for_the_next_flush(self):
        with DuckDBRuntimeStorage(flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
            st.flush()
            st._execute("ALTER TABLE fl_events RENAME TO fl_events_away")
            st.record_event(Event("step_queued", "r1", 1, 1.0, "a", Status.PENDING))
            st.save_step("r1", "a", StepInfo(Status.RUNNING, attempts=1))
            with pytest.raises(StorageError, match="fl_events"):
                st.flush()
            st._execute("ALTER TABLE fl_events_away RENAME TO fl_events")
            st.record_event(Event("step_started", "r1", 2, 2.0, "a", Status.RUNNING))
            assert [e.seq for e in st.events("r1")] == [1, 2]
            assert st.load_run("r1").steps["a"].state is Status.RUNNING

    def test_a_run_end_is_written_soon_without_waiting_for_the_interval(self):
        with DuckDBRuntimeStorage(":memory:", flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
            time.sleep(0.1)
            assert st._execute("SELECT count(*) FROM fl_runs") == [(0,)]  # buffered: no wake on dispatch
            st.finalize_run("r1", Status.SUCCEEDED, 1.0)
            deadline = time.monotonic() + 2
            while st._execute("SELECT count(*) FROM fl_runs WHERE state = 'SUCCEEDED'") == [(0,)]:
                assert time.monotonic() < deadline, "the finished run was not written within 2 s"
                time.sleep(0.01)

    def test_a_run_end_is_written_a_gap_after_it_not_while_the_notebook_takes_it_in(self):
        with DuckDBRuntimeStorage(":memory:", flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
            write, written = st._write, []
            st._write = lambda batch: (written.append(time.monotonic()), write(batch))
            ended = time.monotonic()
            st.finalize_run("r1", Status.SUCCEEDED, 1.0)
            deadline = time.monotonic() + 2
            while not written:
                assert time.monotonic() < deadline, "the finished run was not written within 2 s"
                time.sleep(0.005)
            assert written[0] - ended >= 0.045  # the gap (50 ms), not at once

    def test_a_flush_is_due_an_interval_after_the_oldest_buffered_event_not_after_the_last_flush(self):
        with DuckDBRuntimeStorage(":memory:") as first:
            first.flush()  # pyarrow's warm-up (once per process) done, so the next flusher starts at once
        with DuckDBRuntimeStorage(":memory:", flush_interval=0.3) as st:
            write, written = st._write, []
            st._write = lambda batch: (written.append((time.monotonic(), len(batch.events))), write(batch))
            time.sleep(0.25)  # the flusher's last look was at its start: an interval is nearly over
            t0 = time.monotonic()
            st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
            for seq in range(1, 51):  # a live run: an event every 20 ms for a second
                st.record_event(Event("step_queued", "r1", seq, 1.0, "a", Status.PENDING))
                time.sleep(0.02)
            st.flush()
        assert written[0][0] - t0 >= 0.2, written  # not 50 ms in: its first event was only then
        assert len(written) >= 3 and sum(n for _, n in written) == 50, written  # every interval or so

    def test_a_run_end_waits_for_the_regular_flush_while_another_run_goes_on(self):
        with DuckDBRuntimeStorage(":memory:", flush_interval=3600) as st:
            st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
            st.create_run("r2", "wf", "1", {}, ["a"], created_at=0.0)
            st.finalize_run("r1", Status.SUCCEEDED, 1.0)
            time.sleep(0.3)  # six gaps: r2 still goes on, so r1's end waits (for an hour here)
            assert st._execute("SELECT count(*) FROM fl_runs") == [(0,)]
            assert [r.state for r in st.list_runs()] == [Status.SUCCEEDED, Status.RUNNING]  # a read flushes
            st.create_run("r3", "wf", "1", {}, ["a"], created_at=0.0)
            st.finalize_run("r2", Status.FAILED, 2.0)
            st.finalize_run("r3", Status.SUCCEEDED, 2.0)  # the last run ends: written soon, with r2's end
            deadline = time.monotonic() + 2
            while st._execute("SELECT count(*) FROM fl_runs WHERE state <> 'RUNNING'") != [(3,)]:
                assert time.monotonic() < deadline, "the last run's end was not written within 2 s"
                time.sleep(0.01)

    def test_history_stays_readable_when_a_result_class_is_gone(self, tmp_path, monkeypatch, caplog):
        (tmp_path / "gone_module.py").write_text("class Model:\n    def __repr__(self):\n        return 'Model()'\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        import gone_module

        with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
            st.create_run("r1", "wf", "1", {1: "mixed", "keys": gone_module.Model()}, ["a"], created_at=0.0)
            st.set_result("r1", "a", gone_module.Model())
            st.save_step("r1", "a", StepInfo(Status.SUCCEEDED, attempts=1))
        monkeypatch.delitem(sys.modules, "gone_module")
        (tmp_path / "gone_module.py").unlink()
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
            info = st.load_run("r1")  # values stay closed: reading the run needs no class
            assert info.steps["a"].state is Status.SUCCEEDED and info.steps["a"].value.preview == "Model()"
            assert info.input_values["keys"].preview == "Model()" and info.input_values[1].load() == "mixed"
            assert st.sql("SELECT result_preview FROM steps").fetchall() == [("Model()",)]
            assert st.sql("SELECT inputs_json FROM runs").fetchall() == [('{"1": "mixed", "keys": "Model()"}',)]
            with pytest.raises(ValueError, match=r"the result of step 'a' of run r1 \(a Model: Model\(\)\) cannot "
                                                 r"be unpickled in this process: "
                                                 r"ModuleNotFoundError: No module named 'gone_module'"):
                info.steps["a"].result  # noqa: B018 - asking for the object opens the value

    def test_the_queue_gives_each_step_once(self):
        with DuckDBRuntimeStorage() as st:
            st.create_run("r1", "wf", "1", {}, ["a", "b"], created_at=0.0)
            for s in ("a", "b", "a"):
                st.enqueue("r1", s)
            assert [st.fetch_next("r1") for _ in range(3)] == ["a", "b", None]

    def test_workflows_persist(self, tmp_path):
        schema = WorkflowSchema("wf", "2", (StepSchema("a"),), name="demo")
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
            st.register_workflow(schema)
            st.register_workflow(schema)
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
            assert st.list_workflows() == [schema]
            assert st.get_workflow("wf", "2") == schema and st.get_workflow("wf", "1") is None

    def test_a_workflow_row_is_its_json_text_written_once_without_an_arrow_copy(self, tmp_path):
        # the definition's text goes to DuckDB as a statement parameter (an Arrow table of it
        # was one more copy of ~300 MB at 1,000,000 steps), inserted only if the row is new
        schema = WorkflowSchema("wf", "2", tuple(StepSchema(f"s{i}") for i in range(50)), name="demo é")
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
            st.register_workflow(schema)
            assert "batch_workflows" not in st._batch.arrow_tables({})
            st.flush()  # a flush holding only the workflow
            again = Batch()
            again.add_workflow(schema)  # the same id and version once more: kept as it was
            again.runs["r1"] = ("wf", "2", {}, 0.0, ("s0",))
            st._write(again)
            assert st.sql("SELECT workflow_id, version, name, schema_json FROM workflows").fetchall() == [
                ("wf", "2", "demo é", schema.to_json())]
            assert st.sql("SELECT count(*) FROM steps WHERE run_id = 'r1'").fetchall() == [(1,)]
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
            assert st.list_workflows() == [schema]

    def test_a_big_result_is_stored_but_not_previewed(self):
        with DuckDBRuntimeStorage() as st:
            st.create_run("r1", "wf", "1", {}, ["a", "b"], created_at=0.0)
            st.set_result("r1", "a", b"x" * 2_000_000)
            st.set_result("r1", "b", "y" * 1000)
            rows = dict(st.sql("SELECT step, result_preview FROM steps").fetchall())
            assert rows["a"].endswith("bytes: not previewed>")
            assert len(rows["b"]) == 200 and rows["b"].startswith("'yyy")
            assert st.get_result("r1", "a").load() == b"x" * 2_000_000

    def test_an_unpicklable_result_stays_in_memory_with_a_preview(self, caplog):
        lock = threading.Lock()
        with DuckDBRuntimeStorage() as st:
            st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
            st.set_result("r1", "a", lock)  # an object a direct caller stores; the broker stores Values
            st.flush()
            assert "cannot be pickled" in caplog.text
            assert st.get_result("r1", "a") is lock
            assert st.sql("SELECT result_preview FROM steps").fetchall()[0][0].startswith("<unlocked _thread.lock")


class TestViews:
    def test_views_have_exactly_the_documented_columns(self, tmp_path):
        with DuckDBBroker(tmp_path / "h.duckdb") as broker:
            for view, columns in VIEW_COLUMNS.items():
                assert broker.sql(f"SELECT * FROM {view}").columns == columns

    def test_views_answer_the_documented_questions(self, tmp_path):
        wf = _workflow()
        with DuckDBBroker(tmp_path / "h.duckdb") as broker:
            run_id = _run(broker, wf, {"x": 2})
            failed = broker.sql("SELECT step, error_type, error_message FROM steps WHERE state = 'FAILED'")
            assert failed.fetchall() == [("boom", "ValueError", "bad rows: [2, 3]")]
            received = broker.sql("SELECT inputs_json FROM runs WHERE run_id = ?", [run_id]).fetchall()[0]
            assert received == ('{"x": 2}',)
            preview = broker.sql("SELECT result_preview FROM steps WHERE step = 'total'").fetchall()[0]
            assert preview == ("5",)
            kinds = broker.sql('SELECT kind FROM events WHERE run_id = ? ORDER BY seq', [run_id]).fetchall()
            assert kinds[0] == ("run_dispatched",) and kinds[-1] == ("run_finished",)
            durations = broker.sql("SELECT count(*) FROM steps WHERE duration_s >= 0").fetchall()[0]
            assert durations == (3,)
            df = broker.sql("SELECT * FROM runs").df()
            assert list(df["state"]) == ["FAILED"] and df["duration_s"][0] >= 0

    def test_user_sql_errors_are_storage_errors_naming_the_problem(self):
        with DuckDBBroker() as broker, pytest.raises(StorageError, match="no_such_table"):
            broker.sql("SELECT * FROM no_such_table")


class TestMisuse:
    def test_use_after_close_raises(self, tmp_path):
        st = DuckDBRuntimeStorage(tmp_path / "h.duckdb")
        st.close()
        for call in (lambda: st.create_run("r", "wf", "1", {}, [], 0.0), st.list_runs, st.flush,
                     lambda: st.save_step("r", "a", StepInfo()), lambda: st.sql("SELECT 1")):
            with pytest.raises(StorageClosedError, match=r"h\.duckdb.*is closed"):
                call()

    def test_double_close_and_context_manager(self, tmp_path):
        with DuckDBBroker(tmp_path / "h.duckdb") as broker:
            pass
        broker.close()
        broker.storage.close()
        with pytest.raises(StorageClosedError):
            broker.dispatch_workflow(_workflow().to_schema())

    def test_the_file_is_free_again_after_close(self, tmp_path):
        DuckDBBroker(tmp_path / "h.duckdb").close()
        DuckDBBroker(tmp_path / "h.duckdb").close()

    def test_a_second_broker_on_the_same_file_in_this_process_is_refused(self, tmp_path):
        with DuckDBBroker(tmp_path / "h.duckdb"):
            with pytest.raises(StorageLockedError, match=r"h\.duckdb.*already open in this process.*close\(\)"):
                DuckDBBroker(tmp_path / "h.duckdb")

    def test_a_dropped_broker_frees_its_file_and_keeps_its_history(self, tmp_path):
        broker = DuckDBBroker(tmp_path / "h.duckdb", flush_interval=3600)
        run_id = broker.dispatch_workflow(_workflow().to_schema(), {"x": 1})
        broker.cycle = broker  # only the cycle collector can free it, as often in a notebook
        del broker
        with DuckDBBroker(tmp_path / "h.duckdb") as again:  # collected, flushed and closed on demand
            info = again.get_run(run_id)
            assert info.inputs == {"x": 1} and info.steps["load"].state is Status.PENDING
            assert again.sql("SELECT count(*) FROM events WHERE kind = 'step_queued'").fetchall() == [(2,)]

    def test_a_write_after_close_on_a_live_run_raises(self):
        st = DuckDBRuntimeStorage()
        st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
        st.close()
        with pytest.raises(StorageClosedError):
            st.save_step("r1", "a", StepInfo())
        with pytest.raises(StorageClosedError):
            st.record_event(Event("step_queued", "r1", 1, 0.0, "a"))

    def test_unknown_runs_are_refused(self):
        with DuckDBRuntimeStorage() as st:
            with pytest.raises(UnknownRunError, match="'nope'"):
                st.save_step("nope", "a", StepInfo())
            with pytest.raises(UnknownRunError):
                st.events("nope")
            assert st.load_run("nope") is None

    def test_bad_flush_interval(self):
        with pytest.raises(ValueError, match="flush_interval must be > 0"):
            DuckDBRuntimeStorage(flush_interval=0)


class TestBadFile:
    def test_not_a_duckdb_file(self, tmp_path):
        path = tmp_path / "notes.txt"
        path.write_text("these are my notes, not a database\n" * 200)
        with pytest.raises(StorageError, match=r"notes\.txt.*is not a DuckDB database") as err:
            DuckDBBroker(path)
        assert isinstance(err.value.__cause__, duckdb.Error)
        DuckDBBroker(tmp_path / "other.duckdb").close()  # a failed open leaves nothing held

    def test_a_file_from_a_newer_version(self, tmp_path):
        path = tmp_path / "h.duckdb"
        DuckDBRuntimeStorage(path).close()
        con = duckdb.connect(str(path))
        con.execute("UPDATE schema_version SET version = 99")
        con.close()
        with pytest.raises(StorageVersionError, match=rf"version 99.*up to version {CURRENT_VERSION}"):
            DuckDBRuntimeStorage(path)
        DuckDBRuntimeStorage(path.with_name("fresh.duckdb")).close()


#: A version-1 file, written by hand as the first release wrote it.
V1_FILE = [
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES (1)",
    """CREATE TABLE fl_workflows (workflow_id VARCHAR NOT NULL, version VARCHAR NOT NULL, name VARCHAR,
        schema_json VARCHAR NOT NULL, registered_at DOUBLE, PRIMARY KEY (workflow_id, version))""",
    """CREATE TABLE fl_runs (run_id VARCHAR PRIMARY KEY, workflow_id VARCHAR NOT NULL,
        version VARCHAR NOT NULL, state VARCHAR NOT NULL, inputs_json VARCHAR, inputs_pickle BLOB,
        created_at DOUBLE, finished_at DOUBLE)""",
    """CREATE TABLE fl_steps (run_id VARCHAR NOT NULL, step VARCHAR NOT NULL, state VARCHAR NOT NULL,
        skip_reason VARCHAR, action VARCHAR, attempts INTEGER NOT NULL, worker VARCHAR,
        queued_at DOUBLE, started_at DOUBLE, finished_at DOUBLE, error VARCHAR, traceback VARCHAR,
        result_preview VARCHAR, result_pickle BLOB, PRIMARY KEY (run_id, step))""",
    """CREATE TABLE fl_events (run_id VARCHAR NOT NULL, seq INTEGER NOT NULL, "at" DOUBLE NOT NULL,
        step VARCHAR, kind VARCHAR NOT NULL, state VARCHAR, worker VARCHAR, attempt INTEGER,
        detail_json VARCHAR)""",
    """INSERT INTO fl_runs VALUES ('r1', 'wf', '1', 'FAILED', '{"x": 1}', NULL, 100.0, 104.0)""",
    """INSERT INTO fl_steps VALUES
        ('r1', 'load', 'SUCCEEDED', NULL, 'default', 1, 'w1', 100.0, 101.0, 102.5, NULL, NULL, '42',
         '\\x80\\x05K*.'::BLOB),
        ('r1', 'save', 'FAILED', NULL, NULL, 2, 'w1', 102.5, 103.0, 104.0,
         'OSError: disk full: /tmp', 'Traceback ...', NULL, NULL),
        ('r1', 'note', 'FAILED', NULL, NULL, 1, 'w1', 102.5, 103.0, 104.0, 'lease expired', NULL, NULL, NULL)""",
]


class TestMigration:
    def test_a_version_1_file_is_migrated_and_keeps_its_history(self, tmp_path):
        path = tmp_path / "v1.duckdb"
        con = duckdb.connect(str(path))
        for sql in V1_FILE:
            con.execute(sql)
        con.close()
        with DuckDBBroker(path) as broker:
            rows = broker.sql("SELECT step, state, error_type, error_message, duration_s "
                              "FROM steps ORDER BY step").fetchall()
            assert rows == [("load", "SUCCEEDED", None, None, 1.5),
                            ("note", "FAILED", None, "lease expired", 1.0),
                            ("save", "FAILED", "OSError", "disk full: /tmp", 1.0)]
            info = broker.get_run("r1")
            assert info.steps["load"].result == 42 and info.inputs == {"x": 1}
            assert info.steps["save"].error == "OSError: disk full: /tmp"
            assert broker.sql("SELECT version FROM schema_version").fetchall() == [(CURRENT_VERSION,)]
            size = broker.storage._execute("SELECT result_bytes FROM fl_steps WHERE step = 'load'")
            assert size == [(5,)]
        with DuckDBBroker(path) as broker:  # opening a current file migrates nothing
            assert broker.sql("SELECT count(*) FROM steps").fetchall()[0] == (3,)


class TestDefinitions:
    """``fl_definitions`` keeps the latest definition per workflow and those unfinished runs need."""

    @staticmethod
    def _kept(st: DuckDBRuntimeStorage) -> list[tuple[str, str]]:
        return sorted(st._execute("SELECT workflow_id, version FROM fl_definitions"))

    def test_an_older_definition_goes_once_no_unfinished_run_needs_it(self, tmp_path):
        path = tmp_path / "h.duckdb"
        with DuckDBRuntimeStorage(path) as st:
            st.put_definition("a", "1", b"a1")
            st.create_run("r1", "a", "1", {}, ["s"], created_at=0.0)  # buffered, not flushed yet
            st.put_definition("a", "2", b"a2")
            assert self._kept(st) == [("a", "1"), ("a", "2")]  # r1 still needs version 1
            st.put_definition("a", "2", b"a2 edited")  # the same key again: replaced, not added
            assert st.get_definition("a", "2") == b"a2 edited"
            st.finalize_run("r1", Status.SUCCEEDED, 1.0)
            st.put_definition("b", "1", b"b1")  # any later store prunes
            assert self._kept(st) == [("a", "2"), ("b", "1")]
            assert st.get_definition("a", "1") is None

    def test_a_definition_that_cannot_be_stored_leaves_the_one_before(self, tmp_path, monkeypatch):
        # replacing is a DELETE and an INSERT in one transaction (INSERT OR REPLACE held a
        # big BLOB several times over): a failed INSERT undoes the DELETE, and no
        # transaction is left open for the next write
        with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as st:
            st.put_definition("a", "1", b"a1")
            with monkeypatch.context() as m:  # the INSERT fails after the DELETE ran
                m.setattr(Q, "PUT_DEFINITION", "INSERT INTO fl_definitions (workflow_id, version, definition, "
                          "stored_at, definition_file) SELECT CASE WHEN ? IS NULL THEN 'x' END, ?, ?, ?, ?")
                with pytest.raises(StorageError, match="NOT NULL"):
                    st.put_definition("a", "1", b"a1 edited")
            assert st.get_definition("a", "1") == b"a1"
            st.put_definition("a", "1", b"a1 edited")
            assert st.get_definition("a", "1") == b"a1 edited"
            assert self._kept(st) == [("a", "1")]

    def test_reopening_the_file_prunes_what_finished_runs_left(self, tmp_path):
        path = tmp_path / "h.duckdb"
        with DuckDBRuntimeStorage(path) as st:
            st.put_definition("a", "1", b"a1")
            st.create_run("r1", "a", "1", {}, ["s"], created_at=0.0)
            st.create_run("r2", "a", "1", {}, ["s"], created_at=0.0)
            st.put_definition("a", "2", b"a2")
            st.finalize_run("r1", Status.FAILED, 1.0)
        with DuckDBRuntimeStorage(path) as st:  # r2 is unfinished: version 1 stays for its resume
            assert self._kept(st) == [("a", "1"), ("a", "2")]
            st.finalize_run("r2", Status.CANCELLED, 2.0)
        with DuckDBRuntimeStorage(path) as st:
            assert self._kept(st) == [("a", "2")]
            assert st.get_definition("a", "2") == b"a2"
