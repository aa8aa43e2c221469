"""What a big run keeps in the kernel: one positions dict per plan, the C heap trimmed after big flushes.

Memory at scale is measured by ``benchmarks/bench_scale.py``; these tests pin
the mechanisms (a shared object, a call made), with a real broker on a real
DuckDB file.
"""

from __future__ import annotations

import pickle

from fuseline_nb import FunctionStep, Status, Workflow
from fuseline_nb.broker import DuckDBBroker, StepReport
from fuseline_nb.broker.storage import _trim
from fuseline_nb.broker.storage._duckdb_places import PLACED_STEPS
from fuseline_nb.workflow.plan import Plan, StepOrder


def _noop() -> None:
    return None


def _nap() -> None:
    import time

    time.sleep(0.03)


def _fan_out(n: int, step: object = _noop) -> Workflow:
    head, tail = FunctionStep(_noop, name="head"), FunctionStep(_noop, name="tail")
    for i in range(n):
        head >> FunctionStep(step, name=f"m{i}") >> tail  # type: ignore[arg-type]
    return Workflow(outputs=[tail], workflow_id="fan")


def _finish_root(broker: DuckDBBroker, schema: object) -> str:
    wid = broker.register_worker([schema])  # type: ignore[list-item]
    run_id = broker.dispatch_workflow(schema)  # type: ignore[arg-type]
    a = broker.get_step(wid)
    assert a is not None and a.step_name == "head"
    broker.report_step(wid, StepReport(a.workflow_id, a.instance_id, a.step_name, Status.SUCCEEDED, None,
                                       attempt=a.attempt))
    return run_id


def test_a_big_runs_row_places_share_the_brokers_positions(tmp_path):
    schema = _fan_out(PLACED_STEPS + 10).to_schema()
    with DuckDBBroker(tmp_path / "h.duckdb", flush_interval=3600) as broker:
        run_id = _finish_root(broker, schema)
        broker.flush()  # the run's rows written: the storage now places them
        compiled = broker._state.runs[run_id].compiled
        first, positions = broker.storage._places.runs[run_id]
        assert positions is compiled.index is compiled.plan.order.positions  # one dict, not two
        assert positions["m5"] == compiled.plan.order.index("m5")
        # and the rows found by those places are the right ones
        [(step,)] = broker.storage._execute("SELECT step FROM fl_steps WHERE rowid = ?", [first + positions["m5"]])
        assert step == "m5"


def test_a_plans_order_is_a_list_with_its_positions_and_pickles_plain():
    schema = _fan_out(3).to_schema()
    order = Plan.from_schema(schema).order
    assert isinstance(order, StepOrder) and list(order) == [s.name for s in schema.steps]
    assert order.positions == {n: i for i, n in enumerate(order)}
    again = pickle.loads(pickle.dumps(order))
    assert type(again) is list and again == order  # no positions dict in the bytes


def test_a_big_flush_gives_the_c_heaps_free_memory_back(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr("fuseline_nb.broker.storage.duckdb.give_back", lambda: calls.append(1) or True)
    monkeypatch.setattr(_trim, "TRIM_ROWS", 500)
    with DuckDBBroker(tmp_path / "small.duckdb", flush_interval=3600) as broker:
        _finish_root(broker, _fan_out(20).to_schema())
        broker.flush()
        assert calls == []  # 22 PENDING rows, 20 queued: not worth a trim
    with DuckDBBroker(tmp_path / "big.duckdb", flush_interval=3600) as broker:
        _finish_root(broker, _fan_out(600).to_schema())
        broker.flush()
        assert calls == [1]  # the definition, 602 PENDING rows, 600 queued rows and events
        broker.flush()  # nothing buffered: nothing to give back
        assert calls == [1]


def test_giving_memory_back_is_harmless_where_it_runs():
    assert _trim.give_back() in (True, False)
    assert _trim.give_back() in (True, False)  # looked up once, called again


def test_a_runs_queue_members_are_a_byte_per_step_and_still_queue_a_step_once(tmp_path):
    from fuseline_nb.broker.storage._duckdb_queued import Queued

    schema = _fan_out(50).to_schema()
    with DuckDBBroker(tmp_path / "h.duckdb", flush_interval=3600) as broker:
        run_id = _finish_root(broker, schema)
        st = broker.storage
        queue, members = st._queues[run_id]
        assert type(members) is Queued and len(members) == 50 and list(queue)[:2] == ["m0", "m1"]
        st.enqueue_steps(run_id, ["m0", "m1"])  # queued already: nothing added
        st.enqueue(run_id, "m2")
        assert len(queue) == 50 and len(members) == 50
        first = list(queue)[:3]
        taken = st.fetch_steps(run_id, 3)
        assert taken == first and "m0" not in members and "m2" in members and len(members) == 47
        st.enqueue(run_id, "m0")  # queued again (a retry): at the end, once
        st.enqueue_steps(run_id, ["m1", "m1", "m0", "m2"])
        assert list(queue)[-2:] == ["m0", "m1"] and len(members) == 49
        st.enqueue(run_id, "not-in-the-plan")  # a name the plan lacks still queues (a set beside the bytes)
        assert "not-in-the-plan" in members and st.fetch_steps(run_id, 100)[-1] == "not-in-the-plan"
        assert len(members) == 0 and st.fetch_next(run_id) is None


def _wait_for(cond, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_the_shipped_bytes_are_let_go_once_both_workers_have_them_and_read_back_for_a_new_one(tmp_path):
    import os
    import signal

    import fuseline_nb as fl

    wf = _fan_out(60, _nap)  # steps of 30 ms: both processes get some
    with fl.Session(tmp_path / "h.duckdb", workers=2) as session:
        pool = session.pool
        session.submit(wf).wait(raise_on_failure=True)
        key = (wf.workflow_id, wf.version)
        assert session.broker.stored_definition(*key) is not None and pool._in_history[key]  # the history keeps them
        _wait_for(lambda: all(ep.shipped == 1 for ep in pool._server.endpoints.values())
                  and len(pool._server.endpoints) == 2)
        assert pool.workflow_blobs() == [(key, None)] and pool._blobs_by_key[key] is None  # let go
        old = set(pool.pids())
        os.kill(pool.pids()[0], signal.SIGKILL)  # its replacement must get the workflow from the history
        _wait_for(lambda: len(set(pool.pids()) - old) == 1 and len(pool._server.endpoints) == 2
                  and all(ep.shipped == 1 and ep.worker_id for ep in pool._server.endpoints.values()))
        assert pool.error is None  # the new process loaded what it was sent
        run = session.submit(wf)  # the same object: nothing shipped again
        run.wait(raise_on_failure=True, timeout=60)
        workers = {w for (w,) in session.sql(f"SELECT DISTINCT worker FROM steps WHERE run_id = '{run.id}'")
                   .fetchall()}
        assert len(workers) == 2, workers  # both processes ran steps: the new one loaded the read-back bytes
        assert run.info().counts()[Status.SUCCEEDED] == 62


def test_a_history_in_memory_keeps_the_pools_bytes(tmp_path):
    import fuseline_nb as fl

    with fl.Session(None, workers=2) as session:
        pool = session.pool
        session.submit(_fan_out(10)).wait(raise_on_failure=True)
        _wait_for(lambda: len(pool._server.endpoints) == 2
                  and all(ep.shipped == 1 for ep in pool._server.endpoints.values()))
        [(_, blob)] = pool.workflow_blobs()
        assert blob is not None  # nothing to read them back from
