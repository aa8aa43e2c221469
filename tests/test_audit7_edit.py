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


#: A global object of a notebook class that is no plain object — its class's cell edited and run again,
#: then the cell making the object: (the cells with ``{k}`` the edit, what ``f(10)`` gives for k).
OBJECTS = {
    "a frozen dataclass's method": ("""
        import dataclasses
        @dataclasses.dataclass(frozen=True)
        class Cfg:
            k: int
            def scale(self, x):
                return x * self.k + {k}
        cfg = Cfg(2)
        def f(x):
            return cfg.scale(x)
    """, lambda k: 20 + k),
    "an enum member's value": ("""
        import enum
        class Color(enum.Enum):
            RED = {k}
        MODE = Color.RED
        def f(x):
            return x * MODE.value
    """, lambda k: 10 * k),
    "an enum's method": ("""
        import enum
        class Color(enum.Enum):
            RED = 1
            def weight(self):
                return {k}
        MODE = Color.RED
        def f(x):
            return x * MODE.weight()
    """, lambda k: 10 * k),
    "a namedtuple's method": ("""
        import collections
        class Pair(collections.namedtuple("Pair", "a")):
            def times(self):
                return self.a * {k}
        pair = Pair(1)
        def f(x):
            return x * pair.times()
    """, lambda k: 10 * k),
    "a float subclass's method": ("""
        class Meters(float):
            def factor(self):
                return {k}
        m = Meters(1.0)
        def f(x):
            return x * m.factor()
    """, lambda k: 10 * k),
}


@pytest.mark.slow
def test_an_edited_class_of_a_global_object_that_is_no_plain_object_runs_on_the_workers(
        cells: Cells, tmp_path) -> None:
    # Before: such an object counted by its data alone (a frozen dataclass by its fields, an enum member by
    # its name, a namedtuple by its items, a float by its value), so its class's edit changed no fingerprint:
    # the workers kept the old class and the cache served the old result (e.g. 22 for 23, 20 for 30).
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        for case, (cell, want) in OBJECTS.items():
            for k in (2, 3):
                cells.run(cell.format(k=k))
                cells.run(f"wf = fl.Workflow(outputs=[fl.FunctionStep(f, name='f')], workflow_id={case[:20]!r})")
                got = (cells["wf"].run({"x": 10}), session.submit(cells["wf"], {"x": 10}).wait(timeout=60))
                assert (case, k, got) == (case, k, (want(k), want(k)))


@pytest.mark.parametrize("case", sorted(OBJECTS))
def test_an_edited_class_of_a_global_object_that_is_no_plain_object_changes_the_fingerprint(
        cells: Cells, case: str) -> None:
    cell, _ = OBJECTS[case]
    prints = []
    for k in (2, 3, 3):
        cells.run(cell.format(k=k))
        prints.append(fl.Workflow(outputs=[fl.FunctionStep(cells["f"], name="f")]).fingerprints()["f"])
    assert prints[0] != prints[1] == prints[2]


def _pipeline(k: int, workflow_id: str | None = None) -> fl.Workflow:
    import time

    def load(x):
        time.sleep(0.3)
        return x * k

    def after(v=fl.Depends(load)):
        return (v, k)

    return fl.Workflow(outputs=[fl.FunctionStep(after)], workflow_id=workflow_id)


@pytest.mark.slow
def test_two_workflows_built_by_one_function_run_side_by_side() -> None:
    # Two pipelines from one factory have one structure, so one derived id: the second submit took the
    # first's place on the workers (its run then returned the second's results), and the warning spoke
    # of an edit. Now the second gets a version of its own while the first's run goes (factory8): both
    # right without a word, and with their own ids as before.
    import warnings

    with fl.Session(None, workers=2) as session, warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        first = session.submit(_pipeline(1), {"x": 10})
        second = session.submit(_pipeline(2), {"x": 10})
        assert [first.wait(timeout=60), second.wait(timeout=60)] == [(10, 1), (20, 2)]
        assert first.info().version == "1" and second.info().version.startswith("auto-")
        apart = [session.submit(_pipeline(k, f"audit7-pipeline-{k}"), {"x": 10}) for k in (1, 2)]
        assert [r.wait(timeout=60) for r in apart] == [(10, 1), (20, 2)]


