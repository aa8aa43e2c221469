"""The user API of the model: wiring, names, graph, schema, ids, errors, engines."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time

import networkx as nx
import pytest

import fuseline_nb
from fuseline_nb import (
    Computed,
    CycleError,
    Depends,
    DuplicateStepNameError,
    FunctionStep,
    MissingInputError,
    PoolEngine,
    Status,
    Step,
    Workflow,
    WorkflowSchema,
)


class Load(Step):
    def run_step(self, n: int) -> list[int]:
        return list(range(n))


def test_names_are_derived_and_made_unique():
    a, b, c = Load(), Load(), Load(name="custom")
    a >> b >> c
    wf = Workflow(outputs=[c])
    assert wf.step_names == ["Load", "Load_2", "custom"]
    assert (a.name, b.name) == ("Load", "Load_2")


def test_duplicate_explicit_names_are_refused():
    a, b = Load(name="x"), Load(name="x")
    a >> b
    with pytest.raises(DuplicateStepNameError, match="two steps are named 'x'"):
        Workflow(outputs=[b])


def test_cycle_is_reported_with_the_cycle():
    a, b, c = (FunctionStep(lambda: 1, name=n) for n in "abc")
    a >> b >> c >> a
    with pytest.raises(CycleError, match="workflow has a cycle: ") as info:
        Workflow(outputs=[c])
    assert set(info.value.cycle) == {"a", "b", "c"}
    assert info.value.cycle[0] == info.value.cycle[-1]


def test_graph_is_a_networkx_digraph_with_attributes():
    a, b, c = Load(name="a"), Load(name="b"), Load(name="c")
    (a - "go") >> b
    (a | b) >> c
    wf = Workflow(outputs=[c])
    g = wf.graph
    assert isinstance(g, nx.DiGraph)
    assert g.nodes["a"]["name"] == "a" and g.nodes["a"]["kind"] == "step" and g.nodes["a"]["step"] is a
    assert g.edges["a", "b"]["action"] == "go" and g.edges["a", "b"]["group"] is None
    assert g.edges["a", "c"]["group"] == g.edges["b", "c"]["group"] == "c:any(a,b)"


def test_collects_backwards_and_forwards_from_outputs():
    a, b, c, d = (FunctionStep(lambda: "x", name=n) for n in "abcd")
    (a - "x") >> b
    (a - "y") >> c  # a branch target that is not an output
    c >> d
    assert sorted(Workflow(outputs=[b]).step_names) == ["a", "b", "c", "d"]


def test_depends_on_a_class_resolves_to_the_instance():
    class Double(Step):
        def run_step(self, xs: Computed[list[int]] = Depends(Load)) -> int:
            return 2 * len(xs)

    wf = Workflow(outputs=[Double()])
    assert wf.step_names == ["Load", "Double"]
    assert wf.run({"n": 4}) == 8


def test_several_outputs_come_back_as_a_list_in_order():
    a = FunctionStep(lambda: 1, name="a")
    b = FunctionStep(lambda: 2, name="b")
    assert Workflow(outputs=[b, a]).run() == [2, 1]


def test_missing_input_is_refused_before_the_run_starts_naming_param_and_step():
    wf = Workflow(outputs=[Load()])
    with pytest.raises(MissingInputError, match=r"^step 'Load' needs input 'n': pass it in the run's inputs, "
                                                r"e\.g\. wf\.run\(\{'n': \.\.\.\}\)$"):
        wf.run()
    assert wf.last_run is None and wf.state is Status.PENDING  # nothing ran
    with pytest.raises(MissingInputError):
        wf.bindings["Load"].kwargs({}, {}, {})


def test_schema_round_trips_through_json():
    a, b = Load(name="a"), Load(name="b")
    (a - "go") >> b
    schema = Workflow(outputs=[b], workflow_id="wf", version="3").to_schema()
    again = WorkflowSchema.from_json(schema.to_json())
    assert again == schema
    assert json.loads(schema.to_json())["edges"] == [
        {"source": "a", "target": "b", "action": "go", "group": None}
    ]


def test_workflow_id_is_stable_across_processes():
    code = (
        "from fuseline_nb.examples import build_tour\n"
        "from fuseline_nb import Workflow\n"
        "wf = build_tour()\n"
        "print(Workflow(outputs=wf.outputs).workflow_id)\n"
    )
    out1 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    out2 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out1 == out2 and out1.startswith("workflow-")


def test_structure_changes_the_derived_id():
    a, b = Load(name="a"), Load(name="b")
    a >> b
    first = Workflow(outputs=[b]).workflow_id
    c = Load(name="c")
    b >> c
    assert Workflow(outputs=[c]).workflow_id != first


def test_pool_engine_runs_independent_steps_concurrently():
    inside = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        time.sleep(0.05)
        with lock:
            inside -= 1

    steps = [FunctionStep(work, name=f"w{i}") for i in range(8)]
    wf = Workflow(outputs=steps)
    t0 = time.perf_counter()
    wf.run(execution_engine=PoolEngine(4))
    elapsed = time.perf_counter() - t0
    assert peak == 4  # up to n at once, never more, never "sequential beyond n"
    assert elapsed < 8 * 0.05


def test_long_chain_builds_and_runs_without_recursion_error():
    steps = [FunctionStep(lambda: 1, name=f"s{i}") for i in range(2500)]
    for x, y in itertools.pairwise(steps):
        x >> y
    wf = Workflow(outputs=[steps[-1]])
    assert wf.run() == 1 and wf.state is Status.SUCCEEDED


def test_hooks_run_in_order_even_when_the_run_fails():
    seen: list[str] = []

    class Hooked(Step):
        def before_all(self, shared):
            seen.append("before_all")

        def setup(self, shared):
            seen.append("setup")
            return "prepared"

        def run_step(self) -> None:
            seen.append("run")
            raise RuntimeError("boom")

        def after_all(self, shared):
            seen.append("after_all")

    wf = Workflow(outputs=[Hooked()])
    wf.run()
    assert seen == ["before_all", "setup", "run", "after_all"]
    assert wf.state is Status.FAILED


def test_teardown_may_replace_the_result():
    class Tidy(Step):
        def run_step(self) -> int:
            return 1

        def teardown(self, shared, setup_res, exec_res):
            return exec_res + 1

    assert Workflow(outputs=[Tidy()]).run() == 2


def test_public_names():
    expected = {
        "Step", "Workflow", "Status", "Depends", "Computed", "Condition", "FunctionStep",
        "workflow_from_functions", "PoolEngine", "ProcessEngine", "RetryPolicy", "StepTimeoutPolicy",
    }
    assert expected <= set(fuseline_nb.__all__)
    for name in fuseline_nb.__all__:
        getattr(fuseline_nb, name)  # every advertised name resolves
    from fuseline_nb.broker import DuckDBBroker, MemoryBroker, StepAssignment, StepReport  # noqa: F401
    from fuseline_nb.broker.clients import BrokerClient, LocalBrokerClient  # noqa: F401
    from fuseline_nb.broker.storage import MemoryRuntimeStorage, RuntimeStorage  # noqa: F401
    from fuseline_nb.worker import PoolEngine, ProcessEngine  # noqa: F401
    from fuseline_nb.workflow.policies import RetryPolicy, StepPolicy, StepTimeoutPolicy, WorkflowPolicy  # noqa: F401


def test_import_is_light():
    code = (
        "import sys, fuseline_nb\n"
        "heavy = {'duckdb', 'graphviz', 'ipywidgets', 'httpx', 'uvicorn', 'fastapi', 'starlette', 'pyarrow'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_traceback_starts_at_the_users_code():
    def boom() -> None:
        raise ValueError("bad row")

    wf = Workflow(outputs=[FunctionStep(boom)])
    wf.run()
    tb = wf.last_run.steps["boom"].traceback
    assert "fuseline_nb" not in tb.split("\n")[1]  # first frame is the test's function
    assert "in boom" in tb and tb.rstrip().endswith("ValueError: bad row")
