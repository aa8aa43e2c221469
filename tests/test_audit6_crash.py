"""Audit (session 6): a history reopened after its kernel stopped mid-run, with real DuckDB files and processes."""

from __future__ import annotations

from pathlib import Path

import pytest

import fuseline_nb as fl
from fuseline_nb.broker import DuckDBBroker
from fuseline_nb.broker.base import StepReport


def _one() -> int:
    return 1


def _two(x: int = fl.Depends(_one)) -> int:
    return 2


def _attempts(events: list) -> dict[tuple[str, int], list[str]]:
    """``{(step, attempt): [kinds]}`` of the started/finished events."""
    out: dict[tuple[str, int], list[str]] = {}
    for e in events:
        if e.kind in ("step_started", "step_finished") and e.attempt:
            out.setdefault((e.step, e.attempt), []).append(e.kind)
    return out


def test_an_attempt_running_when_the_history_was_closed_ends_in_the_events_when_it_resumes(tmp_path: Path) -> None:
    # DESIGN §3: each attempt ends with exactly one step_finished. Before: the attempt that was running when
    # the kernel stopped had a step_started and nothing else; the step was queued again silently.
    wf = fl.Workflow(outputs=[fl.FunctionStep(_two, name="two")], workflow_id="audit6-resume")
    path = tmp_path / "h.duckdb"
    broker = DuckDBBroker(path)
    worker = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema(), {})
    held = broker.get_step(worker)
    assert (held.step_name, held.attempt) == ("_one", 1)
    broker.close()  # the kernel restarted while the step ran
    broker = DuckDBBroker(path)
    try:
        worker = broker.register_worker([wf.to_schema()])
        for _ in range(2):
            a = broker.get_step(worker)
            broker.report_step(worker, StepReport("audit6-resume", run_id, a.step_name, fl.Status.SUCCEEDED,
                                                  result=a.attempt, attempt=a.attempt))
        assert broker.get_run(run_id).state is fl.Status.SUCCEEDED
        events = broker.events(run_id)
        per_attempt = _attempts(events)
        assert per_attempt == {("_one", 1): ["step_started", "step_finished"],
                               ("_one", 2): ["step_started", "step_finished"],
                               ("two", 1): ["step_started", "step_finished"]}, per_attempt
        lost = [e for e in events if e.kind == "step_finished" and e.step == "_one" and e.attempt == 1][0]
        assert lost.state is fl.Status.FAILED and lost.detail["lost"] is True
        assert "reopened" in lost.detail["error"]
        again = [e for e in events if e.kind == "step_queued" and e.step == "_one"]
        assert [e.detail for e in again] == [None, {"reason": "resumed"}]
        rows = broker.sql("select kind, attempt from events where run_id = ? and step = '_one' order by seq",
                          [run_id]).fetchall()
        assert rows == [("step_queued", 0), ("step_started", 1), ("step_finished", 1), ("step_queued", 0),
                        ("step_started", 2), ("step_finished", 2)]
    finally:
        broker.close()


def test_a_big_value_half_written_when_the_kernel_died_is_removed_when_the_history_is_opened(tmp_path: Path) -> None:
    # A process killed while writing a big result leaves '.<name>.<pid>.tmp' in <history>.values/ (seen
    # after SIGKILLing a kernel mid-run: a 1.6 MB leftover); no row names it and nothing removed it, so
    # every crash could leave up to a result's size behind for good.
    path = tmp_path / "h.duckdb"
    DuckDBBroker(path).close()
    folder = tmp_path / "h.duckdb.values"
    folder.mkdir()
    leftover = folder / ".0123abcd.pickle.4242.tmp"
    leftover.write_bytes(b"x" * 1000)
    kept = folder / "0123abcd.pickle"
    kept.write_bytes(b"y")
    DuckDBBroker(path).close()
    assert sorted(p.name for p in folder.iterdir()) == ["0123abcd.pickle"]


def test_a_run_handle_of_a_replaced_session_says_where_the_run_went_instead_of_running_forever(tmp_path: Path) -> None:
    # The cell creating the session is run again while a run goes on: the run resumes in the new session.
    # Before: the old handle's info() answered RUNNING for ever from the closed broker's memory (the run had
    # ended in the new session), and wait() said only 'the session closed before run ... ended'.
    import warnings

    from fuseline_nb.errors import StorageClosedError

    path = tmp_path / "h.duckdb"
    wf = fl.Workflow(outputs=[fl.FunctionStep(_two, name="two")], workflow_id="audit6-replaced")
    old = fl.Session(path, workers=0)  # no workers: the run stays unfinished
    run = old.submit(wf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = fl.Session(path, workers=0)
    try:
        with pytest.raises(StorageClosedError, match=r"run '.+' had not ended.*resumes"):
            run.info()
        with pytest.raises(StorageClosedError, match=r"closed before run '.+' ended.*resumes"):
            run.wait(timeout=5)
        assert new.broker.get_run(run.id).state is fl.Status.RUNNING  # it is the new session's now
    finally:
        new.close()
