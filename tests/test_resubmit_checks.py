"""Submitting the same workflow again: the shortcuts of its checks never hide an edit.

``Session.submit`` re-checks a workflow it has seen on every submit: each step's
code fingerprint (an edited global or helper ships the workflow again), the
stale-definition check (a cell defining a step's function run again) and the run's
inputs. Steps that share one class and one function and hold nothing of their own
are checked a column at a time, with one fingerprint walk for all of them. Each
test here edits a cell (or a step) so that a shortcut skipping one of its checks
would run the old code, serve a stale cached result or say nothing.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator

import pytest

import fuseline_nb as fl
from fuseline_nb.errors import MissingInputError
from fuseline_nb.workflow._graph_adopt import fingerprints_changed
from fuseline_nb.workflow.fingerprint import _fingerprint_list, workflow_fingerprints
from fuseline_nb.workflow.schema import StepSchema, WorkflowSchema
from fuseline_nb.workflow.stale import StaleDefinitionWarning, stale_steps
from tests.cells import Cells, notebook


@pytest.fixture
def cells() -> Iterator[Cells]:
    with notebook("import itertools\nimport fuseline_nb as fl\n") as c:
        c.run(CHAIN)
        yield c


CHAIN = """
    def chain(*functions):
        steps = [fl.FunctionStep(fn, name=f"s{i}") for i, fn in enumerate(functions)]
        for a, b in itertools.pairwise(steps):
            a >> b
        return fl.Workflow(outputs=[steps[-1]], workflow_id="resubmit")