FUNCTION_ATTRIBUTE = """
    def helper(x):
        return x * helper.factor
    helper.factor = 1
    def f(x):
        return helper(x)
    wf = fl.Workflow(outputs=[fl.FunctionStep(f, name='f')], workflow_id='audit7-function-attribute')
"""


def test_an_attribute_set_on_a_function_changes_the_fingerprint(cells: Cells) -> None:
    cells.run(FUNCTION_ATTRIBUTE)
    prints = [cells["wf"].fingerprints()["f"]]
    for k in (2, 2, 3):
        cells.run(f"helper.factor = {k}")
        prints.append(fl.Workflow(outputs=[fl.FunctionStep(cells["f"], name="f")]).fingerprints()["f"])
    assert len({prints[0], prints[1], prints[3]}) == 3 and prints[1] == prints[2]


@pytest.mark.slow
def test_an_attribute_set_on_a_function_reaches_the_workers(cells: Cells, tmp_path) -> None:
    # Before: `helper.factor = 3` in a cell was not seen (a function counted by its code, defaults and
    # closure, not its attributes): the workers kept factor 2 and the cache served 20 for 30.
    cells.run(FUNCTION_ATTRIBUTE)
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        for k in (2, 3, 2):
            cells.run(f"helper.factor = {k}")
            got = (cells["wf"].run({"x": 10}), session.submit(cells["wf"], {"x": 10}).wait(timeout=60))
            assert (k, got) == (k, (10 * k, 10 * k))


CACHED_HELPER = """
    import functools
    @functools.cache
    def helper(x):
        return x * {k}
    def f(x):
        return helper(x)
    wf = fl.Workflow(outputs=[fl.FunctionStep(f, name='f')], workflow_id='audit7-cached-helper')
"""


def test_an_edited_helper_under_functools_cache_changes_the_fingerprint(cells: Cells) -> None:
    prints = []
    for k in (2, 3, 3):
        cells.run(CACHED_HELPER.format(k=k))
        prints.append(cells["wf"].fingerprints()["f"])
    assert prints[0] != prints[1] == prints[2]


@pytest.mark.slow
def test_a_helper_under_functools_cache_runs_on_the_workers_and_its_edit_reaches_them(cells: Cells, tmp_path) -> None:
    # Before: the wrapper pickled by name (__main__.helper), so the workflow could not be loaded in a worker
    # ("cannot be loaded in a worker process (AttributeError: Can't get attribute 'helper' ...)") — and from
    # then on every submit of the session, of any workflow, raised that error; and an edit of the helper did
    # not change the fingerprint.
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        for k in (2, 3, 2):
            cells.run(CACHED_HELPER.format(k=k))
            got = (cells["wf"].run({"x": 10}), session.submit(cells["wf"], {"x": 10}).wait(timeout=60))
            assert (k, got) == (k, (10 * k, 10 * k))


VECTORIZED = """
    import numpy as np
    def _times(x):
        return x * {k}
    helper = np.vectorize(_times)
    def f(x):
        return int(helper(x))
    wf = fl.Workflow(outputs=[fl.FunctionStep(f, name='f')], workflow_id='audit7-vectorized')
"""


def test_an_edited_function_held_by_a_library_object_changes_the_fingerprint(cells: Cells) -> None:
    pytest.importorskip("numpy")
    prints = []
    for k in (2, 3, 3):
        cells.run(VECTORIZED.format(k=k))
        prints.append(cells["wf"].fingerprints()["f"])
    assert prints[0] != prints[1] == prints[2]


@pytest.mark.slow
def test_an_edited_function_held_by_a_library_object_reaches_the_workers(cells: Cells, tmp_path) -> None:
    # Before: np.vectorize(_times) counted by its pickle, which names _times only (__main__._times): an edit
    # of _times changed no fingerprint, the workers kept the old one and the cache served 20 for 30.
    pytest.importorskip("numpy")
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        for k in (2, 3):
            cells.run(VECTORIZED.format(k=k))
            got = (cells["wf"].run({"x": 10}), session.submit(cells["wf"], {"x": 10}).wait(timeout=60))
            assert (k, got) == (k, (10 * k, 10 * k))
