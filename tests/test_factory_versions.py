"""One structure, two codes, one id: a run keeps the code it started with (real worker processes).

Two pipelines built by one factory function (``make(1)``, ``make(2)``) have the same step names and
edges, so one derived workflow id. Before, they also shared the version ``"1"``: submitting the second
while a run of the first was going made the worker processes take its code in the first's place, also
for that run (run 1 returned ``make(2)``'s results), with only a warning, and the cache stored nothing
for the overtaken run. The same happened to a cell edited and submitted again while its previous run was
still going. Now a definition built without ``version=`` whose code differs from the one registered
under its id gets a version of its own while runs of that one are still going; each run's steps load the
definition they were submitted with, on the workers, in the cache and after a kernel crash.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fuseline_nb as fl
from tests.cells import Cells, notebook

pytestmark = pytest.mark.slow


def make(k: int) -> fl.Workflow:
    """A factory: the same step names and edges for every ``k``; ``load`` waits for its gate file."""

    def load(x: int, gate: str, started: str) -> int:
        open(started, "w").close()
        while not os.path.exists(gate):
            time.sleep(0.005)
        return x * k

    def after(v: int = fl.Depends(load)) -> tuple[int, int]:
        return (v, k)

    return fl.Workflow(outputs=[fl.FunctionStep(after)])


def wait_for(path: Path, timeout: float = 60.0) -> None:
    """Until ``path`` exists (a step wrote it): the event the test waits for."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} was never written"
        time.sleep(0.005)


def inputs(tmp: Path, name: str, x: int = 10) -> dict[str, Any]:
    return {"x": x, "gate": str(tmp / f"{name}.go"), "started": str(tmp / f"{name}.started")}


@pytest.mark.parametrize("cache", [False, True])
def test_two_pipelines_of_one_factory_run_side_by_side_each_with_its_own_code(tmp_path: Path, cache: bool) -> None:
    one, two = make(1), make(2)
    assert one.workflow_id == two.workflow_id  # one structure: one derived id
    with fl.Session(tmp_path / "h.duckdb", workers=2, cache=cache) as session, \
            warnings.catch_warnings():
        warnings.simplefilter("error")  # no "still going" warning: nothing is overtaken any more
        first = session.submit(one, inputs(tmp_path, "a"))
        wait_for(tmp_path / "a.started")  # the first run's load is running on a worker
        second = session.submit(two, inputs(tmp_path, "b"))
        wait_for(tmp_path / "b.started")  # both loads at once, on the two workers
        (tmp_path / "b.go").touch()
        assert second.wait(timeout=60) == (20, 2)
        (tmp_path / "a.go").touch()
        assert first.wait(timeout=60) == (10, 1)
        versions = dict(session.sql("SELECT run_id, version FROM runs").fetchall())
        assert versions[first.id] == "1" and versions[second.id].startswith("auto-"), versions
        assert two.version == versions[second.id]
        # each version's definition is in the history: the workflows view names the code each run ran
        fps = dict(session.sql("SELECT version, schema_json FROM workflows WHERE workflow_id = ?",
                               [one.workflow_id]).fetchall())
        assert set(fps) == {"1", two.version}
        if cache:  # both runs stored their results, each under its own code's keys
            again = [session.submit(wf, inputs(tmp_path, name)) for wf, name in ((one, "a"), (two, "b"))]
            assert [r.wait(timeout=60) for r in again] == [(10, 1), (20, 2)]
            assert [sorted(s.cached for s in r.info().steps.values()) for r in again] == [[True, True]] * 2


EDIT_CELL = """
    import os, time
    BONUS = {bonus}
    def load(x, gate, started):
        open(started, "w").close()
        while not os.path.exists(gate):
            time.sleep(0.005)
        return x
    def after(v=fl.Depends(load)):
        return v + BONUS
    wf = fl.Workflow(outputs=[fl.FunctionStep(after)])
"""


@pytest.fixture
def cells() -> Iterator[Cells]:
    with notebook("import fuseline_nb as fl\n") as c:
        yield c


