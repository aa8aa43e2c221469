"""One name per worker (w1, w2...) in RunInfo, events, SQL and replay."""

from __future__ import annotations

import pytest

import fuseline_nb as fl
from fuseline_nb.broker import MemoryBroker


def test_broker_names_unnamed_workers_w1_w2_and_keeps_given_names() -> None:
    broker = MemoryBroker()
    a = broker.register_worker([])
    b = broker.register_worker([], name="laptop")
    c = broker.register_worker([])
    names = {w.worker_id: w.name for w in broker.list_workers()}
    assert [names[a], names[b], names[c]] == ["w1", "laptop", "w2"]
    broker.unregister_worker(a)
    assert broker.list_workers()[-1].name == "w2"
    d = broker.register_worker([])
    assert {w.name for w in broker.list_workers() if w.worker_id == d} == {"w1"}  # free again


@pytest.mark.slow
def test_steps_worker_in_sql_and_events_is_the_pool_name(tmp_path) -> None:
    steps = [fl.FunctionStep(lambda i=i: i, name=f"s{i}") for i in range(6)]
    wf = fl.Workflow(outputs=steps, workflow_id="names")
    with fl.Session(tmp_path / "h.duckdb", workers=2) as session:
        run = session.submit(wf)
        run.wait(timeout=60)
        in_sql = {r[0] for r in session.sql("select worker from steps where run_id = ?", [run.id]).fetchall()}
        in_events = {e.worker for e in session.broker.events(run.id) if e.kind == "step_started"}
        in_info = {s.worker for s in run.info().steps.values()}
    assert in_sql <= {"w1", "w2"} and in_sql
    assert in_events == in_sql == in_info
