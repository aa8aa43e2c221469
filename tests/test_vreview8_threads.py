"""Pipelines of one factory submitted from several threads at once keep each its own code (real workers).

``make(1)`` … ``make(4)`` share one structure, so one derived workflow id. A session's submit decides
the version (``"1"``, or one of its own while a run of ``"1"`` goes), registers the definition, ships it
and dispatches the run. Submitted from a thread pool (four at once), each thread found ``"1"`` idle
before any of them had dispatched: all registered under ``"1"``, the last one registered replaced the
others, and every run ran that one's code — 18 wrong results of 24, without a word (not even the
"still going" warning: the runs were dispatched after the replacements). Now one submit at a time goes
from the version check to the dispatch, so each run is its own version's, and the same holds for
``wf.run(inputs, cache=session)`` racing a submit.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import fuseline_nb as fl

pytestmark = pytest.mark.slow


def make(k: int) -> fl.Workflow:
    """The same step names and edges for every ``k``; ``load`` waits for its gate file."""

    def load(x: int, gate: str) -> int:
        while not os.path.exists(gate):
            time.sleep(0.005)
        return x * k

    def after(v: int = fl.Depends(load)) -> tuple[int, int]:
        return (v, k)

    return fl.Workflow(outputs=[fl.FunctionStep(after)])


def submit_at_once(session: fl.Session, ks: list[int], gate: Path) -> list[tuple[int, Any]]:
    """``session.submit(make(k), ...)`` for each ``k``, each from its own thread, released together."""
    barrier = threading.Barrier(len(ks))

    def one(k: int) -> tuple[int, Any]:
        wf = make(k)  # built in the thread, as a cell's function would
        barrier.wait()
        return k, session.submit(wf, {"x": 10, "gate": str(gate)})

    with ThreadPoolExecutor(len(ks)) as pool:
        return list(pool.map(one, ks))


def test_factory_pipelines_submitted_from_threads_at_once_each_run_its_own_code(tmp_path: Path) -> None:
    with fl.Session(tmp_path / "h.duckdb", workers=2) as session, warnings.catch_warnings():
        warnings.simplefilter("error")  # no "still going" warning either: nothing is overtaken
        runs = []
        for rnd in range(3):
            gate = tmp_path / f"go{rnd}"
            runs += submit_at_once(session, [rnd * 4 + i for i in range(1, 5)], gate)
            gate.touch()
        got = {k: run.wait(timeout=120) for k, run in runs}
        assert got == {k: (10 * k, k) for k, _ in runs}
        # four definitions live at once in each round: four versions, each run under its own
        versions = dict(session.sql("SELECT run_id, version FROM runs").fetchall())
        for rnd in range(3):
            assert len({versions[run.id] for k, run in runs[rnd * 4:rnd * 4 + 4]}) == 4, versions


def test_in_process_run_racing_a_submit_keeps_its_code(tmp_path: Path) -> None:
    # wf.run(inputs, cache=session) settles its version and gives the pool its definition, as submit
    # does: a submit from another thread between the two must not replace it
    with fl.Session(tmp_path / "h.duckdb", workers=2) as session:
        gate = tmp_path / "go"
        barrier = threading.Barrier(2)
        results: dict[str, Any] = {}

        def in_process() -> None:
            wf = make(7)
            barrier.wait()
            results["in-process"] = wf.run({"x": 10, "gate": str(gate)}, cache=session)

        thread = threading.Thread(target=in_process)
        thread.start()
        wf = make(3)
        barrier.wait()
        run = session.submit(wf, {"x": 10, "gate": str(gate)})
        gate.touch()
        assert run.wait(timeout=120) == (30, 3)
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert results["in-process"] == (70, 7)
