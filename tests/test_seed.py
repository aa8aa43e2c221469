"""The seed document's example, verbatim but for the import prefix."""

from __future__ import annotations

from fuseline_nb import Status


def test_execution_flow_example_runs_verbatim():
    # A workflow for the example to run.
    from fuseline_nb import Computed, Depends, Step
    from fuseline_nb import Workflow as _Workflow

    class Add(Step):
        def run_step(self, x: int = 2, y: int = 3) -> int:
            return x + y

    add = Add()

    class Multiply(Step):
        def run_step(self, value: Computed[int] = Depends(add)) -> int:
            return value * 2

    workflow = _Workflow(outputs=[Multiply()])

    # --- the seed's code block, with `fuseline` changed to `fuseline_nb` ---
    from fuseline_nb import Workflow  # noqa: F401
    from fuseline_nb.broker import MemoryBroker
    from fuseline_nb.broker.clients import HttpBrokerClient, LocalBrokerClient  # noqa: F401
    from fuseline_nb.worker import ProcessEngine

    broker = MemoryBroker()
    client = LocalBrokerClient(broker)  # HttpBrokerClient("http://localhost:8000") for real deployments
    instance = client.dispatch_workflow(workflow.to_schema())

    worker = ProcessEngine(client, [workflow])
    worker.work()
    # --- end of the seed's code ---

    info = broker.get_run(instance)
    assert info.state is Status.SUCCEEDED
    assert info.steps["Multiply"].result == 10
    assert {n: s.state for n, s in info.steps.items()} == {
        "Add": Status.SUCCEEDED,
        "Multiply": Status.SUCCEEDED,
    }


def test_multiple_engines_share_one_broker():
    """'Multiple processes can create their own ProcessEngine instances pointing at the same broker.'"""
    from fuseline_nb import FunctionStep, Workflow
    from fuseline_nb.broker import MemoryBroker
    from fuseline_nb.broker.clients import LocalBrokerClient
    from fuseline_nb.worker import ProcessEngine

    root = FunctionStep(lambda: 1, name="root")
    leaves = [FunctionStep(lambda: 2, name=f"leaf{i}") for i in range(6)]
    for leaf in leaves:
        root >> leaf
    wf = Workflow(outputs=leaves)
    broker = MemoryBroker()
    run_id = LocalBrokerClient(broker).dispatch_workflow(wf.to_schema())
    engines = [ProcessEngine(LocalBrokerClient(broker), [wf], name=f"w{i}") for i in range(2)]
    engines[0].work(max_steps=3)
    engines[1].work()
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED
    assert engines[0].steps_run == 3 and engines[1].steps_run == 4
    assert {s.worker for s in info.steps.values()} == {"w0", "w1"}  # the workers' names


def test_engine_leaves_no_heartbeat_thread_behind():
    import gc
    import threading
    import weakref

    from fuseline_nb import FunctionStep, Workflow
    from fuseline_nb.broker import MemoryBroker
    from fuseline_nb.broker.clients import LocalBrokerClient
    from fuseline_nb.worker import ProcessEngine

    wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")])
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    client.dispatch_workflow(wf.to_schema())
    engine = ProcessEngine(client, [wf])
    engine.work()
    beats = [t for t in threading.enumerate() if t.name.startswith(f"fuseline-heartbeat-{engine.worker_id}")]
    for t in beats:
        t.join(timeout=30)  # it wakes within one interval and exits
    assert not any(t.is_alive() for t in beats)
    ref = weakref.ref(engine)
    del engine
    gc.collect()
    assert ref() is None
