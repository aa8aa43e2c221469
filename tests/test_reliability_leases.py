"""Issue 18, leases: a step holding the GIL past its lease does not livelock its run."""

from __future__ import annotations

import pytest

import fuseline_nb as fl
from fuseline_nb import Status
from fuseline_nb.broker.clients import LocalBrokerClient
from tests.test_broker_leases import FakeClock, report_for, two_step


def hold_the_gil() -> int:
    return sum(range(60_000_000))  # one C call: no heartbeat thread runs until it returns


@pytest.mark.slow
def test_a_pool_step_holding_the_gil_past_its_lease_runs_once(tmp_path) -> None:
    # two workers: the idle one polls, so the broker checks the busy one's lease meanwhile (on main
    # the step was handed out again at every expiry: 8 attempts, each holding the GIL in turn)
    wf = fl.Workflow(outputs=[fl.FunctionStep(hold_the_gil)], workflow_id="gil")
    with fl.Session(tmp_path / "h.duckdb", workers=2, lease_seconds=0.3) as session:
        run = session.submit(wf)
        assert run.wait(timeout=120) == sum(range(60_000_000))
        step = run.info().steps["hold_the_gil"]
        assert (step.state, step.attempts) == (Status.SUCCEEDED, 1)
        queued = session.sql("SELECT count(*) FROM events WHERE kind = 'step_queued' "
                             "AND detail_json LIKE '%lease expired%'").fetchall()
        assert queued == [(0,)]


def test_a_step_whose_lease_passes_three_times_in_a_row_fails_naming_why(make_broker) -> None:
    clock = FakeClock()
    broker = make_broker(lease_seconds=10, clock=clock)
    wf = two_step()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    worker = client.register_worker([wf.to_schema()], "stuck")
    for attempt in (1, 2, 3):
        a = client.get_step(worker)
        assert (a.step_name, a.attempt) == ("a", attempt)
        clock.now += 11  # no report, no keep-alive
    assert client.get_step(worker) is None  # not queued a fourth time
    info = broker.get_run(run_id)
    assert info.state is Status.FAILED
    assert info.steps["a"].state is Status.FAILED and info.steps["a"].attempts == 3
    assert info.steps["a"].error.startswith("LeaseExpiredError: step 'a' went 3 leases of 10 s in a row "
                                            "without a report")
    assert info.steps["b"].state is Status.CANCELLED  # rules v2: downstream of a failure


def test_a_report_between_expiries_starts_the_count_over(make_broker) -> None:
    clock = FakeClock()
    broker = make_broker(lease_seconds=10, clock=clock)
    wf = fl.Workflow(outputs=[fl.FunctionStep(lambda: 1, name="a", policies=[fl.RetryPolicy(5)])],
                     workflow_id="retried")
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    worker = client.register_worker([wf.to_schema()], "w")

    for _ in range(2):
        client.get_step(worker)
        clock.now += 11
    a = client.get_step(worker)
    client.report_step(worker, report_for(a, Status.FAILED, error="ValueError: flaky"))
    for _ in range(2):
        client.get_step(worker)
        clock.now += 11
    a = client.get_step(worker)
    client.report_step(worker, report_for(a, Status.SUCCEEDED, result=1))
    assert broker.get_run(run_id).state is Status.SUCCEEDED
