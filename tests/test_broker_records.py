"""The live run's step records: compact arrays, a StepInfo only while a step is in hand.

Every field of a ``StepInfo`` survives the trip into the arrays and back; a
broker holds a ``StepInfo`` only for the steps its workers are running; the
storage and ``get_run`` see the same records as before.
"""

from __future__ import annotations

import time

from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.broker import DuckDBBroker, MemoryBroker, StepReport
from fuseline_nb.broker.records import StepRecords
from fuseline_nb.workflow.runinfo import StepInfo
from fuseline_nb.workflow.status import Status
from fuseline_nb.workflow.value import Value


def _fan(n: int) -> Workflow:
    root, sink = FunctionStep(lambda: 0, name="root"), FunctionStep(lambda: 0, name="sink")
    for i in range(n):
        m = FunctionStep(lambda: 0, name=f"m{i}")
        root >> m
        m >> sink
    return Workflow(outputs=[sink], workflow_id=f"fan{n}")


def test_every_field_survives_the_arrays_and_reading_gives_independent_copies() -> None:
    recs = StepRecords(["a", "b", "c"], {"a": 0, "b": 1, "c": 2})
    full = StepInfo(Status.FAILED, attempts=3, worker="w2", result=Value.of([1, 2]), error="ValueError: no",
                    traceback="Traceback ...", action="left", skip_reason="condition", queued_at=1.5,
                    started_at=2.5, finished_at=3.5, cached=True, cached_from="r0", recovered=True)
    info = recs.open("a")
    info.__dict__.update(full.__dict__)
    recs.open("b").queued_at = 7.0
    recs.close()
    assert recs.opened == {} and list(recs) == ["a", "b"] and "c" not in recs and len(recs) == 2
    assert recs["a"] == full and recs["a"] is not recs["a"]
    assert recs["a"].value == Value.of([1, 2])  # held closed, as the broker keeps it
    assert recs["b"] == StepInfo(queued_at=7.0)
    again = recs.open("a")  # cleared rare fields leave the sparse dict
    again.error = again.traceback = again.skip_reason = again.cached_from = None
    again.cached = again.recovered = False
    recs.close()
    assert recs.rare == {} and recs["a"].error is None and recs["a"].action == "left"


def test_a_running_step_stays_open_until_its_outcome() -> None:
    recs = StepRecords(["a"], {"a": 0})
    recs.open("a").state = Status.RUNNING
    recs.close()
    assert list(recs.opened) == ["a"] and recs.state_of("a") is Status.RUNNING
    recs.open("a").state = Status.SUCCEEDED
    recs.close()
    assert recs.opened == {} and recs.state_of("a") is Status.SUCCEEDED and recs["a"].state is Status.SUCCEEDED


def _half_run(broker: MemoryBroker | DuckDBBroker, n: int) -> tuple[str, str, list[str]]:
    schema = _fan(n).to_schema()
    wid = broker.register_worker([schema], "w1")
    run_id = broker.dispatch_workflow(schema)
    (root,) = broker.get_steps(wid, 1)
    broker.report_step(wid, StepReport(root.workflow_id, run_id, "root", Status.SUCCEEDED, 0, attempt=1))
    got = broker.get_steps(wid, n // 2)
    now = time.time()
    done = got[: n // 4]
    out = broker.report_steps(wid, [StepReport(a.workflow_id, run_id, a.step_name, Status.SUCCEEDED, 1, attempt=1,
                                               started_at=now, finished_at=now) for a in done])
    assert out == [None] * len(done)
    return wid, run_id, [a.step_name for a in got[n // 4:]]


def test_the_broker_holds_a_step_info_only_for_running_steps(tmp_path: object) -> None:
    broker = MemoryBroker()
    n = 400
    _, run_id, running = _half_run(broker, n)
    run = broker._state.runs[run_id]
    assert sorted(run.infos.opened) == sorted(running)  # 100 in hand; the other 302 steps are arrays
    info = broker.get_run(run_id)
    states = [info.steps[f"m{i}"].state for i in range(n)]
    assert states.count(Status.SUCCEEDED) == n // 4 and states.count(Status.RUNNING) == n // 4
    assert states.count(Status.PENDING) == n // 2 and info.steps["sink"].queued_at is None
    assert all(info.steps[f"m{i}"].queued_at is not None for i in range(n))
    assert info.steps["m0"].result == 1 and info.steps["m0"].worker == "w1" and info.steps["m0"].attempts == 1


def test_the_history_file_gets_the_same_step_rows_as_the_live_records(tmp_path) -> None:  # type: ignore[no-untyped-def]
    broker = DuckDBBroker(tmp_path / "h.duckdb")
    try:
        _, run_id, _ = _half_run(broker, 40)
        live = broker.get_run(run_id).steps
        broker.storage.flush()
        rows = {r[0]: r[1:] for r in broker.storage.sql(
            "SELECT step, state, attempts, worker, queued_at IS NOT NULL FROM steps WHERE run_id = ?",
            [run_id]).fetchall()}
        assert rows == {name: (s.state.value, s.attempts, s.worker, s.queued_at is not None)
                        for name, s in live.items()}
        assert len(rows) == 42 and rows["m0"] == ("SUCCEEDED", 1, "w1", True)
        assert rows["sink"] == ("PENDING", 0, None, False) and rows["m39"] == ("PENDING", 0, None, True)
    finally:
        broker.close()
