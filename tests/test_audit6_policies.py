"""Audit (session 6): policies set on a step class reach the broker (the schema), as they reach wf.run."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import cloudpickle
import pytest

import fuseline_nb as fl
from fuseline_nb.workflow.policies import RetryPolicy, StepTimeoutPolicy

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Flaky(fl.Step):
    """Fails its first two attempts (counted in a file), then returns the attempt number."""

    policies = [RetryPolicy(3)]

    def run_step(self, marker: str) -> int:
        n = int(Path(marker).read_text()) if os.path.exists(marker) else 0
        Path(marker).write_text(str(n + 1))
        if n < 2:
            raise ValueError(f"attempt {n + 1} fails")
        return n + 1


class Timed(fl.Step):
    policies = [StepTimeoutPolicy(2.5)]

    def run_step(self) -> int:
        return 1


def test_class_level_policies_are_in_the_schema() -> None:
    # Before (since 530f0dc): the schema read only the instance's own policies: () for both
    wf = fl.Workflow(outputs=[Flaky(), Timed()])
    specs = {s.name: s.policies for s in wf.to_schema().steps}
    assert specs["Flaky"] == ({"name": "retry", "config": {"max_retries": 3, "wait": 0}},), specs
    assert specs["Timed"] == ({"name": "timeout", "config": {"seconds": 2.5}},), specs


def test_an_instance_s_own_policies_still_win_over_its_class_s() -> None:
    wf = fl.Workflow(outputs=[Flaky(policies=[RetryPolicy(5)])])
    assert wf.to_schema().steps[0].policies == ({"name": "retry", "config": {"max_retries": 5, "wait": 0}},)


@pytest.mark.slow
def test_a_class_level_retry_policy_retries_on_the_workers_as_in_process(tmp_path: Path) -> None:
    # Before: wf.run retried (3), the workers' run FAILED after one attempt without a word
    wf = fl.Workflow(outputs=[Flaky()], workflow_id="audit6-class-policy")
    assert wf.run({"marker": str(tmp_path / "local")}) == 3
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        run = session.submit(wf, {"marker": str(tmp_path / "workers")})
        assert run.wait(timeout=60) == 3, run.info().steps["Flaky"].error
        assert run.info().steps["Flaky"].attempts == 3
        # a rebuild (the cell run again) is the same definition: still three attempts
        again = session.submit(fl.Workflow(outputs=[Flaky()], workflow_id="audit6-class-policy"),
                               {"marker": str(tmp_path / "again")})
        assert again.wait(timeout=60) == 3


class Hang(fl.Step):
    policies = [StepTimeoutPolicy(1.0)]

    def run_step(self) -> int:
        import time

        time.sleep(30)
        return 1


def _quick(i: int = 0) -> int:
    return 1


@pytest.mark.slow
def test_a_class_level_step_timeout_stops_the_step_on_the_workers(tmp_path: Path) -> None:
    # Before: no timeout in the schema, so the hung step (behind 30 quick ones in the worker's batch) ran 30 s
    steps = [fl.FunctionStep(_quick, name=f"q{i}") for i in range(30)]
    wf = fl.Workflow(outputs=[*steps, Hang()], workflow_id="audit6-class-timeout")
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        run = session.submit(wf)
        run.wait(timeout=20)
        hang = run.info().steps["Hang"]
        assert hang.state is fl.Status.FAILED
        assert re.match(r"TimeoutError: step 'Hang' exceeded its timeout of 1 s", hang.error or ""), hang.error