@pytest.mark.parametrize("edit", ["cell run again", "global edited, same object"])
@pytest.mark.parametrize("history", ["memory", "duckdb"])
def test_a_run_parked_on_a_slow_step_finishes_with_its_old_code_after_the_cell_is_edited(
        cells: Cells, tmp_path: Path, edit: str, history: str) -> None:
    cells.run(EDIT_CELL.format(bonus=1))
    path = None if history == "memory" else tmp_path / "h.duckdb"
    with fl.Session(path, workers=2, cache=True) as session, warnings.catch_warnings():
        warnings.simplefilter("error")
        first = session.submit(cells["wf"], inputs(tmp_path, "a"))
        wait_for(tmp_path / "a.started")  # parked in its slow step
        if edit == "cell run again":
            cells.run(EDIT_CELL.format(bonus=100))
        else:
            cells.run("BONUS = 100")
        second = session.submit(cells["wf"], inputs(tmp_path, "b"))
        (tmp_path / "b.go").touch()
        assert second.wait(timeout=60) == 110
        (tmp_path / "a.go").touch()
        assert first.wait(timeout=60) == 11  # the code it was submitted with
        assert first.info().version == "1" and second.info().version.startswith("auto-")
        # no run is going now: the next edit takes version "1" again (an idle definition is replaced)
        cells.run(EDIT_CELL.format(bonus=1000) if edit == "cell run again" else "BONUS = 1000")
        third = session.submit(cells["wf"], inputs(tmp_path, "b"))
        assert third.wait(timeout=60) == 1010 and third.info().version == "1"
        # the first run's cached results are its own: the old code again is served them
        cells.run(EDIT_CELL.format(bonus=1) if edit == "cell run again" else "BONUS = 1")
        fourth = session.submit(cells["wf"], inputs(tmp_path, "a"))
        assert fourth.wait(timeout=60) == 11
        assert all(s.cached for s in fourth.info().steps.values())


def test_an_explicit_version_still_says_its_runs_are_overtaken(tmp_path: Path) -> None:
    # With version= the user names the definition: the same structure with other code takes the
    # version's place (as before), the warning says so and names the way out.
    def build(k: int) -> fl.Workflow:
        wf = make(k)
        return fl.Workflow(outputs=wf.outputs, workflow_id="factory-explicit", version="3")

    with fl.Session(None, workers=2) as session:
        first = session.submit(build(1), inputs(tmp_path, "a"))
        wait_for(tmp_path / "a.started")
        with pytest.warns(UserWarning, match=(
                rf"run\(s\) {first.id} of workflow 'factory-explicit' version '3' are still going: .* other code "
                r".*version=.*leave version= out")):
            second = session.submit(build(2), inputs(tmp_path, "b"))
        (tmp_path / "a.go").touch()
        (tmp_path / "b.go").touch()
        first.wait(timeout=60)
        assert second.wait(timeout=60) == (20, 2)


KERNEL_CELL = """
BONUS = {bonus}
def load(x, gate, started):
    open(started, "w").close()
    while not os.path.exists(gate):
        time.sleep(0.005)
    return x
def after(v=fl.Depends(load)):
    return v + BONUS
wf = fl.Workflow(outputs=[fl.FunctionStep(after)])
"""

KERNEL_FIRST = """
session = fl.Session("k.duckdb", workers=1)
first = session.submit(wf, {"x": 10, "gate": "a.go", "started": "a.started"})
while not os.path.exists("a.started"):
    time.sleep(0.005)
"""

KERNEL_SECOND = """
second = session.submit(wf, {"x": 10, "gate": "b.go", "started": "b.started"})
while session.sql("select count(*) from runs where run_id = ?", [second.id]).fetchall() != [(1,)]:
    time.sleep(0.01)
print(json.dumps([first.id, second.id, second.info().version]))
"""

KERNEL_REOPEN = """
with warnings.catch_warnings(record=True) as said:
    session = fl.Session("k.duckdb", workers=1)
open("a.go", "w").close(); open("b.go", "w").close()
deadline = time.monotonic() + 90
while any(session.broker.get_run(r).state is fl.Status.RUNNING for r in RUNS) and time.monotonic() < deadline:
    time.sleep(0.05)
infos = [session.broker.get_run(r) for r in RUNS]
print(json.dumps({"states": [i.state.value for i in infos], "results": [i.steps["after"].result for i in infos],
                  "versions": [i.version for i in infos], "said": [str(w.message) for w in said]}))
session.close()
"""


