"""Audit (session 7): ``session.map`` with one bad mapping among its inputs.

Before: ``session.map(wf, [{"x": 1}, {"x": 2}, {}])`` raised the third mapping's ``MissingInputError`` after
the first two runs had started: they went on without a handle, and nothing said they existed.
"""

from __future__ import annotations

import threading

import pytest

import fuseline_nb as fl
from fuseline_nb.errors import MissingInputError, PicklingError


def ident(x):
    return x


@pytest.mark.slow
def test_a_sweep_with_a_bad_mapping_starts_no_run() -> None:
    wf = fl.Workflow(outputs=[fl.FunctionStep(ident)], workflow_id="audit7-map")
    with fl.Session(None, workers=1) as session:
        with pytest.raises(MissingInputError, match="step 'ident' needs input 'x'") as missing:
            session.map(wf, [{"x": 1}, {"x": 2}, {}])
        assert missing.value.__notes__ == ["inputs[2] of session.map: refused before any run started"]
        with pytest.raises(TypeError, match="run inputs must be a dict of input names to values, not int 5"):
            session.map(wf, ({"x": i} if i < 2 else 5 for i in range(3)))
        assert session.runs() == []
        assert session.map(wf, [{"x": 1}, {"x": 2}]).wait(timeout=60) == [1, 2]


@pytest.mark.slow
def test_a_sweep_refused_after_runs_started_names_them() -> None:
    wf = fl.Workflow(outputs=[fl.FunctionStep(ident)], workflow_id="audit7-map-pickle")
    with fl.Session(None, workers=1) as session:
        with pytest.raises(PicklingError, match="input 'x' \\(a lock\\) cannot be sent") as refused:
            session.map(wf, [{"x": 1}, {"x": threading.Lock()}])
        (started,) = session.runs()
        assert refused.value.__notes__ == [
            f"inputs[1] of session.map was refused after 1 run(s) had started; they go on: {started.run_id} "
            "(run.cancel() stops one)"]
