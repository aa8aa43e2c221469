"""Session and Run: DuckDB history, SQL, display, misuse, a pool that cannot load a workflow."""

from __future__ import annotations

import sys
import types

import pytest

import fuseline_nb as fl
from fuseline_nb.errors import StepFailedError, StorageClosedError, StorageError
from fuseline_nb.examples import build_tour


def test_a_session_with_duckdb_history_answers_sql_and_reopens(tmp_path) -> None:
    path = tmp_path / "runs.duckdb"
    with fl.Session(path, workers=2) as session:
        run = session.submit(build_tour(), {"n": 10, "delay": 0})
        report = run.wait(timeout=60)
        assert report["total"] == 45
        rows = session.sql("SELECT step, state, attempts FROM steps WHERE run_id = ? ORDER BY step",
                           [run.id]).fetchall()
        assert ("Report", "SUCCEEDED", 1) in rows and ("Reject", "SKIPPED", 0) in rows
        assert repr(session) == f"<Session history={str(path)!r} workers=2 open>"
    assert session.closed
    with fl.Session(path, workers=0) as again:
        assert [r.run_id for r in again.runs()] == [run.id]
        assert again.sql("SELECT state FROM runs").fetchall() == [("SUCCEEDED",)]


def test_sql_on_a_memory_session_says_what_to_do() -> None:
    with fl.Session(workers=0) as session:
        with pytest.raises(StorageError, match=r"in memory .* fl.Session\('runs.duckdb'"):
            session.sql("SELECT 1")


def test_a_run_without_workers_waits_and_times_out() -> None:
    with fl.Session(workers=0) as session:
        run = session.submit(fl.Workflow(outputs=[fl.FunctionStep(lambda: 1, name="one")]))
        assert run.state is fl.Status.RUNNING and not run.done()
        with pytest.raises(TimeoutError, match=r"has not ended after 0.2 s \(1 pending\)"):
            run.wait(timeout=0.2)
        assert repr(run).startswith(f"<Run {run.id[:8]} of ") and "RUNNING (1 pending)" in repr(run)


def test_misuse_is_refused() -> None:
    session = fl.Session(workers=0)
    with pytest.raises(TypeError, match=r"Session\.submit takes a Workflow"):
        session.submit("wf")  # type: ignore[arg-type]
    session.close()
    session.close()  # idempotent
    with pytest.raises(StorageClosedError, match="this Session is closed"):
        session.submit(fl.Workflow(outputs=[fl.FunctionStep(lambda: 1, name="one")]))
    with pytest.raises(ValueError, match="workers must be >= 0"):
        fl.Session(workers=-1)


def test_a_run_displays_as_the_live_view() -> None:
    from fuseline_nb.views.widgets import RunView

    with fl.Session(workers=0) as session:
        run = session.submit(fl.Workflow(outputs=[fl.FunctionStep(lambda: 1, name="one")]))
        view = run.view()
        assert isinstance(view, RunView)
        assert callable(run._ipython_display_)


@pytest.mark.slow
def test_a_workflow_the_workers_cannot_load_fails_its_run_clearly_and_the_session_goes_on() -> None:
    # A class from a module that exists only in this process is pickled by
    # reference; the worker cannot import it.
    ghost = types.ModuleType("ghost_module_for_test")
    exec("import fuseline_nb as fl\nclass Ghost(fl.Step):\n    def run_step(self):\n        return 1\n",
         ghost.__dict__)
    sys.modules["ghost_module_for_test"] = ghost
    try:
        with fl.Session(workers=1) as session:
            run = session.submit(fl.Workflow(outputs=[ghost.Ghost()], workflow_id="ghost"))
            with pytest.raises(StepFailedError, match="WorkerError: workflow 'ghost' version '1' cannot be loaded "
                               r"in a worker process \(ModuleNotFoundError: .*ghost_module_for_test"):
                run.wait(timeout=60, raise_on_failure=True)
            assert session.pool.error is None  # the ghost is dropped: the next workflow runs on the same pool
            assert session.submit(build_tour(), {"n": 4, "delay": 0}).wait(timeout=60)["total"] == 6
    finally:
        del sys.modules["ghost_module_for_test"]


@pytest.mark.slow
def test_a_session_dropped_without_close_ends_its_workers() -> None:
    import gc
    import time

    import psutil

    session = fl.Session(workers=1)
    session.submit(fl.Workflow(outputs=[fl.FunctionStep(lambda: 1, name="one")])).wait(timeout=60)
    pids = session.pool.pids()
    del session  # as when a cell `session = fl.Session(...)` runs again
    gc.collect()
    end = time.monotonic() + 10
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids) \
            and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
