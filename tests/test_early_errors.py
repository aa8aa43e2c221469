"""Building and starting runs: clear errors, early (issue 13).

Each test quotes the message a user reads. Missing inputs are refused before
a run exists, on every way in: ``wf.run``, ``Session.submit``, a broker's
``dispatch_workflow`` (memory, DuckDB, the HTTP service).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import httpx
import pytest

import fuseline_nb as fl
from fuseline_nb import Depends, FunctionStep, MissingInputError, Status, Step, Workflow, WorkflowPolicy
from fuseline_nb.broker import DuckDBBroker, MemoryBroker
from fuseline_nb.broker.http import create_app
from fuseline_nb.errors import DependencyError, DuplicateStepNameError, StorageError
from fuseline_nb.workflow.wiring import sources


# -- naming ---------------------------------------------------------------------------------
def test_two_lambdas_are_numbered_like_step_classes():
    a = FunctionStep(lambda: 1)
    b = FunctionStep(lambda v=Depends(a): v + 1)
    wf = Workflow(outputs=[b])
    assert wf.step_names == ["lambda", "lambda_2"]
    assert wf.run() == 2


def test_two_functions_with_one_name_are_numbered():
    def f() -> int:
        return 1

    first = FunctionStep(f)

    def f(v: int = Depends(first)) -> int:  # a notebook cell redefines the name
        return v + 10

    wf = Workflow(outputs=[FunctionStep(f)])
    assert wf.step_names == ["f", "f_2"]
    assert wf.run() == 11


def test_explicit_names_still_must_be_unique_and_win_over_derived_ones():
    a, b = FunctionStep(lambda: 1, name="x"), FunctionStep(lambda: 2, name="x")
    a >> b
    with pytest.raises(DuplicateStepNameError, match="two steps are named 'x': step names must be unique"):
        Workflow(outputs=[b])

    def lam() -> int:
        return 1

    named, derived = FunctionStep(lambda: 0, name="lam"), FunctionStep(lam)
    named >> derived
    assert Workflow(outputs=[derived]).step_names == ["lam", "lam_2"]


def test_many_unnamed_steps_number_in_linear_time():
    head = FunctionStep(lambda: 0)
    for _ in range(3000):
        head >> FunctionStep(lambda v=None: v)
    wf = Workflow(outputs=[head])
    assert wf.step_names[:3] == ["lambda", "lambda_2", "lambda_3"] and wf.step_names[-1] == "lambda_3001"


def test_a_repeated_edge_is_kept_once():
    a, b = FunctionStep(lambda: 1, name="a"), FunctionStep(lambda: 2, name="b")
    for _ in range(3):
        a >> b
    (a - "go") >> b
    assert [(t.name, act) for t, act, _ in a.edges] == [("b", "default"), ("b", "go")]
    assert sources(b) == [a]


def test_depends_on_a_non_step_names_the_step_and_the_parameter():
    def total(v: int = Depends(42)) -> int:  # type: ignore[arg-type]
        return v

    with pytest.raises(DependencyError, match=r"^step 'total' \(function .*total\) parameter 'v': Depends\(\) "
                                              r"takes steps, Step classes or functions, not 42$"):
        Workflow(outputs=[FunctionStep(total)])

    class Sum(Step):
        def run_step(self, v: int = Depends(42)) -> int:  # type: ignore[arg-type]
            return v

    with pytest.raises(DependencyError, match=r"^step 'Sum' \(Sum.run_step\) parameter 'v'"):
        Workflow(outputs=[Sum()])


# -- policies --------------------------------------------------------------------------------
class Seen(WorkflowPolicy):
    def __init__(self) -> None:
        self.succeeded: list[tuple[str, object]] = []

    def on_step_success(self, workflow, step, result) -> None:
        self.succeeded.append((step.name, result))


@pytest.mark.parametrize("engine", [None, fl.PoolEngine(2)])
def test_workflow_policy_on_step_success_is_called_with_each_result(engine):
    def one() -> int:
        return 1

    def boom(v: int = Depends(one)) -> int:
        raise ValueError("no")

    policy = Seen()
    wf = fl.workflow_from_functions([boom], policies=[policy])
    wf.run(execution_engine=engine)
    assert policy.succeeded == [("one", 1)]  # not for the failed step


def test_async_run_calls_on_step_success_too():
    async def two() -> int:
        return 2

    policy = Seen()
    wf = fl.AsyncWorkflow(outputs=[FunctionStep(two)], policies=[policy])
    assert asyncio.run(wf.run_async()) == 2
    assert policy.succeeded == [("two", 2)]


# -- run arguments ----------------------------------------------------------------------------
def _needs_inputs() -> Workflow:
    def load(path: str, limit: int = 10) -> list[str]:
        return [path] * limit

    def join(rows: list[str] = Depends(load), sep: str = ",") -> str:  # sep has a default
        return sep.join(rows)

    def tag(text: str = Depends(join), *, label: str, path: str) -> str:
        return f"{label}:{path}:{text}"

    return fl.workflow_from_functions([tag])


MISSING = (r"^missing run inputs: 'path' \(needed by steps 'load', 'tag'\), 'label' \(needed by step 'tag'\): "
           r"pass them in the run's inputs, e\.g\. wf\.run\(\{'path': \.\.\., 'label': \.\.\.\}\)$")


def test_wf_run_refuses_missing_inputs_before_anything_runs_naming_all_of_them():
    wf = _needs_inputs()
    with pytest.raises(MissingInputError, match=MISSING) as info:
        wf.run({})
    assert info.value.missing == {"path": ["load", "tag"], "label": ["tag"]}
    assert wf.last_run is None and wf.state is Status.PENDING
    assert wf.run({"path": "p", "label": "L", "limit": 2}) == "L:p:p,p"  # limit and sep have defaults


def test_wf_run_with_a_non_engine_or_non_dict_says_what_to_pass():
    wf = _needs_inputs()
    with pytest.raises(TypeError, match=r"^execution_engine must be an engine such as PoolEngine\(4\), not 4 "
                                        r"\(int\): wf.run\(inputs, PoolEngine\(4\)\) runs up to 4 steps"):
        wf.run({"x": 1}, 4)
    with pytest.raises(TypeError, match=r"^run inputs must be a dict of input names to values, not int 5: "
                                        r"e\.g\. wf\.run\(\{'x': 5\}\)$"):
        wf.run(5)


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_dispatch_workflow_refuses_missing_inputs_and_no_run_is_created(kind, tmp_path):
    broker = MemoryBroker() if kind == "memory" else DuckDBBroker(tmp_path / "h.duckdb")
    try:
        with pytest.raises(MissingInputError, match=MISSING):
            broker.dispatch_workflow(_needs_inputs().to_schema(), {})
        assert broker.list_runs() == []
        assert isinstance(broker.dispatch_workflow(_needs_inputs(), {"path": "p", "label": "L"}), str)
    finally:
        broker.close()


def test_the_http_service_refuses_missing_inputs_with_422_naming_them():
    broker = MemoryBroker()
    app = create_app(broker, token="t" * 20)

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as c:
            body = {"v": 2, "workflow": _needs_inputs().to_schema().to_dict(), "inputs": {}}
            return await c.post("/workflow/dispatch", json=body, headers={"Authorization": "Bearer " + "t" * 20})

    try:
        resp = asyncio.run(post())
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"] == "missing_input"
        assert "missing run inputs: 'path' (needed by steps 'load', 'tag')" in resp.json()["detail"]
        assert broker.list_runs() == []
    finally:
        broker.close()


def test_session_submit_refuses_missing_inputs_and_plain_functions(tmp_path):
    with fl.Session(tmp_path / "h.duckdb", workers=0) as session:
        with pytest.raises(MissingInputError, match=MISSING):
            session.submit(_needs_inputs(), {})
        assert session.runs() == []

        def double(x: int) -> int:
            return 2 * x

        with pytest.raises(TypeError, match=r"^Session.submit takes a Workflow, not the function .*double.*: "
                                            r"wrap it first, e\.g\. session\.submit\("
                                            r"workflow_from_functions\(\[double\]\), inputs\)$"):
            session.submit(double, {"x": 1})


def test_missing_input_error_survives_pickling_with_every_input():
    import pickle

    err = pickle.loads(pickle.dumps(MissingInputError.of({"a": ["s1", "s2"], "b": ["s2"]})))
    assert err.missing == {"a": ["s1", "s2"], "b": ["s2"]}
    assert str(err).startswith("missing run inputs: 'a' (needed by steps 's1', 's2')")


# -- session -----------------------------------------------------------------------------------
def test_sql_on_an_unknown_table_lists_the_views(tmp_path):
    with fl.Session(tmp_path / "h.duckdb", workers=0) as session:
        with pytest.raises(StorageError, match=r"no view named 'nope' in the run history '.*h\.duckdb': "
                                               r"the views are workflows, runs, steps, events"):
            session.sql("select * from nope")


SCRIPT = """
import fuseline_nb as fl

