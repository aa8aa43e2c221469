"""The DuckDB history's write buffer, held per run on the broker's thread and keyed per row at the flush.

The broker's thread adds a run's step rows and results under the run (no key made per row); the flusher
moves them into the rows it writes. What the history holds must not change: the latest change of a step
wins whatever call made it and whether or not a failed write kept older rows; a big result is read back as
the object still held; the bound on the buffer counts rows, not calls.
"""

from __future__ import annotations

import duckdb
import pytest

from fuseline_nb.broker.storage import DuckDBRuntimeStorage, _duckdb_write
from fuseline_nb.errors import StorageError
from fuseline_nb.workflow.events import Event
from fuseline_nb.workflow.runinfo import StepInfo
from fuseline_nb.workflow.status import Status
from fuseline_nb.workflow.value import Value


def _steps(st: DuckDBRuntimeStorage) -> dict[str, tuple]:
    return {step: rest for step, *rest in st.sql(
        "SELECT step, state, attempts, worker, result_preview FROM steps WHERE run_id = 'r' ORDER BY step").fetchall()}


def test_the_latest_change_of_a_step_wins_whichever_call_made_it(tmp_path) -> None:
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
        st.create_run("r", "wf", "1", {}, ["a", "b", "c", "d"], created_at=0.0)
        st.create_run("q", "wf", "1", {}, ["a"], created_at=0.0)
        running = StepInfo(Status.RUNNING, attempts=1, worker="w1")
        st.save_steps("r", [("a", running), ("b", running), ("c", running)])
        st.save_step("r", "a", StepInfo(Status.SUCCEEDED, attempts=1, worker="w1"))  # one by one after a batch
        st.save_steps("r", [("b", StepInfo(Status.FAILED, attempts=1, worker="w2"))])
        st.save_step("r", "d", StepInfo(Status.RUNNING, attempts=2, worker="w2"))
        st.save_steps("r", [("d", StepInfo(Status.SKIPPED, attempts=2, worker="w2"))])  # a batch after one
        st.set_result("r", "a", Value.of("one"))
        st.set_results("r", [("a", Value.of("two")), ("c", Value.of(3))])
        st.save_steps("q", [("a", StepInfo(Status.SUCCEEDED, attempts=1, worker="w9"))])  # same step, other run
        assert _steps(st) == {
            "a": ["SUCCEEDED", 1, "w1", "'two'"], "b": ["FAILED", 1, "w2", None], "c": ["RUNNING", 1, "w1", "3"],
            "d": ["SKIPPED", 2, "w2", None]}
        assert st.sql("SELECT state, worker FROM steps WHERE run_id = 'q'").fetchall() == [("SUCCEEDED", "w9")]


def test_rows_kept_by_a_failed_write_lose_to_newer_changes(tmp_path, monkeypatch) -> None:
    real = _duckdb_write.run_script

    def full_disk(con, script, **tables):
        raise duckdb.IOException("disk full (test)")

    with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
        st.create_run("r", "wf", "1", {}, ["a", "b"], created_at=0.0)
        st.flush()
        st.save_steps("r", [("a", StepInfo(Status.RUNNING, attempts=1, worker="w1")),
                            ("b", StepInfo(Status.RUNNING, attempts=1, worker="w1"))])
        st.set_results("r", [("b", Value.of("old"))])
        monkeypatch.setattr(_duckdb_write, "run_script", full_disk)
        with pytest.raises(StorageError, match="disk full"):
            st.flush()  # the rows are kept, to be written with the next batch
        monkeypatch.setattr(_duckdb_write, "run_script", real)
        st.save_steps("r", [("a", StepInfo(Status.SUCCEEDED, attempts=1, worker="w1"))])  # newer than the kept
        st.set_results("r", [("b", Value.of("new"))])
        assert _steps(st) == {"a": ["SUCCEEDED", 1, "w1", None], "b": ["RUNNING", 1, "w1", "'new'"]}


def test_a_big_result_reads_back_as_the_value_still_held(tmp_path) -> None:
    big, small = Value.of(b"x" * 1_500_000), Value.of(b"y")
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
        st.create_run("r", "wf", "1", {}, ["a", "b", "c"], created_at=0.0)
        st.set_results("r", [("a", big), ("b", small)])
        st.set_result("r", "c", Value.of(b"z" * 1_500_000))  # nothing holds this one after the call
        assert st.get_result("r", "a") is big  # not read from its file again (a copy of 1.5 MB)
        assert st.get_result("r", "b") is not small and st.get_result("r", "b").load() == b"y"
        assert st.get_result("r", "c").load() == b"z" * 1_500_000  # read from its file beside the history
        assert st.sql("SELECT count(*) FROM fl_steps WHERE result_file IS NOT NULL").fetchall() == [(2,)]


