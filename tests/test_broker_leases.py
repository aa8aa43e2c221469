"""Leases, keep-alives, retries and misuse of the broker."""

from __future__ import annotations

import pytest

from fuseline_nb import FunctionStep, RetryPolicy, Status, Workflow
from fuseline_nb.broker import StepReport
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.errors import SchemaMismatchError, StaleReportError, UnknownRunError, UnknownWorkerError
from fuseline_nb.worker import ProcessEngine


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def two_step() -> Workflow:
    a = FunctionStep(lambda: 1, name="a")
    b = FunctionStep(lambda: 2, name="b")
    a >> b
    return Workflow(outputs=[b], workflow_id="two")


def report_for(a, state=Status.SUCCEEDED, result=None, **kw) -> StepReport:
    return StepReport(a.workflow_id, a.instance_id, a.step_name, state, result, attempt=a.attempt, **kw)


def test_expired_lease_is_requeued_and_late_report_refused(make_broker):
    clock = FakeClock()
    broker = make_broker(lease_seconds=10, clock=clock)
    wf = two_step()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    slow = client.register_worker([wf.to_schema()], "slow")
    first = client.get_step(slow)
    assert first.step_name == "a" and first.attempt == 1
    # Within the lease nobody else gets the step.
    other = ProcessEngine(client, [wf], name="other")
    clock.now += 9
    assert client.get_step(other.worker_id) is None
    # After the lease, another worker completes it as attempt 2.
    clock.now += 2
    other.work()
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED
    assert info.steps["a"].attempts == 2
    assert info.steps["a"].worker == "other"  # steps record the worker's name
    # The first worker's late report is refused.
    with pytest.raises(StaleReportError, match=r"run .* has ended|no longer assigned"):
        client.report_step(slow, report_for(first, result=1))
    events = [(e.kind, e.state, e.attempt, e.detail) for e in broker.events(run_id) if e.step == "a"]
    assert [k[:3] for k in events] == [  # each attempt ends with one step_finished; each queueing is one step_queued
        ("step_queued", Status.PENDING, 0), ("step_started", Status.RUNNING, 1),
        ("step_finished", Status.FAILED, 1), ("step_queued", Status.PENDING, 1),
        ("step_started", Status.RUNNING, 2), ("step_finished", Status.SUCCEEDED, 2)]
    assert events[2][3] == {"error": "lease expired", "retry": 1, "lost": True}
    assert events[3][3] == {"reason": "lease expired"}


def test_late_report_refused_while_run_still_live(make_broker):
    clock = FakeClock()
    broker = make_broker(lease_seconds=5, clock=clock)
    wf = two_step()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    w1 = client.register_worker([wf.to_schema()])
    w2 = client.register_worker([wf.to_schema()])
    a1 = client.get_step(w1)
    clock.now += 6
    a2 = client.get_step(w2)
    assert (a2.step_name, a2.attempt) == ("a", 2)
    with pytest.raises(StaleReportError, match=r"attempt 1 .* no longer assigned"):
        client.report_step(w1, report_for(a1, result=1))
    client.report_step(w2, report_for(a2, result=1))
    assert broker.get_run(run_id).steps["a"].state is Status.SUCCEEDED


def test_keep_alive_extends_the_lease(make_broker):
    clock = FakeClock()
    broker = make_broker(lease_seconds=10, clock=clock)
    wf = two_step()
    client = LocalBrokerClient(broker)
    client.dispatch_workflow(wf.to_schema())
    w1 = client.register_worker([wf.to_schema()])
    w2 = client.register_worker([wf.to_schema()])
    a = client.get_step(w1)
    for _ in range(5):
        clock.now += 8
        client.keep_alive(w1)
        assert client.get_step(w2) is None
    client.report_step(w1, report_for(a, result=1))
    assert client.get_step(w2).step_name == "b"


def test_unregistered_worker_gives_its_steps_back(make_broker):
    broker = make_broker()
    wf = two_step()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    w1 = client.register_worker([wf.to_schema()])
    client.get_step(w1)
    client.unregister_worker(w1)
    ProcessEngine(client, [wf]).work()
    assert broker.get_run(run_id).state is Status.SUCCEEDED
    with pytest.raises(UnknownWorkerError, match="register it first"):
        client.get_step(w1)


