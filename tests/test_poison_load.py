"""A workflow the worker processes cannot load ends its own runs, not the session's pool.

A notebook object whose ``__reduce__`` names a ``__main__`` attribute pickles by
reference; a worker process (whose ``__main__`` is not the notebook's) cannot
load the workflow holding it. Before: the pool kept the bad bytes for every new
process and a sticky error, so every later submit of any workflow raised
"workflow 'bad' … cannot be loaded" until a new Session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import fuseline_nb as fl
from fuseline_nb.errors import StepFailedError
from tests.cells import Cells, notebook

UNLOADABLE = """
    class Token:
        def __reduce__(self):
            return "TOKEN"          # pickled as the global __main__.TOKEN: a worker has none
    TOKEN = Token()
    def use(token=TOKEN):
        return 1
    bad = fl.Workflow(outputs=[fl.FunctionStep(use, name='use'),
                               fl.FunctionStep(lambda: 2, name='other')], workflow_id='poison-bad')
    good = fl.Workflow(outputs=[fl.FunctionStep(lambda x: x + 1, name='inc')], workflow_id='poison-good')
"""


@pytest.fixture
def cells() -> Iterator[Cells]:
    with notebook("import fuseline_nb as fl\n") as c:
        yield c


@pytest.mark.slow
@pytest.mark.parametrize(("history", "workers"), [(None, 1), ("h.duckdb", 2)])
def test_a_workflow_the_workers_cannot_load_fails_its_run_and_the_session_goes_on(
        cells: Cells, tmp_path, history, workers) -> None:
    cells.run(UNLOADABLE)
    path = None if history is None else tmp_path / history
    with fl.Session(path, workers=workers) as session:
        assert session.submit(cells["good"], {"x": 1}).wait(timeout=60) == 2  # a worker with good loaded
        run = session.submit(cells["bad"])
        with pytest.raises(StepFailedError, match=r"(?s)workflow 'poison-bad' version .* cannot be loaded in "
                           r"a worker process \(AttributeError: .*TOKEN.*\).*defined in the notebook"):
            run.wait(timeout=60, raise_on_failure=True)
        info = run.info()
        assert info.state is fl.Status.FAILED
        assert {s.state for s in info.steps.values()} == {fl.Status.FAILED}
        assert session.pool.error is None
        # the same session, the same pool: a good workflow runs, on a process that was not sent the bad bytes
        for x in (5, 7):
            assert session.submit(cells["good"], {"x": x}).wait(timeout=60) == x + 1
        assert all(key[0] != "poison-bad" for key, _ in session.pool.workflow_blobs())
        # the bad one submitted again fails again, clearly, and the session still goes on
        with pytest.raises(StepFailedError, match=r"workflow 'poison-bad' .* cannot be loaded"):
            session.submit(cells["bad"]).wait(timeout=60, raise_on_failure=True)
        assert session.submit(cells["good"], {"x": 9}).wait(timeout=60) == 10


@pytest.mark.slow
def test_a_first_workflow_the_fresh_workers_cannot_load_leaves_them_running(cells: Cells) -> None:
    # the bad bytes reach processes at their hello (not yet registered): their ends are no start crashes
    cells.run(UNLOADABLE)
    with fl.Session(workers=2) as session:
        runs = [session.submit(cells["bad"]) for _ in range(3)]
        for run in runs:
            with pytest.raises(StepFailedError, match=r"workflow 'poison-bad' .* cannot be loaded .*TOKEN"):
                run.wait(timeout=60, raise_on_failure=True)
        assert session.submit(cells["good"], {"x": 1}).wait(timeout=60) == 2
        assert session.pool.error is None and len(session.pool.pids()) == 2


def test_a_run_submitted_as_its_workflow_failed_to_load_is_failed_by_the_next_check() -> None:
    # the race: the load error handled before the run was dispatched (its steps queued after the failing pass)
    from types import SimpleNamespace

    from fuseline_nb.broker import MemoryBroker
    from fuseline_nb.worker import WorkerPool

    broker = MemoryBroker()
    pool = WorkerPool(broker, [], processes=1)
    wf = fl.Workflow(outputs=[fl.FunctionStep(lambda: 1, name="one")], workflow_id="bad")
    pool.add_workflow(wf)
    pool.on_load_error(SimpleNamespace(label="w1"), "workflow 'bad' version '1' cannot be loaded", ("bad", "1"))
    assert pool.workflow_blobs() == [] and pool.error is None
    run_id = broker.dispatch_workflow(wf.to_schema())
    assert broker.get_run(run_id).state is fl.Status.RUNNING
    pool.check()
    info = broker.get_run(run_id)
    assert (info.state, info.steps["one"].error) == (
        fl.Status.FAILED, "WorkerError: workflow 'bad' version '1' cannot be loaded")
    pool.add_workflow(fl.Workflow(outputs=[fl.FunctionStep(lambda: 2, name="one")], workflow_id="bad"))
    live = broker.dispatch_workflow(wf.to_schema())  # shipped again: the workers try it, check leaves it
    pool.check()
    assert broker.get_run(live).state is fl.Status.RUNNING
