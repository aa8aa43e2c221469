"""Waiting on a run asks about the run, not every step: nothing per step while it runs (large runs stay linear)."""

from __future__ import annotations

import threading
import time
from typing import Any

import fuseline_nb as fl


def nap(secs: float) -> float:
    time.sleep(secs)
    return secs


def test_wait_and_done_do_not_copy_every_step_record_while_the_run_runs(tmp_path: Any) -> None:
    with fl.Session(str(tmp_path / "h.duckdb"), workers=1) as session:
        calls: list[str] = []
        real = session.broker.get_run

        def counting(run_id: str) -> Any:
            calls.append(run_id)
            return real(run_id)

        session.broker.get_run = counting  # type: ignore[method-assign]
        wf = fl.Workflow(outputs=[fl.FunctionStep(nap)])
        run = session.submit(wf, {"secs": 1.5})
        polls = 0
        while not run.done():  # as the CLI polls: ~10 times a second
            polls += 1
            time.sleep(0.05)
        assert polls >= 5, polls  # the run was still going for a while: the polls happened
        run.wait()
        # the session's own final record (one get_run when the run ended) serves wait(), done() and info()
        assert len(calls) <= 1, f"{len(calls)} RunInfo copies while waiting"
        assert run.info().state is fl.Status.SUCCEEDED and run.info().steps["nap"].state is fl.Status.SUCCEEDED
        waiter = threading.Thread(target=run.wait)
        waiter.start()
        waiter.join(5)
        assert not waiter.is_alive()
