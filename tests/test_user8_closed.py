"""After ``session.close()`` (the tour's last cell), re-running a cell that shows a run says what to do.

Before: ``run`` displayed again, ``fl.ReplayView(session, run.id)``, ``fl.RunView(session, run.id)`` and
``run.timeline()`` raised ``StorageClosedError: DuckDBRuntimeStorage('….duckdb') is closed`` — an internal
class name and nothing to do. Real worker process, real DuckDB file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import fuseline_nb as fl
from fuseline_nb.errors import StorageClosedError
from fuseline_nb.examples import tour


def test_showing_a_run_of_a_closed_session_names_the_file_and_how_to_read_it(tmp_path: Path) -> None:
    path = tmp_path / "tour.duckdb"
    session = fl.Session(path, workers=1)
    run = session.submit(tour, {"n": 3, "delay": 0})
    run.wait(timeout=60)
    session.close()
    said = (rf"the run history '{re.escape(str(path))}' is closed \(its Session or broker was closed\); the file "
            rf"is kept: read it with a new fl.Session\('{re.escape(str(path))}', workers=0\), or duckdb.connect")
    for show in (run.view, lambda: fl.ReplayView(session, run.id), lambda: fl.RunView(session, run.id)):
        with pytest.raises(StorageClosedError, match=said):
            show()
    with fl.Session(path, workers=0) as again:  # what the message says works
        assert fl.ReplayView(again, run.id).state.run_state == "SUCCEEDED"