def test_two_definitions_of_one_id_resume_each_with_its_own_code_after_the_kernel_was_killed(
        tmp_path: Path) -> None:
    from tests.test_audit6_kernel import SETUP, Kernel

    first = Kernel(tmp_path)
    try:
        first.run(SETUP)
        first.run(KERNEL_CELL.format(bonus=1))
        first.run(KERNEL_FIRST)  # its load parked on the only worker
        first.run(KERNEL_CELL.format(bonus=100))  # the cell edited and run again
        run_ids = first.last_json(KERNEL_SECOND)
    finally:
        first.kill()  # SIGKILL: no close, no flush
    assert run_ids[2].startswith("auto-")
    second = Kernel(tmp_path)
    try:
        second.run(SETUP)  # a fresh kernel: the cells are not run again, the file has the definitions
        result = second.last_json(f"RUNS = {run_ids[:2]!r}\n" + KERNEL_REOPEN, timeout=150)
    finally:
        second.kill()
    assert result == {"states": ["SUCCEEDED", "SUCCEEDED"], "results": [11, 110],
                      "versions": ["1", run_ids[2]], "said": []}


def test_two_pipelines_of_one_factory_run_side_by_side_on_dask(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=":0") as cluster, \
            fl.Session(tmp_path / "h.duckdb", dask=cluster.scheduler_address, cache=True) as session, \
            warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        first = session.submit(make(1), inputs(tmp_path, "a"))
        wait_for(tmp_path / "a.started")  # the first run's load is running on a Dask worker
        second = session.submit(make(2), inputs(tmp_path, "b"))
        wait_for(tmp_path / "b.started")
        (tmp_path / "b.go").touch()
        (tmp_path / "a.go").touch()
        assert [first.wait(timeout=60), second.wait(timeout=60)] == [(10, 1), (20, 2)]
        assert first.info().version == "1" and second.info().version.startswith("auto-")


def test_versions_no_run_needs_are_let_go_and_shipped_again_when_submitted(tmp_path: Path) -> None:
    # Five pipelines of one factory submitted one after the other while a long run of the first goes:
    # five versions of their own. The pool keeps the bytes and definitions of those a run still needs
    # (and the one just submitted); the others are let go (a memory session kept every one, and sent
    # each to every new process).
    import signal

    with fl.Session(None, workers=2) as session:
        pool = session.pool
        first = session.submit(make(1), inputs(tmp_path, "a"))
        wait_for(tmp_path / "a.started")
        (tmp_path / "b.go").touch()
        built = [make(k) for k in range(2, 7)]
        for k, wf in enumerate(built, start=2):
            assert session.submit(wf, inputs(tmp_path, "b")).wait(timeout=60) == (10 * k, k)
        deadline = time.monotonic() + 30
        while pool._retiring and time.monotonic() < deadline:  # the serving thread lets them go
            time.sleep(0.01)
        kept = sorted(version for (wid, version), _ in pool.workflow_blobs() if wid == first.info().workflow_id)
        assert kept == sorted({"1", built[-1].version}), kept
        (tmp_path / "a.go").touch()
        assert first.wait(timeout=60) == (10, 1)
        # an earlier definition submitted again keeps its version and is shipped again
        again = session.submit(built[1], inputs(tmp_path, "b"))
        assert again.wait(timeout=60) == (30, 3) and again.info().version == built[1].version
        # a new process is sent what runs need, and runs them
        os.kill(pool.pids()[0], signal.SIGKILL)
        assert session.submit(built[-1], inputs(tmp_path, "b")).wait(timeout=60) == (60, 6)
        assert session.submit(built[1], inputs(tmp_path, "b")).wait(timeout=60) == (30, 3)


def test_an_edited_workflow_run_in_process_with_a_session_s_cache_runs_its_new_code_everywhere(
        cells: Cells) -> None:
    # wf.run(inputs, cache=session) runs in the kernel through the session's broker, whose worker
    # processes take some of its steps too. Before, after an edit they ran the copy they held (the old
    # code) under the new code's cache keys: K = 2 gave [10, 20] (some steps old), and cached it.
    cells.run("""
        K = 1
        def f(x):
            return x * K
        wf = fl.Workflow(outputs=[fl.FunctionStep(f, name=f"f{i}") for i in range(30)], workflow_id="inproc")
    """)
    with fl.Session(None, workers=2, cache=True) as session:
        assert set(session.submit(cells["wf"], {"x": 10}).wait(timeout=60)) == {10}
        for k in (2, 3):
            cells.run(f"K = {k}")
            assert set(cells["wf"].run({"x": 10}, cache=session)) == {10 * k}
            assert set(session.submit(cells["wf"], {"x": 10}).wait(timeout=60)) == {10 * k}  # its cache: right