def test_broker_retries_a_failed_step_per_retry_policy(make_broker):
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("flaky")
        return "ok"

    wf = Workflow(outputs=[FunctionStep(flaky, policies=[RetryPolicy(max_retries=3)])])
    broker = make_broker()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    ProcessEngine(client, [wf]).work()
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED and info.steps["flaky"].attempts == 3
    assert len(calls) == 3


def test_retries_run_out(make_broker):
    def always() -> None:
        raise ValueError("nope")

    wf = Workflow(outputs=[FunctionStep(always, policies=[RetryPolicy(max_retries=2)])])
    broker = make_broker()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    ProcessEngine(client, [wf]).work()
    info = broker.get_run(run_id)
    assert info.state is Status.FAILED
    assert info.steps["always"].attempts == 2
    assert info.steps["always"].error == "ValueError: nope"
    assert "Traceback" in info.steps["always"].traceback


def test_schema_mismatch_names_what_differs(make_broker):
    broker = make_broker()
    broker.dispatch_workflow(two_step().to_schema())
    a = FunctionStep(lambda: 1, name="a")
    c = FunctionStep(lambda: 2, name="c")
    a >> c
    other = Workflow(outputs=[c], workflow_id="two")
    with pytest.raises(SchemaMismatchError, match=r"'two' version '1'.*steps only in the new schema: \['c'\]"):
        broker.dispatch_workflow(other.to_schema())
    # Another version is fine.
    broker.dispatch_workflow(Workflow(outputs=[c], workflow_id="two", version="2").to_schema())


def test_unknown_run(make_broker):
    with pytest.raises(UnknownRunError, match="nope"):
        make_broker().get_run("nope")


def test_report_with_bad_state_is_refused(make_broker):
    broker = make_broker()
    wf = two_step()
    client = LocalBrokerClient(broker)
    client.dispatch_workflow(wf.to_schema())
    w = client.register_worker([wf.to_schema()])
    a = client.get_step(w)
    with pytest.raises(ValueError, match="SUCCEEDED, FAILED or SKIPPED"):
        client.report_step(w, report_for(a, state=Status.CANCELLED))


def test_dispatch_accepts_a_workflow_object(make_broker):
    """Fuseline's runtime-storage page passes the Workflow itself; we accept it too."""
    broker = make_broker()
    wf = two_step()
    run_id = broker.dispatch_workflow(wf)  # type: ignore[arg-type]
    ProcessEngine(LocalBrokerClient(broker), [wf]).work()
    assert broker.get_run(run_id).state is Status.SUCCEEDED


def test_closed_broker_refuses_work(make_broker):
    from fuseline_nb.errors import StorageClosedError

    broker = make_broker()
    broker.close()
    broker.close()  # idempotent
    with pytest.raises(StorageClosedError):
        broker.dispatch_workflow(two_step().to_schema())


def _refuses() -> None:
    raise ValueError("nope")


def _edited(retries: int) -> Workflow:
    """The cell that builds the workflow; between two runs its RetryPolicy is edited."""
    return Workflow(outputs=[FunctionStep(_refuses, name="always", policies=[RetryPolicy(retries)])],
                    workflow_id="edited")


def test_a_running_run_keeps_its_definition_while_a_newer_one_is_registered(make_broker):
    broker = make_broker()
    client = LocalBrokerClient(broker)
    first = client.dispatch_workflow(_edited(1).to_schema())
    newer = _edited(3).to_schema()  # the same structure, another policy: no SchemaMismatchError
    second = client.dispatch_workflow(newer)  # while `first` has not started
    assert broker.get_workflow("edited", "1") is newer
    # the worker holds the older copy (an equal object, not the broker's): it must not win back
    ProcessEngine(client, [_edited(1)]).work()
    assert broker.get_workflow("edited", "1") is newer
    one, three = broker.get_run(first), broker.get_run(second)
    assert (one.state, one.steps["always"].attempts) == (Status.FAILED, 1)  # the policy it started with
    assert (three.state, three.steps["always"].attempts) == (Status.FAILED, 3)
    third = client.dispatch_workflow(_edited(3).to_schema())  # an equal rebuild: still the newer one
    ProcessEngine(client, [_edited(3)]).work()
    assert broker.get_run(third).steps["always"].attempts == 3
    broker.storage.flush()
    (stored,) = broker.storage.list_workflows()
    assert stored == newer and stored.steps[0].policies[0]["config"]["max_retries"] == 3