"""


def ran(run: fl.Run) -> set[str]:
    """The steps of a finished run that really ran (not served from the cache)."""
    return {n for n, s in run.info().steps.items() if s.state is fl.Status.SUCCEEDED and not s.cached}


# -- fingerprints a column at a time: the same as one step at a time --------------------------------
def _one(x=0):
    return x + 1


def _two(x=0):
    return x + 2


class _Plain(fl.Step):
    def run_step(self, x=0):
        return x


def _steps(kinds: str) -> list[fl.Step]:
    """Steps by letter: f/g a FunctionStep of _one/_two, c a _Plain, p f pinned by its own code_version,
    a f holding an attribute of its own."""
    out: list[fl.Step] = []
    for i, k in enumerate(kinds):
        step = _Plain(name=f"k{i}") if k == "c" else fl.FunctionStep(_two if k == "g" else _one, name=f"k{i}")
        if k == "p":
            step.code_version = "v1"
        if k == "a":
            step.limit = 3
        out.append(step)
    return out


@pytest.mark.parametrize("kinds", ["f", "ffff", "ffgf", "ffffg", "ccc", "cfc", "fpff", "ffffp", "pfff",
                                   "pppp", "ffaf", "afff"])
def test_the_fingerprint_list_is_each_steps_own_fingerprint(kinds):
    steps = _steps(kinds)
    assert _fingerprint_list(steps) == list(workflow_fingerprints({s.name: s for s in steps}).values())


def test_one_instance_pinned_among_steps_of_one_function_has_a_fingerprint_of_its_own():
    # docs/caching.md: code_version "on a class, or on one instance" replaces the code fingerprint
    steps = _steps("ffff")
    before = _fingerprint_list(steps)
    steps[1].code_version = "2024-06"
    pinned = _fingerprint_list(steps)
    assert pinned[1] != before[1] and pinned[0] == pinned[2] == pinned[3] == before[0]
    steps[1].code_version = "2024-07"  # bumped: the cache key follows it
    assert _fingerprint_list(steps)[1] not in (pinned[1], before[1])


def test_the_names_are_compared_with_each_schema_the_workflow_meets():
    wf = fl.Workflow(outputs=[fl.FunctionStep(_one, name="a")], workflow_id="w")
    assert fingerprints_changed(wf, wf.to_schema()) is False
    other = WorkflowSchema("w", steps=(StepSchema("b", fingerprint=wf.to_schema().steps[0].fingerprint),))
    assert fingerprints_changed(wf, other) is True  # same fingerprint, another step: not side by side


def test_missing_inputs_are_found_on_every_submit_of_one_schema():
    def need(x):
        return x

    schema = fl.Workflow(outputs=[fl.FunctionStep(need)]).to_schema()
    schema.check_inputs({"x": 1})
    found = schema.missing_inputs({})
    assert found == {"x": ["need"]}
    found["x"].append("mine")  # the caller's copy
    with pytest.raises(MissingInputError, match=r"step 'need' needs input 'x'"):
        schema.check_inputs({})
    assert schema.missing_inputs({"y": 2}) == {"x": ["need"]}


# -- the edit loop, with a worker process -----------------------------------------------------------
def test_an_edited_global_read_by_one_step_of_another_function_reaches_the_worker(cells):
    cells.run("""
        K = 10
        def inc(x=0):
            return x + 1
        def add_k(x=0):
            return x + K
        wf = chain(inc, inc, inc, add_k)
    """)
    with fl.Session(workers=1) as session:
        assert session.submit(cells["wf"]).wait(timeout=60) == 10
        cells.run("K = 100")  # only add_k's fingerprint changes: the steps are not all of one function
        assert session.submit(cells["wf"]).wait(timeout=60) == 100


def test_an_edited_global_read_by_every_step_reaches_the_worker(cells):
    cells.run("""
        K = 1
        def add_k(x=0):
            return x + K
        wf = chain(add_k, add_k, add_k)
    """)
    with fl.Session(workers=1) as session:
        assert session.submit(cells["wf"]).wait(timeout=60) == 1
        cells.run("K = 5")
        assert session.submit(cells["wf"]).wait(timeout=60) == 5


def test_an_edited_helper_of_every_step_reaches_the_worker_and_the_cache(cells, tmp_path):
    cells.run("""
        def helper(x):
            return x + 1
        def step(x=0):
            return helper(x)
        wf = chain(step, step, step)
    """)
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        assert session.submit(cells["wf"]).wait(timeout=60) == 1
        again = session.submit(cells["wf"])
        assert again.wait(timeout=60) == 1 and ran(again) == set()
        cells.run("""
            def helper(x):
                return x + 2
        """)
        edited = session.submit(cells["wf"])
        assert edited.wait(timeout=60) == 2 and ran(edited) == {"s0", "s1", "s2"}


def test_one_step_pinned_again_runs_again_instead_of_its_cached_result(cells, tmp_path):
    cells.run("""
        def step(x=0):
            return x + 1
        wf = chain(step, step, step, step)
    """)
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        wf = cells["wf"]
        wf["s2"].code_version = "data-1"  # reads a file the fingerprint cannot see
        assert session.submit(wf).wait(timeout=60) == 1
        cached = session.submit(wf)
        assert cached.wait(timeout=60) == 1 and ran(cached) == set()
        wf["s2"].code_version = "data-2"  # the file changed: the user bumps the pin
        bumped = session.submit(wf)
        assert bumped.wait(timeout=60) == 1 and "s2" in ran(bumped)


def test_an_attribute_given_to_one_step_after_the_build_reaches_the_worker(cells):
    cells.run("""
        def step(x=0):
            return x + 1
        wf = chain(step, step, step)
    """)
    with fl.Session(workers=1) as session:
        wf = cells["wf"]
        assert session.submit(wf).wait(timeout=60) == 1
        before = wf.to_schema()
        wf["s1"].note = "checked"  # a step holding something of its own has a fingerprint of its own
        session.submit(wf).wait(timeout=60)
        assert wf.to_schema() is not before
        assert wf.to_schema().steps[1].fingerprint != before.steps[1].fingerprint
        assert wf.to_schema().steps[0].fingerprint == before.steps[0].fingerprint


def test_a_cell_run_again_under_every_step_is_reported_on_resubmit(cells):
    cells.run("""
        def step(x=0):
            return x + 1
        wf = chain(step, step, step)
    """)
    with fl.Session(workers=1) as session:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert session.submit(cells["wf"]).wait(timeout=60) == 1
        cells.run("""
            def step(x=0):
                return x + 10
        """)
        with warnings.catch_warnings(record=True) as told:
            warnings.simplefilter("always")
            session.submit(cells["wf"]).wait(timeout=60)
    assert [str(w.message).split(" holds")[0] for w in told if w.category is StaleDefinitionWarning] == \
        ["step 's0'", "step 's1'", "step 's2'"]
    assert "holds an old definition of function 'step'" in str(told[0].message)
    assert [s.step for s in stale_steps(cells["wf"])] == ["s0", "s1", "s2"]


def test_a_cell_run_again_under_the_last_step_only_is_reported_on_resubmit(cells):
    cells.run("""
        def step(x=0):
            return x + 1
        def last(x=0):
            return 2
        wf = chain(step, step, step, last)
    """)
    with fl.Session(workers=1) as session:
        assert session.submit(cells["wf"]).wait(timeout=60) == 2
        cells.run("""
            def last(x=0):
                return 3
        """)
        with pytest.warns(StaleDefinitionWarning, match=r"step 's3' holds an old definition of function 'last'"):
            session.submit(cells["wf"]).wait(timeout=60)
    assert [s.step for s in stale_steps(cells["wf"])] == ["s3"]


@pytest.fixture
def walks(monkeypatch) -> itertools.count:
    """Counts the fingerprint walks of steps (a remembered fingerprint costs none)."""
    from fuseline_nb.workflow import _fingerprint_walk

    counter = itertools.count()
    real = _fingerprint_walk._Walker.step
    monkeypatch.setattr(_fingerprint_walk._Walker, "step", lambda self, step: (next(counter), real(self, step))[1])
    return counter


class _Walks:
    def __init__(self, counter: itertools.count) -> None:
        self.counter, self.seen = counter, 0

    def since(self) -> int:
        now = next(self.counter)  # one more than the walks so far
        n, self.seen = now - self.seen, now + 1
        return n


def _fps(cells: Cells) -> list[str]:
    return _fingerprint_list(list(cells["wf"].steps.values()))


def test_steps_of_one_function_share_one_walk_and_it_is_remembered_until_a_read_changes(cells, walks):
    w = _Walks(walks)
    cells.run("""
        K = 1
        def step(x=0):
            return x + K
        wf = chain(*[step] * 50)
    """)
    first = _fps(cells)
    assert len(set(first)) == 1 and w.since() == 1
    assert _fps(cells) == first and w.since() == 0  # nothing it read was replaced: no walk
    cells.run("K = 2")  # the cell defining the global run again with another value
    edited = _fps(cells)
    assert edited != first and w.since() == 1
    cells.run("K = 1")
    assert _fps(cells) == first


@pytest.mark.parametrize(("setup", "edit"), [
    ("ITEMS = [1, 2]\ndef step(x=0):\n    return ITEMS", "ITEMS.append(3)"),  # changed in place
    ("CONF = {'a': 1}\ndef step(x=0):\n    return CONF", "CONF['a'] = 2"),
    ("def make():\n    n = 1\n    def step(x=0):\n        return n\n    def bump():\n        nonlocal n\n"
     "        n = 2\n    return step, bump\nstep, bump = make()", "bump()"),  # a closure cell
    ("def step(x=0):\n    return LATER", "LATER = 5"),  # a global defined after the first walk
    ("def step(x=0, k=1):\n    return k", "step.__defaults__ = (0, 2)"),
    ("import types\nhelpers = types.ModuleType('helpers_resubmit_checks')\nhelpers.f = lambda: 1\n"
     "def step(x=0):\n    return helpers.f()", "helpers.f = lambda: 2"),  # the user's own module
    ("class Cfg:\n    n = 1\ndef step(x=0):\n    return Cfg.n", "Cfg.n = 2"),  # a class's member
    ("from dataclasses import dataclass\n@dataclass(frozen=True)\nclass P:\n    items: list\n"
     "SETTINGS = P([1])\ndef step(x=0):\n    return SETTINGS.items", "SETTINGS.items.append(2)"),
])
def test_a_read_changed_in_place_or_rebound_changes_the_fingerprint(cells, setup, edit):
    cells.run(setup + "\nwf = chain(step, step)")
    first = _fps(cells)
    assert _fps(cells) == first
    cells.run(edit)
    assert _fps(cells) != first


def test_a_cell_run_again_between_a_rebuild_and_its_submit_is_reported(cells):
    cells.run("""
        def step(x=0):
            return x + 1
        wf = chain(step, step, step)
    """)
    with fl.Session(workers=1) as session:
        assert session.submit(cells["wf"]).wait(timeout=60) == 1
        cells.run("wf = chain(step, step, step)")  # the build cell run again: a new workflow, same definition
        cells.run("""
            def step(x=0):
                return x + 10
        """)  # then the function's cell, before the submit
        with warnings.catch_warnings(record=True) as told:
            warnings.simplefilter("always")
            session.submit(cells["wf"]).wait(timeout=60)
    assert [str(w.message).split(" holds")[0] for w in told if w.category is StaleDefinitionWarning] == \
        ["step 's0'", "step 's1'", "step 's2'"]


@pytest.mark.parametrize("odd", ["none", "pinned", "custom-policy", "builtin-policy"])
def test_a_rebuild_with_one_step_pinned_or_holding_a_custom_policy_is_shipped_again(monkeypatch, odd):
    # a pinned code_version's code and a custom policy's are not in the fingerprints: such a rebuild is
    # shipped again even when its schema is the same; the check looks at every step, not the first
    from fuseline_nb.worker import pool as pool_module
    from fuseline_nb.workflow.policies import RetryPolicy, StepPolicy

    shipped: list[str] = []
    real = pool_module.ship
    monkeypatch.setattr(pool_module, "ship", lambda wf: (shipped.append(wf.workflow_id), real(wf))[1])

    class Shout(StepPolicy):
        def execute(self, step, call):
            return call()

    def build() -> fl.Workflow:
        steps = [fl.FunctionStep(_one, name=f"s{i}") for i in range(5)]
        if odd == "pinned":
            steps[3].code_version = "v1"
        elif odd != "none":
            steps[3].policies = [Shout() if odd == "custom-policy" else RetryPolicy(1)]
        for a, b in itertools.pairwise(steps):
            a >> b
        return fl.Workflow(outputs=[steps[-1]], workflow_id=f"odd-{odd}")

    with fl.Session(workers=1) as session:
        for _ in range(2):
            assert session.submit(build()).wait(timeout=60) == 1
    assert len(shipped) == (2 if odd in ("pinned", "custom-policy") else 1)
