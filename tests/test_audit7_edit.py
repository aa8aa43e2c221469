"""Audit (session 7): the edit loop with the same workflow object submitted again, with real worker processes.

A notebook user builds ``wf`` once and then only edits what its steps read — a global rebound, a global
dict changed in place, a helper function redefined, an attribute of a step object set — and submits the
*same* ``wf`` again. Each submit must run what the notebook now says (and the cache must not serve the
result of the code before), however submit shortcuts an "unchanged" workflow.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import fuseline_nb as fl
from tests.cells import Cells, notebook


@pytest.fixture
def cells() -> Iterator[Cells]:
    with notebook("import fuseline_nb as fl\n") as c:
        yield c


BUILD = """
    K = 1
    CONF = {'k': 1}
    def helper(x):
        return x * 1
    def f(x):
        return x * K * CONF['k'] * helper(1)
    class S(fl.Step):
        k = 1
        def run_step(self, v=fl.Depends(f)):
            return v * self.k
    s = S(name='s')
    wf = fl.Workflow(outputs=[s], workflow_id='audit7-same-object')
"""

#: An edit of what the steps read, never of ``wf`` itself: (the cell, the factor it gives).
EDITS = [
    ("K = 2", 2), ("K = 3", 3), ("K = 3", 3),
    ("CONF['k'] = 5", 15), ("CONF['k'] = 5", 15), ("CONF['k'] = 1", 3),
    ("def helper(x):\n    return x * 7", 21), ("def helper(x):\n    return x * 1", 3),
    ("s.k = 4", 12), ("s.k = 1", 3), ("K = 1", 1),
]


@pytest.mark.slow
@pytest.mark.parametrize("cache", [True, False])
def test_the_same_workflow_object_submitted_after_each_edit_runs_what_the_notebook_says(
        cells: Cells, tmp_path, cache: bool) -> None:
    cells.run(BUILD)
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=cache) as session:
        assert session.submit(cells["wf"], {"x": 10}).wait(timeout=60) == 10
        for edit, factor in EDITS:
            cells.run(edit)
            got = session.submit(cells["wf"], {"x": 10}).wait(timeout=60)
            assert (edit, got) == (edit, 10 * factor)
            assert (edit, cells["wf"].run({"x": 10})) == (edit, 10 * factor)
