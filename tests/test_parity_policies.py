"""Parity with Fuseline's "Retries with backoff" page and the developer
"Policies" page (import path ``fuseline_nb.workflow.policies``)."""

from __future__ import annotations

import time

from fuseline_nb import Status, Step, Workflow
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker import ProcessEngine
from fuseline_nb.workflow.policies import (
    FailureAction,
    FailureDecision,
    RetryPolicy,
    StepPolicy,
    StepTimeoutPolicy,
    WorkflowPolicy,
)


class SometimesFails(Step):
    def __init__(self, failures: int, **kw):
        super().__init__(**kw)
        self.failures = failures
        self.calls = 0

    def run_step(self, _setup_res):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"try {self.calls}")
        return "done"


def test_retry_policy_counts_total_attempts_and_waits_between():
    step = SometimesFails(2, policies=[RetryPolicy(max_retries=3, wait=0.05)])
    wf = Workflow(outputs=[step])
    t0 = time.perf_counter()
    assert wf.run() == "done"
    assert time.perf_counter() - t0 >= 0.1  # two waits
    assert step.calls == 3 and wf.last_run.steps["SometimesFails"].attempts == 3


def test_policies_page_append_then_fail_after_three_attempts():
    class Flaky(Step):
        calls = 0

        def run_step(self) -> None:
            Flaky.calls += 1
            raise RuntimeError("flaky")

    step = Flaky()
    step.policies.append(RetryPolicy(max_retries=3, wait=0))
    step.policies.append(StepTimeoutPolicy(5.0))
    wf = Workflow(outputs=[step])
    wf.run()
    assert wf.state is Status.FAILED
    assert Flaky.calls == 3
    assert wf.last_run.steps["Flaky"].attempts == 3


def test_broker_applies_the_retry_policy_too():
    step = SometimesFails(1, policies=[RetryPolicy(max_retries=2)])
    wf = Workflow(outputs=[step], workflow_id="retry-broker")
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = wf.dispatch(client)
    ProcessEngine(client, [wf]).work()
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED and info.steps["SometimesFails"].attempts == 2


def test_custom_step_and_workflow_policies_see_every_hook():
    seen = []

    class Audit(StepPolicy):
        name = "audit-parity"

        def execute(self, step, call):
            seen.append("execute")
            return call()

        def on_start(self, step):
            seen.append("start")

        def on_success(self, step, result):
            seen.append(f"success {result}")

        def on_failure(self, step, exc, attempt):
            seen.append(f"failure {attempt}")
            return FailureDecision(FailureAction.RETRY) if attempt == 0 else None

    class Watch(WorkflowPolicy):
        name = "watch-parity"

        def on_workflow_start(self, workflow):
            seen.append("wf start")

        def on_step_start(self, workflow, step):
            seen.append(f"step start {step.name}")

        def on_workflow_finished(self, workflow, result):
            seen.append(f"wf finished {result}")

    step = SometimesFails(1, policies=[Audit()])
    Workflow(outputs=[step], policies=[Watch()]).run()
    assert seen == [
        "wf start", "step start SometimesFails",
        "start", "execute", "failure 0",
        "start", "execute", "success done",
        "wf finished done",
    ]
