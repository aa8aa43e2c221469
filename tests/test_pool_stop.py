"""Stopping a pool: workers leave at once and cleanly, and what the kernel says about one it kills is true."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import fuseline_nb as fl


def leave_a_mark(path: str) -> int:
    import atexit

    atexit.register(lambda: Path(path).write_text("bye"))  # a step's exit handler: still run at exit
    return os.getpid()


def test_a_stopped_worker_runs_its_exit_handlers_and_exits_with_status_0(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    with fl.Session(None, workers=1) as session:
        step = fl.FunctionStep(leave_a_mark, name="mark")
        pid = session.submit(fl.Workflow(outputs=[step], workflow_id="mark"), {"path": str(mark)}).wait(timeout=60)
        processes = [c.process for c in session.pool._sup.children()]
        assert [p.pid for p in processes] == [pid]
    assert [p.exitcode for p in processes] == [0]
    assert mark.read_text() == "bye"


class _Torn:
    """Writes ``path`` when freed: the interpreter's teardown of the heap frees it; a quick exit does not."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __del__(self) -> None:
        Path(self.path).write_text("torn down")


def keep_until_exit(path: str) -> int:
    import sys

    sys.modules["__main__"].__dict__["_kept"] = _Torn(path)  # lives as long as the process
    return os.getpid()


def test_a_stopped_worker_leaves_without_freeing_its_heap_object_by_object(tmp_path: Path) -> None:
    # After a 1M-step run a worker's teardown took ~20 s: the kernel killed it as "still busy at shutdown"
    torn = tmp_path / "torn"
    with fl.Session(None, workers=1) as session:
        step = fl.FunctionStep(keep_until_exit, name="keep")
        session.submit(fl.Workflow(outputs=[step], workflow_id="keep"), {"path": str(torn)}).wait(timeout=60)
        processes = [c.process for c in session.pool._sup.children()]
    assert [p.exitcode for p in processes] == [0]
    assert not torn.exists()


def hold(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_a_worker_killed_at_close_is_named_with_the_step_it_was_running(caplog) -> None:
    with fl.Session(None, workers=1) as session:
        started = threading.Event()
        session.subscribe(lambda e: started.set() if e.kind == "step_started" else None)
        session.submit(fl.Workflow(outputs=[fl.FunctionStep(hold, name="slow")], workflow_id="slow"),
                       {"seconds": 60.0})
        assert started.wait(60)
        pid = session.pool.pids()[0]
        with caplog.at_level(logging.WARNING, logger="fuseline_nb.worker.supervisor"):
            t0 = time.monotonic()
            session.close(timeout=0.5)
        assert time.monotonic() - t0 < 10
    said = [r.getMessage() for r in caplog.records if "killed" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith(f"worker w1 (pid {pid}) still running step 'slow' of run ")
    assert said[0].endswith("0.5 s after it was asked to stop: killed (the step goes back to the queue)")
