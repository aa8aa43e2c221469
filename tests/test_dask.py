"""DaskEngine and Session(dask=...) on a real LocalCluster (worker processes, one per core).

The rule table and a sample of the property test run through the engine and
must end in the same states as in-process runs; a Dask worker killed
mid-step loses nothing; a cancelled run's task stops; timeouts and retries
hold. One cluster serves the whole module, to keep CI quick.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

from fuseline_nb import Depends, FunctionStep, RetryPolicy, Session, Status, StepTimeoutPolicy, Workflow  # noqa: E402
from fuseline_nb.broker import MemoryBroker  # noqa: E402
from fuseline_nb.broker.clients import LocalBrokerClient  # noqa: E402
from fuseline_nb.worker.dask_engine import DaskEngine  # noqa: E402
from tests import test_rules_property as prop  # noqa: E402
from tests.test_rules_table import CASES, Case, recovered_of  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=2,
                                  dashboard_address=":0") as c:
        yield c


@pytest.fixture
def dask(cluster) -> Iterator[Any]:
    with distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)  # a test may have killed one: the nanny restarts it
        yield client


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true (events cross processes here: files, pids)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def dask_run(wf: Workflow, dask: Any, inputs: dict[str, Any] | None = None, **engine: Any):
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema(), inputs or {})
    engine = DaskEngine(client, [wf], dask, **engine)
    try:
        engine.work()
    finally:
        engine.stop()
    return broker.get_run(run_id)


# -- the same final states as every other engine --------------------------------------------
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule_table_through_dask(case: Case, dask) -> None:
    info = dask_run(case.build(), dask, inputs=case.inputs)
    assert {n: s.state for n, s in info.steps.items()} == case.expected
    assert info.state is case.run_state
    assert recovered_of(info) == case.recovered


@pytest.mark.parametrize("seed", range(8))
def test_random_dags_through_dask_match_in_process(seed: int, dask) -> None:
    """One step in flight keeps the in-process completion order (which decides a skip against a cancel)."""
    spec = prop.random_spec(random.Random(seed))
    local_calls: list[str] = []
    wf_local = prop.build(spec, local_calls)
    wf_local.run()
    info = dask_run(prop.build(spec, []), dask, max_in_flight=1)
    # steps ran in Dask worker processes: what ran is what the history says ran, once each
    ran = [n for n, s in info.steps.items() if s.state in (Status.SUCCEEDED, Status.FAILED)]
    assert all(info.steps[n].attempts == 1 for n in ran)
    prop.check_rules(prop.build(spec, []), info, ran)
    # parallel steps finish in another order: a step one slot skips and another cancels may differ
    # (what ran, the recovered failures and the run state may not)
    prop.same_outcome(wf_local, wf_local.last_run, info)
    assert sorted(local_calls) == sorted(ran)


@pytest.mark.parametrize("seed", range(8, 12))
def test_random_dags_in_parallel_on_dask_follow_the_rules(seed: int, dask) -> None:
    """Many steps in flight: any completion order, every decision still by the rules, each step once."""
    spec = prop.random_spec(random.Random(seed))
    info = dask_run(prop.build(spec, []), dask)
    ran = [n for n, s in info.steps.items() if s.state in (Status.SUCCEEDED, Status.FAILED)]
    assert all(info.steps[n].attempts == 1 for n in ran)
    prop.check_rules(prop.build(spec, []), info, ran)


def test_results_and_inputs_travel(dask) -> None:
    def load(n: int) -> list[int]:
        return list(range(n))

    def total(rows: list[int] = Depends(load)) -> dict[str, Any]:
        return {"sum": sum(rows), "pid": os.getpid()}

    info = dask_run(Workflow(outputs=[FunctionStep(total)]), dask, inputs={"n": 5})
    assert info.state is Status.SUCCEEDED
    assert info.steps["total"].result["sum"] == 10
    assert info.steps["total"].result["pid"] != os.getpid()  # it ran on a Dask worker


def _scheduler_keys(dask_scheduler: Any) -> list[str]:
    return [str(k) for k in dask_scheduler.tasks]


def test_small_outcomes_come_with_the_completion_and_large_ones_are_fetched(dask) -> None:
    """A small outcome travels as a Dask event on the engine's topic (no gather round trip); one
    over PUSH_LIMIT is gathered; both reach the broker; after the engine stops, the cluster holds
    none of its tasks (finished futures are released in batches, not leaked)."""
    from fuseline_nb.worker.dask_task import PUSH_LIMIT

    def small() -> int:
        return 7

    def big(x: int = Depends(small)) -> bytes:
        return bytes(range(256)) * (4 * PUSH_LIMIT // 256)

    def size(b: bytes = Depends(big)) -> int:
        return len(b)

    wf = Workflow(outputs=[FunctionStep(size)])
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    engine = DaskEngine(client, [wf], dask)
    try:
        engine.work()
        events = [msg for _, msg in dask.get_events(engine._flights.topic)]
        pushed = sorted(msg["key"].rsplit("-", 1)[0] for msg in events if msg["outcome"] is not None)
        announced = sorted(msg["key"].rsplit("-", 1)[0] for msg in events)
    finally:
        engine.stop()
    info = broker.get_run(run_id)
    assert info.state is Status.SUCCEEDED, info.failures()
    assert info.steps["big"].result == bytes(range(256)) * (4 * PUSH_LIMIT // 256)
    assert info.steps["size"].result == 4 * PUSH_LIMIT
    assert pushed == ["size", "small"]  # 'big' (4 x PUSH_LIMIT) was fetched with gather
    assert announced == ["big", "size", "small"]
    wait_for(lambda: not [k for k in dask.run_on_scheduler(_scheduler_keys)
                          if k.rsplit("-", 1)[0] in ("small", "big", "size")],
             what="the scheduler to forget the engine's tasks")


def test_the_engine_shortens_the_dask_client_s_send_interval(dask) -> None:
    """Dask's client batches what it sends for 10 ms, which would cap a chain at 100 steps a second;
    the engine sets 2 ms (through an attribute Dask does not document: this fails if it moves)."""
    from fuseline_nb.worker._dask_cluster import SEND_INTERVAL

    assert dask.scheduler_comm.interval == pytest.approx(0.01)
    engine = DaskEngine(LocalBrokerClient(MemoryBroker()), [], dask)
    try:
        assert dask.scheduler_comm.interval == SEND_INTERVAL == 0.002
    finally:
        engine.stop()


def test_a_result_that_cannot_travel_fails_its_step_with_the_reason(dask) -> None:
    def lock() -> Any:
        return threading.Lock()

    info = dask_run(Workflow(outputs=[FunctionStep(lock)]), dask)
    assert info.steps["lock"].state is Status.FAILED
    assert "PicklingError" in info.steps["lock"].error
    assert "the result of step 'lock' (a lock) cannot be sent back" in info.steps["lock"].error


# -- what the cluster may do to a step ---------------------------------------------------------
def _slow_step(marks: Path, name: str = "slow") -> FunctionStep:
    def body() -> int:
        (marks / f"started-{os.getpid()}").touch()
        try:
            while not (marks / "release").exists():
                time.sleep(0.02)
        finally:
            (marks / f"stopped-{os.getpid()}").touch()
        return os.getpid()

    body.__name__ = name
    return FunctionStep(body, name=name)


def _started(marks: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in marks.glob("started-*")]


def test_a_dask_worker_killed_mid_step_loses_nothing(dask, tmp_path) -> None:
    slow = _slow_step(tmp_path)

    def after(pid: int = Depends(slow)) -> int:
        return pid

    wf = Workflow(outputs=[FunctionStep(after)])
    broker = MemoryBroker(lease_seconds=5)
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    engine = DaskEngine(client, [wf], dask).start()
    try:
        first = wait_for(lambda: _started(tmp_path), what="the step to start")[0]
        os.kill(first, signal.SIGKILL)
        # Dask runs the task again on another worker, as the same attempt of the broker's
        second = wait_for(lambda: [p for p in _started(tmp_path) if p != first], 60, "the step to run again")[0]
        (tmp_path / "release").touch()
        info = wait_for(lambda: (i := broker.get_run(run_id)).done and i, 60, "the run to end")
    finally:
        engine.stop()
    assert info.state is Status.SUCCEEDED
    assert info.steps["slow"].attempts == 1
    assert info.steps["after"].result == second
    finished = [e for e in broker.events(run_id) if e.kind == "step_finished" and e.step == "slow"]
    started = [e for e in broker.events(run_id) if e.kind == "step_started" and e.step == "slow"]
    assert len(finished) == 1 and len(started) == 1


def test_cancel_stops_the_running_task(dask, tmp_path) -> None:
    wf = Workflow(outputs=[_slow_step(tmp_path)])
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    run_id = client.dispatch_workflow(wf.to_schema())
    engine = DaskEngine(client, [wf], dask).start()
    try:
        pid = wait_for(lambda: _started(tmp_path), what="the step to start")[0]
        assert engine.cancel_run(run_id) == 1
        wait_for(lambda: (tmp_path / f"stopped-{pid}").exists(), what="the step to be stopped")
        wait_for(lambda: not any(dask.processing().values()), what="Dask to hold no task")
    finally:
        engine.stop()
    assert not (tmp_path / "release").exists()  # it stopped because it was told to, not because it ended


def test_run_cancel_in_a_dask_session_stops_the_task_and_the_session_goes_on(cluster, dask, tmp_path) -> None:
    wf = Workflow(outputs=[_slow_step(tmp_path)], workflow_id="dask-cancel")
    with Session(None, dask=cluster.scheduler_address) as session:
        run = session.submit(wf)
        pid = wait_for(lambda: _started(tmp_path), what="the step to start")[0]
        assert run.cancel("not needed") is True
        wait_for(lambda: (tmp_path / f"stopped-{pid}").exists(), what="the step to be stopped")
        assert run.state is Status.CANCELLED
        assert run.info().steps["slow"].state is Status.CANCELLED
        wait_for(lambda: not any(dask.processing().values()), what="Dask to hold no task")
        assert not (tmp_path / "release").exists()
        # the session goes on
        assert session.submit(Workflow(outputs=[FunctionStep(lambda: 5, name="five")])).wait(timeout=60) == 5


def test_timeout_interrupts_the_step_and_retries_hold(dask, tmp_path) -> None:
    attempts: list[int] = []

    def hangs() -> None:
        attempts.append(1)  # a copy per task: counted by the broker below
        (tmp_path / f"try-{time.monotonic_ns()}").touch()
        try:
            while True:
                time.sleep(0.02)
        finally:
            (tmp_path / f"stopped-{time.monotonic_ns()}").touch()

    step = FunctionStep(hangs, policies=[StepTimeoutPolicy(0.5), RetryPolicy(max_retries=2)])
    t0 = time.monotonic()
    info = dask_run(Workflow(outputs=[step]), dask)
    assert time.monotonic() - t0 < 20
    assert info.state is Status.FAILED
    assert info.steps["hangs"].attempts == 2
    assert "TimeoutError: step 'hangs' exceeded its timeout of 0.5 s" in info.steps["hangs"].error
    wait_for(lambda: len(list(tmp_path.glob("stopped-*"))) == 2, what="both attempts to be interrupted")


# -- the notebook face --------------------------------------------------------------------------
def test_session_on_dask_keeps_history_and_links_the_dashboard(cluster, tmp_path) -> None:
    def double(x: int) -> int:
        return 2 * x

    wf = Workflow(outputs=[FunctionStep(double)])
    with Session(tmp_path / "runs.duckdb", dask=cluster.scheduler_address) as session:
        run = session.submit(wf, {"x": 21})
        assert run.wait(timeout=60) == 42
        assert run.dashboard_link == session.dashboard_link
        assert session.dashboard_link.startswith("http://") and session.dashboard_link.endswith("/status")
        rows = session.sql("SELECT step, state FROM steps WHERE run_id = ?", [run.id]).fetchall()
        assert rows == [("double", "SUCCEEDED")]
        assert "dask=http://" in repr(session)
    with Session(tmp_path / "runs.duckdb", workers=0) as again:  # the history outlives the session
        assert [r.state for r in again.runs()] == [Status.SUCCEEDED]
        # the workflow as shipped to the cluster is kept, so a reopened file resumes with workers
        assert again.broker.stored_definition(wf.workflow_id, wf.version) is not None


def test_session_refuses_workers_and_dask_together(cluster) -> None:
    with pytest.raises(ValueError, match=r"give workers= or dask=, not both \(workers=2"):
        Session(workers=2, dask=cluster.scheduler_address)


def test_without_distributed_the_error_says_how_to_install(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'pip install "fuseline-nb\[dask\]"'):
        Session(dask="tcp://127.0.0.1:8786")
    with pytest.raises(ImportError, match=r'DaskEngine needs dask.distributed'):
        DaskEngine(LocalBrokerClient(MemoryBroker()), [], "tcp://127.0.0.1:8786")


# -- the HTTP broker service's steps on Dask --------------------------------------------------------
def test_worker_bridge_feeds_the_service_steps_to_dask(cluster, tmp_path) -> None:
    from tests import http_workflows as flows
    from tests.helpers import local_states
    from tests.test_http_service import Service, wait_run, wait_workers

    service = Service(tmp_path)
    try:
        client = service.start_broker()
        bridge = service._spawn("worker", "tests.http_workflows:branchy", "--broker", service.url,
                                "--dask", cluster.scheduler_address, "--poll-wait", "1", "--grace", "10",
                                "--name", "on-dask", log="bridge.log")
        wait_workers(client, 1)
        assert [w.name for w in client.list_workers()] == ["on-dask"]
        info = wait_run(client, client.dispatch_workflow(flows.branchy.to_schema(), {"n": 50}))
        assert {n: s.state for n, s in info.steps.items()} == local_states(flows.branchy, {"n": 50})
        assert info.steps["Big"].result == 5000
        assert info.steps["Explode"].error == "ValueError: cannot handle 5000"
        assert "dashboard http://" in service.log("bridge.log")
        assert service.stop(bridge) == 0  # SIGTERM: it leaves the broker and exits 0
        assert client.list_workers() == []
    finally:
        service.close()


# -- a real kernel: steps defined in notebook cells run on Dask ---------------------------------------
NOTEBOOK_DEFINE = '''
import json, os
import fuseline_nb as fl

class Scale(fl.Step):                 # defined in __main__: only cloudpickle can ship it
    factor = 3
    def run_step(self, x: int) -> dict:
        return {{"value": x * self.factor, "pid": os.getpid()}}

def label(scaled: dict = fl.Depends(Scale)) -> str:
    return f"{{scaled['value']}} from pid {{scaled['pid']}}"

wf = fl.Workflow(outputs=[Scale(), fl.FunctionStep(label)], workflow_id="nb-on-dask")
session = fl.Session({path!r}, dask={address!r})
'''

NOTEBOOK_RUN = '''
run = session.submit(wf, {"x": 14})
scaled, text = run.wait(timeout=60)
print(json.dumps({"value": scaled["value"], "pid": scaled["pid"], "kernel": os.getpid(), "text": text,
                  "link": run.dashboard_link, "rows": session.sql("SELECT count(*) FROM steps").fetchall()[0][0]}))
'''

NOTEBOOK_EDIT = '''
class Scale(fl.Step):                 # the cell edited and run again: the new code must run
    def run_step(self, x: int) -> dict:
        return {"value": x * 10, "pid": os.getpid()}

print(json.dumps(session.submit(fl.Workflow(outputs=[Scale()], workflow_id="nb-on-dask-2"), {"x": 4})
                 .wait(timeout=60)["value"]))
session.close()
'''


def test_steps_defined_in_notebook_cells_run_on_dask(cluster, tmp_path) -> None:
    import json

    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    define = NOTEBOOK_DEFINE.format(path=str(tmp_path / "runs.duckdb"), address=cluster.scheduler_address)
    nb = new_notebook(cells=[new_code_cell(define), new_code_cell(NOTEBOOK_RUN), new_code_cell(NOTEBOOK_EDIT)])
    NotebookClient(nb, kernel_name="python3", timeout=180,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.validate(nb)

    def stdout(cell: Any) -> str:
        return "".join(o.get("text", "") for o in cell["outputs"] if o.get("output_type") == "stream")

    got = json.loads(stdout(nb.cells[1]).strip().splitlines()[-1])
    dask_pids = set(distributed.Client(cluster).run(os.getpid).values())
    assert got["value"] == 42 and got["text"] == f"42 from pid {got['pid']}"
    assert got["pid"] != got["kernel"] and got["pid"] in dask_pids
    assert got["link"].startswith("http://") and got["rows"] == 2
    assert json.loads(stdout(nb.cells[2]).strip().splitlines()[-1]) == 40


def test_cancel_through_the_service_stops_the_task_on_dask(cluster, tmp_path) -> None:
    from tests import dask_workflows
    from tests.test_http_service import Service, wait_run, wait_workers

    service = Service(tmp_path)
    try:
        client = service.start_broker()
        service._spawn("worker", "tests.dask_workflows:spinning", "--broker", service.url,
                       "--dask", cluster.scheduler_address, "--poll-wait", "1", log="bridge.log")
        wait_workers(client, 1)
        run_id = client.dispatch_workflow(dask_workflows.spinning.to_schema(), {"marks": str(tmp_path)})
        pid = wait_for(lambda: _started(tmp_path), what="the step to start")[0]
        assert client.cancel_run(run_id) is True
        # the bridge hears it at its next keep-alive and interrupts the step on its Dask worker
        wait_for(lambda: (tmp_path / f"stopped-{pid}").exists(), 15, "the step to be stopped")
        assert wait_run(client, run_id).state is Status.CANCELLED
        assert not (tmp_path / "release").exists()
    finally:
        service.close()


def test_a_run_on_dask_displays_a_link_to_the_dashboard(cluster) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    had_shell = InteractiveShell.initialized()
    main = sys.modules["__main__"]
    InteractiveShell.instance()  # display() needs a shell to publish to (it makes its own __main__)
    try:
        with Session(None, dask=cluster.scheduler_address) as session:
            run = session.submit(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]))
            run.wait(timeout=60)
            with capture_output() as shown:
                run._ipython_display_()
            link = session.dashboard_link
    finally:
        if not had_shell:
            InteractiveShell.clear_instance()
            sys.modules["__main__"] = main  # clear_instance leaves the shell's module there: later tests read __main__
    html = [o.data.get("text/html", "") for o in shown.outputs]
    assert f'<a href="{link}" target="_blank">Dask dashboard</a>' in html[0]
