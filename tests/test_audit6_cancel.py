"""Audit (session 6): cancelling a run while its steps are out in workers' batches (real workers, DuckDB)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cloudpickle
import pytest

import fuseline_nb as fl
from fuseline_nb.workflow.events import Event

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slow


def _tick(i: int = 0) -> int:
    time.sleep(0.002)
    return 1


def _fan(n: int, tag: str) -> fl.Workflow:
    steps = [fl.FunctionStep(_tick, name=f"t{i}") for i in range(n)]
    end = fl.FunctionStep(lambda: "end", name="end")
    for s in steps:
        s >> end
    return fl.Workflow(outputs=[end], workflow_id=tag)


def test_a_run_cancelled_while_batches_are_out_ends_once_and_the_history_agrees(tmp_path: Path) -> None:
    n = 3000
    with fl.Session(tmp_path / "h.duckdb", workers=2) as session:
        seen: list[Event] = []
        session.subscribe(seen.append)
        run = session.submit(_fan(n, "audit6-cancel"))
        deadline = time.monotonic() + 60
        while sum(e.kind == "step_finished" and e.run_id == run.id for e in seen) < 300:
            assert time.monotonic() < deadline, "300 steps did not end in 60 s"
            time.sleep(0.002)
        assert run.cancel("enough") is True
        assert run.wait(timeout=30) is None
        info = run.info()
        assert info.state is fl.Status.CANCELLED
        counts = info.counts()
        done, cancelled = counts[fl.Status.SUCCEEDED], counts[fl.Status.CANCELLED]
        assert done >= 300 and done + cancelled == n + 1, counts
        mine = [e for e in seen if e.run_id == run.id]
        ends = [i for i, e in enumerate(mine) if e.kind == "run_finished"]
        assert len(ends) == 1 and ends[0] == len(mine) - 1  # nothing after run_finished
        finished = [e.step for e in mine if e.kind == "step_finished" and not (e.detail or {}).get("lost")]
        assert len(finished) == len(set(finished)) == n + 1  # every step ended once
        rows = dict(session.sql("select state, count(*) from steps where run_id = ? group by state",
                                [run.id]).fetchall())
        assert rows == {"SUCCEEDED": done, "CANCELLED": cancelled}, rows
        assert session.sql("select state from runs where run_id = ?", [run.id]).fetchall() == [("CANCELLED",)]
        # the workers go on with the next run (their batches of the cancelled run are dropped)
        assert session.submit(_fan(200, "audit6-after-cancel")).wait(timeout=60) == "end"
