"""Audit (session 6): odd values through real worker processes, the DuckDB history and SQL."""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
import pytest

import fuseline_nb as fl
from fuseline_nb.workflow.datafingerprint import data_fingerprint
from fuseline_nb.workflow.value import Value

cloudpickle.register_pickle_by_value(sys.modules[__name__])

HUGE = 10 ** 5000  # over Python's 4,300-digit limit of int -> str; pickles and compares fine


def _huge() -> int:
    return HUGE


def _halve(x: int = fl.Depends(_huge)) -> int:
    return x // 2


def _echo(big: int) -> int:
    return big + 1


def test_an_int_over_the_digit_limit_is_a_value_with_a_fingerprint_and_a_preview() -> None:
    # Before: ValueError 'Exceeds the limit (4300 digits) for integer string conversion' from the fingerprint
    v = Value.of(HUGE)
    assert v.load() == HUGE and v.fingerprint == data_fingerprint(HUGE) != data_fingerprint(HUGE + 1)
    assert data_fingerprint(7) == Value.of(7).fingerprint  # ordinary ints keep their fingerprints
    assert "int" in v.preview and "5001 digits" in v.preview
    assert v.json is None


def test_a_global_int_over_the_digit_limit_does_not_break_the_build() -> None:
    wf = fl.Workflow(outputs=[fl.FunctionStep(_halve, name="halve")])
    assert set(wf.fingerprints()) == {"_huge", "halve"}  # before: ValueError from repr
    assert wf.run({}) == HUGE // 2


@pytest.mark.slow
def test_an_int_over_the_digit_limit_travels_through_workers_into_the_history(tmp_path: Path) -> None:
    # Before: the step FAILED with 'PicklingError: the result of step '_huge' (a int) cannot be pickled',
    # although an int pickles: the fingerprint's repr raised.
    wf = fl.Workflow(outputs=[fl.FunctionStep(_halve, name="halve"), fl.FunctionStep(_echo, name="echo")],
                     workflow_id="audit6-huge")
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        run = session.submit(wf, {"big": HUGE})
        assert run.wait(timeout=60) == [HUGE // 2, HUGE + 1], {n: s.error for n, s in run.info().steps.items()}
        rows = dict(session.sql("select step, result_preview from steps where run_id = ?", [run.id]).fetchall())
        assert "5001 digits" in rows["_huge"], rows
        assert session.broker.get_run(run.id).steps["echo"].result == HUGE + 1
