"""Audit (session 6): the edit loop as a notebook user does it, with real worker processes.

Cells run in the real ``__main__`` namespace (their functions and classes pickle by value, a cell run
again rebinds the names), as in tests/test_cache_edit_loop.py.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator

import pytest

import fuseline_nb as fl
from tests.cells import Cells, notebook


@pytest.fixture
def cells() -> Iterator[Cells]:
    with notebook("import fuseline_nb as fl\n") as c:
        yield c


SCALER = """
    class Scaler:
        def apply(self, x):
            return x * {k}
    scaler = Scaler()
"""


def test_an_edited_method_of_a_global_object_changes_the_fingerprint(cells) -> None:
    # A step reads a global instance of a class of the notebook; the class's method is edited and both
    # cells run again. The object pickles by reference to its class, so its pickle alone is the same.
    cells.run(SCALER.format(k=1))
    cells.run("def scale(x):\n    return scaler.apply(x)")
    first = fl.Workflow(outputs=[fl.FunctionStep(cells["scale"], name="scale")]).fingerprints()
    cells.run(SCALER.format(k=2))
    cells.run("def scale(x):\n    return scaler.apply(x)")
    second = fl.Workflow(outputs=[fl.FunctionStep(cells["scale"], name="scale")]).fingerprints()
    assert first != second


def test_an_edited_class_of_a_step_attribute_changes_the_fingerprint(cells) -> None:
    cells.run(SCALER.format(k=1))
    cells.run("""
        class Apply(fl.Step):
            def __init__(self, model, **kw):
                super().__init__(**kw)
                self.model = model
            def run_step(self, x):
                return self.model.apply(x)
    """)
    first = fl.Workflow(outputs=[cells["Apply"](cells["scaler"], name="a")]).fingerprints()
    cells.run(SCALER.format(k=2))
    second = fl.Workflow(outputs=[cells["Apply"](cells["scaler"], name="a")]).fingerprints()
    assert first != second


@pytest.mark.slow
@pytest.mark.parametrize("cache", [False, True])
def test_an_edited_method_of_a_global_object_runs_on_the_workers(cells, tmp_path, cache: bool) -> None:
    # Before: the pool took the rebuilt workflow for an unchanged one (equal schema) and the workers kept
    # the first Scaler: 10, 10, 10 without a word (with the cache on, the first result was served again).
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=cache) as session:
        for k in (1, 2, 3):
            cells.run(SCALER.format(k=k))
            cells.run("""
                def scale(x):
                    return scaler.apply(x)
                wf = fl.Workflow(outputs=[fl.FunctionStep(scale, name="scale")], workflow_id="audit6-obj")
            """)
            assert cells["wf"].run({"x": 10}) == 10 * k
            assert session.submit(cells["wf"], {"x": 10}).wait(timeout=60) == 10 * k


GATE = """
    class Big(fl.Condition):
        def check(self, value):
            return value > {k}
    def source():
        return 5
    def gated(v=fl.Depends(source, condition=Big())):
        return v
    wf = fl.Workflow(outputs=[fl.FunctionStep(gated)], workflow_id="audit6-gate")
"""


def test_an_edited_condition_class_changes_the_gated_step_s_fingerprint(cells) -> None:
    # Before: Depends counted by its repr, 'Depends(source, condition=Big())': the check's code was not seen
    cells.run(GATE.format(k=3))
    first = cells["wf"].fingerprints()
    assert cells["wf"].run({}) == 5
    cells.run(GATE.format(k=10))
    assert cells["wf"].run({}) is None  # SKIPPED by its condition
    assert cells["wf"].fingerprints()["gated"] != first["gated"]


def test_a_lambda_condition_gives_the_same_fingerprint_when_its_cell_runs_again(cells) -> None:
    # Before: the repr of the lambda ('<function <lambda> at 0x7f...>') was hashed: another fingerprint at
    # every build, so the gated step never came from the cache and was shipped again every time.
    source = """
        def source():
            return 5
        def gated(v=fl.Depends(source, condition=lambda v: v > {k})):
            return v
        wf = fl.Workflow(outputs=[fl.FunctionStep(gated)])
    """
    cells.run(source.format(k=3))
    first = cells["wf"].fingerprints()["gated"]
    cells.run(source.format(k=3))
    assert cells["wf"].fingerprints()["gated"] == first
    cells.run(source.format(k=4))
    assert cells["wf"].fingerprints()["gated"] != first


@pytest.mark.slow
def test_an_edited_condition_class_gates_on_the_workers(cells, tmp_path) -> None:
    # Before: the rebuilt workflow was taken for unchanged; the workers kept the first Big: 5, 5
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        cells.run(GATE.format(k=3))
        assert session.submit(cells["wf"]).wait(timeout=60) == 5
        cells.run(GATE.format(k=10))
        run = session.submit(cells["wf"])
        assert run.wait(timeout=60) is None
        assert run.info().steps["gated"].state is fl.Status.SKIPPED


def test_a_step_class_s_fingerprint_is_the_same_after_its_first_pickle(cells) -> None:
    # Pickling an instance (shipping it to the workers) makes copyreg cache __slotnames__ in its class:
    # before, that changed the fingerprint, so the second submit of an unchanged notebook step class ran it
    # again instead of using the cache (and shipped it again); the same for an object a step reads.
    import pickle

    cells.run("""
        class Load(fl.Step):
            def run_step(self):
                return 1
        class Model:
            def predict(self, x):
                return x
        model = Model()
        def predict(x=fl.Depends(Load)):
            return model.predict(x)
        wf = fl.Workflow(outputs=[fl.FunctionStep(predict)])
    """)
    before = cells["wf"].fingerprints()
    pickle.dumps(cells["wf"].steps["Load"])
    pickle.dumps(cells["model"])
    assert "__slotnames__" in vars(cells["Load"]) and "__slotnames__" in vars(cells["Model"])
    assert cells["wf"].fingerprints() == before


SLOW = """
    import time
    def work(i: int = 0):
        time.sleep(0.03)
        return {v}
    wf = fl.Workflow(outputs=[fl.FunctionStep(work, name=f"s{{i}}") for i in range(40)],
                     workflow_id="audit6-edit-mid-run")
"""


@pytest.mark.slow
def test_a_cell_edited_while_a_run_goes_on_does_not_put_the_new_code_s_results_in_the_cache(cells, tmp_path):
    # The edited workflow is shipped while run A (old code) still has steps to run. Before (session 6):
    # the workers ran A's later steps with the new code, keyed with A's (old) fingerprints, and a later run
    # of the old code was served the new code's results from the cache: 2 instead of 1, without a word.
    # Session 7 stored nothing for A from then on; now (factory8) A keeps its own code to the end.
    with fl.Session(tmp_path / "h.duckdb", workers=2, cache=True) as session:
        finished: list[str] = []
        session.subscribe(lambda e: finished.append(e.run_id) if e.kind == "step_finished" else None)
        cells.run(SLOW.format(v=1))
        first = session.submit(cells["wf"])
        while finished.count(first.id) < 5:
            time.sleep(0.005)
        cells.run(SLOW.format(v=2))  # the cell edited and run again while `first` goes on
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # nothing overtaken (factory8): no warning
            second = session.submit(cells["wf"])
        # a run keeps the code it started with: the edited one got a version of its own (factory8)
        assert first.wait(timeout=120) == [1] * 40 and second.info().version.startswith("auto-")
        assert second.wait(timeout=120) == [2] * 40
        cells.run(SLOW.format(v=1))  # back to the first code
        third = session.submit(cells["wf"])
        assert third.wait(timeout=120) == [1] * 40