def test_the_bound_on_the_buffer_counts_rows_not_calls(tmp_path) -> None:
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
        st._pressure.bound = 60
        names = [f"s{i}" for i in range(50)]
        st.create_run("r", "wf", "1", {}, names, created_at=0.0)
        for attempt in range(1, 6):  # 250 saves, results and events of 50 rows each time
            st.save_steps("r", [(n, StepInfo(Status.RUNNING, attempts=attempt)) for n in names[:40]])
            st.set_results("r", [(n, Value.of(attempt)) for n in names[:10]])
        st.record_events([Event("step_started", "r", 1, 1.0, "s0", Status.RUNNING)])
        assert st._pressure.waits == 0  # 40 + 10 + 1 rows buffered: under the bound
        st.save_steps("r", [(n, StepInfo(Status.RUNNING, attempts=1)) for n in names[40:]])  # 10 rows more
        assert st._pressure.waits == 1  # 61 rows: the broker waited for the flusher to take them
        assert st._buffered() == 0
        assert st.sql("SELECT count(*) FROM steps WHERE state = 'RUNNING'").fetchall() == [(50,)]


def test_a_running_steps_record_is_written_as_it_was_saved(tmp_path) -> None:
    # the broker changes a running step's record at its outcome and saves it again: what the history holds
    # until then is the record as it was saved, not as it is being changed
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
        st.create_run("r", "wf", "1", {}, ["a", "b"], created_at=0.0)
        running = StepInfo(Status.RUNNING, attempts=1, worker="w1", started_at=5.0)
        st.save_steps("r", [("a", running), ("b", running)])
        running.state, running.worker, running.finished_at = Status.SUCCEEDED, "w2", 6.0  # not saved yet
        assert _steps(st) == {"a": ["RUNNING", 1, "w1", None], "b": ["RUNNING", 1, "w1", None]}
        assert st.sql("SELECT count(*) FROM steps WHERE finished_at IS NULL AND started_at IS NOT NULL").fetchall() == [(2,)]


def test_only_a_big_run_still_going_is_placed_after_its_first_flush(tmp_path, monkeypatch) -> None:
    # placing a run asks where its rows are (a scan of fl_steps); a run that ended before its first flush
    # (a whole fan-out written at once) has no later record to place, so it costs no scan
    from fuseline_nb.broker.storage._duckdb_places import PLACED_STEPS
    from fuseline_nb.broker.storage._duckdb_sql import SELECT_PLACES

    names = [f"s{i}" for i in range(PLACED_STEPS)]
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
        asked: list[list[str]] = []
        real = st._execute

        def execute(sql, params=None):
            if sql.startswith(SELECT_PLACES.split("(")[0]):
                asked.append(list(params))
            return real(sql, params)

        monkeypatch.setattr(st, "_execute", execute)
        st.create_run("ended", "wf", "1", {}, names, created_at=0.0)
        st.save_steps("ended", [(n, StepInfo(Status.SUCCEEDED, attempts=1)) for n in names])
        st.finalize_run("ended", Status.SUCCEEDED, 1.0)
        st.create_run("going", "wf", "1", {}, names, created_at=0.0)
        st.flush()
        assert asked == [["going"]]
        assert list(st._places.runs) == ["going"]
        st.save_steps("going", [("s7", StepInfo(Status.RUNNING, attempts=1, worker="w1"))])
        assert st.sql("SELECT state, worker FROM steps WHERE run_id = 'going' AND step = 's7'").fetchall() == [
            ("RUNNING", "w1")]
        assert st.sql("SELECT count(*) FROM steps WHERE run_id = 'ended' AND state = 'SUCCEEDED'").fetchall() == [
            (PLACED_STEPS,)]


def test_the_flusher_thread_gives_the_gil_away_while_it_builds_a_big_flush(tmp_path, monkeypatch) -> None:
    # building a flush's Arrow tables holds the GIL for milliseconds: the flusher thread pauses every
    # GIVE_WAY_EVERY of that work so the broker's thread gets it; a read flushing on its own thread does not
    import threading

    from fuseline_nb.broker.storage import _duckdb_arrow

    paused: list[str] = []
    real = _duckdb_arrow._pause
    monkeypatch.setattr(_duckdb_arrow, "_pause", lambda: (paused.append(threading.current_thread().name), real()))
    names = [f"s{i}" for i in range(3000)]

    def buffer(st: DuckDBRuntimeStorage, run_id: str) -> None:
        st.create_run(run_id, "wf", "1", {}, names, created_at=0.0)
        st.save_steps(run_id, [(n, StepInfo(Status.SUCCEEDED, attempts=1, worker="w1", finished_at=float(i)))
                               for i, n in enumerate(names)])
        st.record_events([Event("step_finished", run_id, i + 1, float(i), n, Status.SUCCEEDED, "w1", 1,
                                {"action": "default", "n": i}) for i, n in enumerate(names)])

    with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
        buffer(st, "read")
        st.flush()  # on this thread: no pause
        assert paused == []
        buffer(st, "flusher")
        st._hurry()  # the flusher writes it now
        for _ in range(400):  # until the flusher took the buffer (a read now waits for its write to end)
            if st._batch.empty:
                break
            threading.Event().wait(0.025)
        assert st.sql("SELECT count(*) FROM events WHERE run_id = 'flusher'").fetchall() == [(3000,)]
        assert paused and set(paused) == {st._thread.name}
        # a flush big enough to be written in parts: the flusher is behind, it does not pause
        monkeypatch.setattr(_duckdb_write, "CHUNK_ROWS", 500)
        paused.clear()
        buffer(st, "behind")
        st._hurry()
        for _ in range(400):
            if st._batch.empty:
                break
            threading.Event().wait(0.025)
        assert st.sql("SELECT count(*) FROM events WHERE run_id = 'behind'").fetchall() == [(3000,)]
        assert paused == []