def f(x):
    return x + 1

{start}
"""


def _run_script(tmp_path, start: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "job.py"
    path.write_text(SCRIPT.format(start=textwrap.dedent(start)))
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)


def test_a_script_without_a_main_guard_fails_once_at_session_saying_what_to_add(tmp_path):
    out = _run_script(tmp_path, """
        session = fl.Session(None, workers=2)
        print(session.submit(fl.workflow_from_functions([f]), {"x": 1}).wait())
    """)
    assert out.returncode == 1
    assert out.stderr.count("Traceback") == 1, out.stderr  # one error, no traceback per worker
    assert "RuntimeError: Session(...) starts worker processes, and job.py does so at its top level (line 8)" \
        in out.stderr
    assert 'if __name__ == "__main__":' in out.stderr
    assert "bootstrapping phase" not in out.stderr


def test_a_guarded_script_runs_on_workers(tmp_path):
    out = _run_script(tmp_path, """
        if __name__ == "__main__":
            with fl.Session(None, workers=1) as session:
                print(session.submit(fl.workflow_from_functions([f]), {"x": 1}).wait())
    """)
    assert (out.returncode, out.stdout.strip()) == (0, "2"), out.stderr


def test_policies_are_attached_to_their_step_and_workflow():
    from fuseline_nb import StepPolicy

    seen: list[tuple[str, object]] = []

    class OnStep(StepPolicy):
        def attach_to_step(self, step) -> None:
            seen.append(("step", step))

    class OnWorkflow(WorkflowPolicy):
        def attach_to_workflow(self, workflow) -> None:
            seen.append(("workflow", workflow))

    step = FunctionStep(lambda: 1, policies=[OnStep()])
    wf = Workflow(outputs=[step], policies=[OnWorkflow()])
    assert seen == [("step", step), ("workflow", wf)]


def test_wiring_and_building_leave_a_steps_fingerprint_alone():
    from fuseline_nb.workflow.fingerprint import step_fingerprint

    def load() -> int:
        return 1

    def use(v: int = Depends(load)) -> int:
        return v

    a, b = FunctionStep(load), FunctionStep(use)
    before = step_fingerprint(a), step_fingerprint(b)
    a >> b  # the caches wiring and building keep on a step are not part of its code or data
    Workflow(outputs=[b])
    assert (step_fingerprint(a), step_fingerprint(b)) == before


def test_a_workflow_built_again_unchanged_is_not_shipped_again_but_a_changed_one_is(tmp_path):
    def build(k: int) -> Workflow:
        def add(x: int) -> int:
            return x + k

        return fl.workflow_from_functions([add], workflow_id="again")

    with fl.Session(None, workers=1) as session:
        assert session.submit(build(1), {"x": 1}).wait(timeout=60) == 2
        blobs = len(session.pool.workflow_blobs())
        assert session.submit(build(1), {"x": 2}).wait(timeout=60) == 3  # a cell run again
        assert len(session.pool.workflow_blobs()) == blobs
        assert session.submit(build(5), {"x": 2}).wait(timeout=60) == 7  # its closure changed
        assert len(session.pool.workflow_blobs()) == blobs + 1
