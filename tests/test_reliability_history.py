"""Issue 18, history writers: one poison value never stops the DuckDB history (real files, real workers).

Each test puts a bad value between two good runs A and B and checks that
every run is in the file afterwards, that ``session.sql()`` and ``close()``
do not raise, and that the file reopens with everything in it.
"""

from __future__ import annotations

import logging

import duckdb
import pytest

import fuseline_nb as fl
from fuseline_nb.broker.storage import DuckDBRuntimeStorage
from fuseline_nb.workflow.runinfo import StepInfo
from fuseline_nb.workflow.status import Status


class ReprRaises:
    """An input whose ``__repr__`` raises (previews cannot be made)."""

    def __repr__(self) -> str:
        raise RuntimeError("repr boom")


def echo(x):
    return x


def fail_with_file_name(x):
    name = b"report-\xff.csv".decode("utf-8", "surrogateescape")  # as os.listdir returns it
    raise ValueError(f"bad {name}")


def _good() -> fl.Workflow:
    return fl.Workflow(outputs=[fl.FunctionStep(echo)], workflow_id="good")


def _runs_in_file(path) -> dict[str, str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dict(con.execute("SELECT run_id, state FROM runs").fetchall())
    finally:
        con.close()


def _between_good_runs(path, poison: fl.Workflow, inputs: dict) -> tuple[list[str], str]:
    """Runs A, the poison run and B through a Session; returns ([A, B], poison id)."""
    with fl.Session(path, workers=1) as session:
        a = session.submit(_good(), {"x": 1})
        assert a.wait(timeout=60) == 1
        bad = session.submit(poison, inputs)
        try:
            bad.wait(timeout=60)
        except fl.StepFailedError:
            pass
        b = session.submit(_good(), {"x": 2})
        assert b.wait(timeout=60) == 2
        rows = dict(session.sql("SELECT run_id, state FROM runs").fetchall())
        assert rows[a.id] == "SUCCEEDED" and rows[b.id] == "SUCCEEDED" and bad.id in rows
        steps = session.sql("SELECT count(*) FROM steps WHERE run_id = ?", [bad.id]).fetchall()
        assert steps == [(1,)]
    return [a.id, b.id], bad.id


def test_an_input_whose_repr_raises_does_not_stop_the_history(tmp_path) -> None:
    path = tmp_path / "h.duckdb"
    good, bad = _between_good_runs(path, _good(), {"x": ReprRaises()})
    runs = _runs_in_file(path)
    assert set(runs) == {*good, bad} and runs[bad] == "SUCCEEDED"
    con = duckdb.connect(str(path), read_only=True)
    inputs, preview = con.execute("SELECT r.inputs_json, s.result_preview FROM runs r JOIN steps s USING "
                                  "(run_id) WHERE run_id = ?", [bad]).fetchone()
    con.close()
    assert "repr failed with RuntimeError" in inputs
    assert preview == "<ReprRaises object: no preview, repr failed with RuntimeError>"


def test_a_surrogate_in_a_step_error_does_not_stop_the_history(tmp_path) -> None:
    path = tmp_path / "h.duckdb"
    poison = fl.Workflow(outputs=[fl.FunctionStep(fail_with_file_name)], workflow_id="files")
    _good_ids, bad = _between_good_runs(path, poison, {"x": 1})
    assert _runs_in_file(path)[bad] == "FAILED"
    con = duckdb.connect(str(path), read_only=True)
    (message,) = con.execute("SELECT error_message FROM steps WHERE run_id = ?", [bad]).fetchone()
    con.close()
    assert message == "bad report-\\udcff.csv"


def test_a_surrogate_in_a_step_name_and_workflow_id_does_not_stop_the_history(tmp_path) -> None:
    path = tmp_path / "h.duckdb"
    odd = b"w-\xfe".decode("utf-8", "surrogateescape")
    poison = fl.Workflow(outputs=[fl.FunctionStep(echo, name=f"step-{odd}")], workflow_id=f"wf-{odd}")
    _good_ids, bad = _between_good_runs(path, poison, {"x": 3})
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT workflow_id FROM runs WHERE run_id = ?", [bad]).fetchone() == ("wf-w-\\udcfe",)
    assert con.execute("SELECT step, state FROM steps WHERE run_id = ?", [bad]).fetchall() == [
        ("step-w-\\udcfe", "SUCCEEDED")]
    con.close()


@pytest.mark.parametrize("others", [0, 400])  # a flush of a few rows is checked in Python, of many by Arrow
@pytest.mark.parametrize(("started", "finished"), [(-1e18, float("nan")), (2.0, 1e300), (2.0, float("nan"))])
def test_a_time_out_of_range_is_stored_as_null_and_the_views_stay_readable(tmp_path, caplog, others, started,
                                                                          finished) -> None:
    path = tmp_path / "h.duckdb"
    names = [f"s{i:03}" for i in range(others)]
    with DuckDBRuntimeStorage(path, flush_interval=3600) as st:
        st.create_run("r1", "wf", "1", {}, ["a", *names], created_at=1.0)
        st.flush()
        for name in names:
            st.save_step("r1", name, StepInfo(Status.SUCCEEDED, attempts=1, started_at=2.0, finished_at=3.0))
        st.save_step("r1", "a", StepInfo(Status.FAILED, attempts=1, started_at=started, finished_at=finished))
        with caplog.at_level(logging.WARNING):
            rows = st.sql("SELECT step, epoch(started_at), epoch(finished_at) FROM steps ORDER BY step").fetchall()
        assert rows == [("a", 2.0 if started == 2.0 else None, None), *((name, 2.0, 3.0) for name in names)]
        assert "times outside 0..3.25037e+10 seconds since 1970 stored as NULL" in caplog.text


@pytest.mark.parametrize("n", [3, 400])
def test_times_in_range_are_kept_without_a_warning(tmp_path, caplog, n) -> None:
    with DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=3600) as st:
        names = [f"s{i:03}" for i in range(n)]
        st.create_run("r1", "wf", "1", {}, names, created_at=1.0)
        for i, name in enumerate(names):  # NULL start times beside set ones
            st.save_step("r1", name, StepInfo(Status.SUCCEEDED, attempts=1, started_at=None if i % 2 else 5.0 + i,
                                              finished_at=1.7e9 + i))
        with caplog.at_level(logging.WARNING):
            rows = st.sql("SELECT epoch(started_at), epoch(finished_at) FROM steps ORDER BY step").fetchall()
        assert rows == [(None if i % 2 else 5.0 + i, 1.7e9 + i) for i in range(n)]
        assert "times outside" not in caplog.text


