"""Run a workflow through both paths and compare (shared by the rule tests)."""

from __future__ import annotations

from typing import Any

from fuseline_nb import Status, Workflow
from fuseline_nb.broker import StorageBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker import ProcessEngine


def local_states(wf: Workflow, inputs: dict[str, Any] | None = None, engine: Any = None) -> dict[str, Status]:
    """Final step states of an in-process run."""
    wf.run(inputs or {}, engine)
    assert wf.last_run is not None
    return {n: s.state for n, s in wf.last_run.steps.items()}


def broker_run(wf: Workflow, broker: StorageBroker, inputs: dict[str, Any] | None = None):
    """Dispatch ``wf`` on ``broker``, drain it with one ProcessEngine; return the RunInfo."""
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema(), inputs or {})
    ProcessEngine(client, [wf]).work()
    return broker.get_run(run_id)


def broker_states(wf: Workflow, broker: StorageBroker, inputs: dict[str, Any] | None = None) -> dict[str, Status]:
    """Final step states of a run through the broker and a ProcessEngine."""
    info = broker_run(wf, broker, inputs)
    return {n: s.state for n, s in info.steps.items()}
