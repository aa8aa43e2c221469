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


def _fan_out(n: int) -> Workflow:
    head, tail = FunctionStep(_noop, name="head"), FunctionStep(_noop, name="tail")
    for i in range(n):
        head >> FunctionStep(_noop, name=f"m{i}") >> tail
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
