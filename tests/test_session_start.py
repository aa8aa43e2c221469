"""Opening a history file does not wait for the flusher's warm-up (pyarrow importing pandas, ~1 s)."""

from __future__ import annotations

import threading

import fuseline_nb as fl
from fuseline_nb.broker import DuckDBBroker, StepReport
from fuseline_nb.broker.storage import _duckdb_life


def _slow_warm_up(monkeypatch) -> threading.Event:
    """The flusher's warm-up held until the returned event is set (as a slow pandas import would)."""
    release = threading.Event()
    real = _duckdb_life._warm_up

    def warm_up() -> None:
        release.wait(30)
        real()

    monkeypatch.setattr(_duckdb_life, "_warm_up", warm_up)
    monkeypatch.setattr(_duckdb_life, "_WARMED", threading.Event())  # this process warms up again
    return release


def _one() -> fl.Workflow:
    return fl.Workflow(outputs=[fl.FunctionStep(lambda: 1, name="one")], workflow_id="w")


def test_opening_a_history_file_with_no_unfinished_run_does_not_wait_for_the_warm_up(tmp_path, monkeypatch):
    path = str(tmp_path / "h.duckdb")
    broker = DuckDBBroker(path)
    wid = broker.register_worker([_one().to_schema()])
    done = broker.dispatch_workflow(_one().to_schema())
    a = broker.get_step(wid)
    broker.report_step(wid, StepReport(a.workflow_id, a.instance_id, a.step_name, fl.Status.SUCCEEDED, 1,
                                       attempt=a.attempt))
    broker.close()

    release = _slow_warm_up(monkeypatch)
    opened: list[DuckDBBroker] = []
    opener = threading.Thread(target=lambda: opened.append(DuckDBBroker(path)))
    try:
        opener.start()
        opener.join(20)
        assert opened, "opening the history file waited for the flusher's warm-up"
        assert opened[0].unfinished_runs() == []
    finally:
        release.set()
        opener.join(20)
    assert opened[0].get_run(done).state is fl.Status.SUCCEEDED  # the file's history, read after the warm-up
    opened[0].close()


def test_the_unfinished_runs_read_at_open_are_not_kept_past_a_write(tmp_path):
    path = str(tmp_path / "h.duckdb")
    broker = DuckDBBroker(path)
    left = broker.dispatch_workflow(_one().to_schema())  # never run: unfinished when the file is closed
    broker.close()
    broker = DuckDBBroker(path)
    assert [run_id for run_id, *_ in broker.unfinished_runs()] == [left]  # resumed from the file
    storage = broker.storage
    assert storage.unfinished_runs() == [left]
    second = broker.dispatch_workflow(_one().to_schema())
    assert sorted(storage.unfinished_runs()) == sorted([left, second])
    storage.flush()
    assert sorted(storage.unfinished_runs()) == sorted([left, second])
    broker.close()
    reopened = DuckDBBroker(path)
    assert sorted(reopened.storage.unfinished_runs()) == sorted([left, second])
    reopened.close()
