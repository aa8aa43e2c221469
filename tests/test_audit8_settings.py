"""Audit (session 8): a step's settings changed on the step object after its workflow was submitted.

A notebook user builds ``wf`` once, submits it, then gives a step a ``RetryPolicy`` or a
``StepTimeoutPolicy`` (``s.policies.append(...)``) or turns its cache off (``s.cache = False``, a step with
side effects) and submits the *same* ``wf`` again. Before, the re-submit only looked at the code
fingerprints, so the workflow kept the schema it made first: the workers kept their copy without the
policy (the step was not retried, not timed out) and the broker kept serving the cached result of a step
whose cache was now off — each without a word, while ``wf.run`` in the notebook did what the step says.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import fuseline_nb as fl
from fuseline_nb.workflow.policies import RetryPolicy, StepTimeoutPolicy


def flaky(marks: str) -> int:
    """Fails on its 1st, 3rd, ... call (counted in the file ``marks``), succeeds on the others."""
    n = int(Path(marks).read_text()) if os.path.exists(marks) else 0
    Path(marks).write_text(str(n + 1))
    if n % 2 == 0:
        raise RuntimeError(f"flaky call {n}")
    return n


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def effect(marks: str) -> int:
    """A step with a side effect: counts its calls in the file ``marks``."""
    n = int(Path(marks).read_text()) if os.path.exists(marks) else 0
    Path(marks).write_text(str(n + 1))
    return 7


def test_a_setting_changed_on_a_step_object_makes_a_new_schema() -> None:
    s = fl.FunctionStep(flaky, name="flaky")
    wf = fl.Workflow(outputs=[s], workflow_id="audit8-settings")
    first = wf.to_schema()
    assert wf.refresh() is False and wf.to_schema() is first  # nothing changed: the same schema
    s.policies.append(RetryPolicy(3))
    assert wf.refresh() is True
    assert wf.to_schema().steps[0].policies == ({"name": "retry", "config": {"max_retries": 3, "wait": 0}},)
    s.policies[0].max_retries = 5  # changed in place
    assert wf.refresh() is True and wf.to_schema().steps[0].policies[0]["config"]["max_retries"] == 5
    s.cache = False
    assert wf.refresh() is True and wf.to_schema().steps[0].cache is False
    assert wf.refresh() is False


@pytest.mark.slow
def test_a_retry_added_to_a_step_after_a_submit_retries_it_on_the_workers(tmp_path: Path) -> None:
    s = fl.FunctionStep(flaky, name="flaky")
    wf = fl.Workflow(outputs=[s], workflow_id="audit8-retry-later")
    marks = str(tmp_path / "marks")
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        run = session.submit(wf, {"marks": marks})
        assert run.wait(timeout=60) is None and run.info().state is fl.Status.FAILED
        os.remove(marks)
        s.policies.append(RetryPolicy(3))
        assert wf.run({"marks": marks}) == 1  # in the notebook: retried
        os.remove(marks)
        run = session.submit(wf, {"marks": marks})
        assert run.wait(timeout=60) == 1  # on the worker too (before: FAILED after one attempt)
        assert run.info().steps["flaky"].attempts == 2
        assert session.sql("SELECT state, attempts FROM steps WHERE run_id = ?", [run.id]).fetchall() == [
            ("SUCCEEDED", 2)]


@pytest.mark.slow
def test_a_timeout_added_to_a_step_after_a_submit_stops_it_on_the_workers(tmp_path: Path) -> None:
    s = fl.FunctionStep(slow, name="slow")
    wf = fl.Workflow(outputs=[s], workflow_id="audit8-timeout-later")
    with fl.Session(None, workers=1) as session:
        assert session.submit(wf, {"seconds": 0.01}).wait(timeout=60) == 0.01
        s.policies.append(StepTimeoutPolicy(0.5))
        t0 = time.monotonic()
        run = session.submit(wf, {"seconds": 20.0})
        assert run.wait(timeout=60) is None  # before: slept its 20 s and SUCCEEDED
        assert time.monotonic() - t0 < 15
        step = run.info().steps["slow"]
        assert step.state is fl.Status.FAILED and "timeout of 0.5 s" in str(step.error)


@pytest.mark.slow
def test_a_cache_turned_off_on_a_step_after_a_submit_runs_it_again(tmp_path: Path) -> None:
    s = fl.FunctionStep(effect, name="effect")
    wf = fl.Workflow(outputs=[s], workflow_id="audit8-cache-later")
    marks = tmp_path / "marks"
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        assert session.submit(wf, {"marks": str(marks)}).wait(timeout=60) == 7
        assert session.submit(wf, {"marks": str(marks)}).wait(timeout=60) == 7
        assert marks.read_text() == "1"  # the second run was served from the cache
        s.cache = False  # its side effect must happen on every run from now on
        run = session.submit(wf, {"marks": str(marks)})
        assert run.wait(timeout=60) == 7
        assert marks.read_text() == "2"  # before: still "1", the cached result served
        assert run.info().steps["effect"].cached is False


@pytest.mark.slow
def test_a_timeout_added_to_a_step_after_a_submit_stops_it_on_dask() -> None:
    distributed = pytest.importorskip("distributed")
    s = fl.FunctionStep(slow, name="slow")
    wf = fl.Workflow(outputs=[s], workflow_id="audit8-timeout-later-dask")
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        with fl.Session(dask=client) as session:
            assert session.submit(wf, {"seconds": 0.01}).wait(timeout=60) == 0.01
            s.policies.append(StepTimeoutPolicy(0.5))
            run = session.submit(wf, {"seconds": 3.0})
            assert run.wait(timeout=60) is None  # before: the cluster kept the copy without it (SUCCEEDED)
            step = run.info().steps["slow"]
            assert step.state is fl.Status.FAILED and "timeout of 0.5 s" in str(step.error)