def test_a_row_that_cannot_be_written_is_written_in_a_safe_form_and_blocks_nothing(tmp_path, caplog) -> None:
    path = tmp_path / "h.duckdb"
    with DuckDBRuntimeStorage(path) as st:
        for run_id in ("A", "poison", "B"):  # one batch: the poison row is in the middle
            st.create_run(run_id, "wf", "1", {"x": 1}, ["a"], created_at=1.0)
        st.save_step("A", "a", StepInfo(Status.SUCCEEDED, attempts=1))
        st.set_result("A", "a", [1, 2])
        st.save_step("poison", "a", StepInfo(Status.FAILED, attempts=2**40))  # no INTEGER holds it
        st.save_step("B", "a", StepInfo(Status.SUCCEEDED, attempts=1))
        with caplog.at_level(logging.ERROR):
            st.flush()  # does not raise, and is not retried
        assert "the rows of run(s) ['poison'] could not be written as they are" in caplog.text
        assert st.sql("SELECT run_id, attempts FROM steps ORDER BY run_id").fetchall() == [
            ("A", 1), ("B", 1), ("poison", 2**31 - 1)]
        assert st.get_result("A", "a").load() == [1, 2]  # the good runs keep their pickled values
        st.create_run("C", "wf", "1", {}, ["a"], created_at=2.0)  # later writes go through
        st.flush()
        assert st.sql("SELECT count(*) FROM runs").fetchall() == [(4,)]
        assert st._batch.empty


@pytest.mark.parametrize("poison", ["surrogate", "repr"])
def test_sql_and_close_never_raise_a_raw_error(tmp_path, poison) -> None:
    path = tmp_path / "h.duckdb"
    st = DuckDBRuntimeStorage(path)
    bad = "x\udcff" if poison == "surrogate" else ReprRaises()
    st.create_run("r1", "wf", "1", {"bad": bad}, ["a"], created_at=1.0)
    st.save_step("r1", "a", StepInfo(Status.FAILED, attempts=1, error="ValueError: x\udcff"))
    st.set_result("r1", "a", bad)
    assert st.sql("SELECT count(*) FROM steps").fetchall() == [(1,)]
    st.close()
    assert _runs_in_file(path) == {"r1": "RUNNING"}
