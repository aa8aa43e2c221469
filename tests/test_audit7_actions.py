"""Audit (session 7): a branching step returning a str subclass — a ``StrEnum`` member of the notebook.

``class Choice(enum.StrEnum)`` in a cell and a step returning ``Choice.Y`` to pick the ``"y"`` edge
is a natural way to name branches. Before: the in-process run took the edge, but a pool worker put
the enum member itself in its report as the action, could not pickle it (its class lives in the
notebook's ``__main__``), died, and after three deaths the step FAILED with a misleading
"worker process died 3 times"; on Dask the action was lost and the *default* edge was taken without
a word.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import fuseline_nb as fl
from tests.cells import Cells, notebook

BRANCH = """
    import enum

    class Choice(enum.StrEnum):
        X = "x"
        Y = "y"

    def gate():
        return Choice.Y

    def on_x():
        return "X"

    def on_y():
        return "Y"

    def otherwise():
        return "D"

    g = fl.FunctionStep(gate)
    x, y, d = fl.FunctionStep(on_x), fl.FunctionStep(on_y), fl.FunctionStep(otherwise)
    (g - "x") >> x
    (g - "y") >> y
    g >> d
    wf = fl.Workflow(outputs=[x, y, d], workflow_id="audit7-strenum")
"""

WANT = {"gate": "SUCCEEDED", "on_x": "SKIPPED", "on_y": "SUCCEEDED", "otherwise": "SKIPPED"}


@pytest.fixture
def cells() -> Iterator[Cells]:
    with notebook("import fuseline_nb as fl\n") as c:
        c.run(BRANCH)
        yield c


def _states(info) -> dict[str, str]:
    return {n: s.state.name for n, s in info.steps.items()}


def test_an_enum_result_selects_its_edge_in_process_and_the_action_is_a_plain_str(cells: Cells) -> None:
    wf = cells["wf"]
    assert wf.run({}) == [None, "Y", None]
    action = wf.last_run.steps["gate"].action
    assert (action, type(action)) == ("y", str)
    assert _states(wf.last_run) == WANT


@pytest.mark.slow
def test_an_enum_result_of_a_notebook_class_selects_its_edge_on_worker_processes(cells: Cells, tmp_path) -> None:
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        run = session.submit(cells["wf"], {})
        assert run.wait(timeout=60) == [None, "Y", None]
        info = run.info()
        assert _states(info) == WANT and info.steps["gate"].attempts == 1
        assert session.sql("SELECT action, result_preview FROM steps WHERE run_id = ? AND step = 'gate'",
                           [run.id]).fetchall() == [("y", "<Choice.Y: 'y'>")]


@pytest.mark.slow
def test_an_enum_result_selects_its_edge_on_dask(cells: Cells) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        with fl.Session(dask=client) as session:
            run = session.submit(cells["wf"], {})
            assert run.wait(timeout=60) == [None, "Y", None]
            assert _states(run.info()) == WANT
            assert run.info().steps["gate"].action == "y"


GATED = """
    import enum

    class Level(enum.IntEnum):
        LOW = 1
        HIGH = 2

    def level():
        return Level.HIGH

    def alarm(v=fl.Depends(level, condition=lambda v: v >= Level.HIGH)):
        return f"alarm at {int(v)}"

    gated = fl.Workflow(outputs=[fl.FunctionStep(alarm)], workflow_id="audit7-intenum-condition")
"""


@pytest.mark.slow
def test_a_condition_checked_on_an_enum_of_the_notebook_reaches_the_broker(cells: Cells, tmp_path) -> None:
    # Before: the report carried the checked IntEnum member itself; the worker could not pickle it, died
    # three times, and the step FAILED with "worker process died 3 times".
    cells.run(GATED)
    assert cells["gated"].run({}) == "alarm at 2"
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        run = session.submit(cells["gated"], {})
        assert run.wait(timeout=60) == "alarm at 2"
        assert run.info().steps["alarm"].attempts == 1
