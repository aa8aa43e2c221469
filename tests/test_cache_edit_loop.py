"""The edit loop with real worker processes and a DuckDB file: edit a cell, re-run, get what you wrote,
and only what changed runs again (issue 11, docs/caching.md).

Cells run in the real ``__main__`` namespace, as a notebook's do: their functions pickle by value
and a re-run cell rebinds the name, which is what the staleness check looks at.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator

import pytest

import fuseline_nb as fl
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker import ProcessEngine
from fuseline_nb.workflow.stale import StaleDefinitionWarning
from tests.cells import Cells, notebook

pytestmark = pytest.mark.slow


@pytest.fixture
def cells() -> Iterator[Cells]:
    with notebook("import fuseline_nb as fl\nimport time\n") as c:
        yield c


def ran(run: fl.Run) -> set[str]:
    """The steps of a finished run that really ran (not served from the cache)."""
    return {n for n, s in run.info().steps.items() if s.state is fl.Status.SUCCEEDED and not s.cached}


def cached(run: fl.Run) -> set[str]:
    return {n for n, s in run.info().steps.items() if s.cached}


# -- cases 1-3 of the issue ---------------------------------------------------------------------------
def test_case1_a_global_changed_between_submits_of_the_same_workflow_reaches_the_workers(cells, tmp_path):
    cells.run("""
        THRESHOLD = 10
        def keep(values):
            return [v for v in values if v > THRESHOLD]
        wf = fl.workflow_from_functions([keep])
    """)
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        data = {"values": [5, 15, 25]}
        assert session.submit(cells["wf"], data).wait(timeout=60) == [15, 25]
        cells.run("THRESHOLD = 20")
        assert cells["wf"].run(data) == [25]
        assert session.submit(cells["wf"], data).wait(timeout=60) == [25]  # not the first shipped copy


def test_case2_a_redefined_function_held_by_depends_is_reported(cells):
    cells.run("""
        def clean(rows):
            return [r for r in rows if r]
        def report(rows=fl.Depends(clean)):
            return len(rows)
    """)
    cells.run("""
        def clean(rows):   # the cell edited and run again; report's cell was not
            return rows
    """)
    with pytest.warns(StaleDefinitionWarning,
                      match=r"step 'clean' holds an old definition of function 'clean'.*"
                            r"Run again the cell that defines 'report', then the cell that builds the workflow"):
        wf = fl.workflow_from_functions(outputs=[cells["report"]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once for this workflow: submit does not repeat it
        with fl.Session(workers=0) as session:
            session.submit(wf, {"rows": [0, 1]})
    cells.run("""
        def report(rows=fl.Depends(clean)):
            return len(rows)
    """)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fl.workflow_from_functions(outputs=[cells["report"]]).run({"rows": [0, 1]}) == 2


def test_case2_submit_warns_when_the_cell_was_run_again_after_the_build(cells):
    cells.run("""
        def answer():
            return 1
        wf = fl.Workflow(outputs=[fl.FunctionStep(answer)])
        def answer():
            return 2
    """)
    with fl.Session(workers=0) as session, pytest.warns(StaleDefinitionWarning, match="step 'answer'"):
        session.submit(cells["wf"])


def test_case3_depends_and_functionstep_on_one_function_meet_at_one_step(cells, tmp_path):
    cells.run("""
        def ready():
            return "go"
        def train():
            return "model"
        def skip():
            return "skipped"
        def evaluate(model=fl.Depends(train)):
            return f"evaluated {model}"
        gate = fl.FunctionStep(ready)
        t = fl.FunctionStep(train)
        (gate - "go") >> t
        (gate - "stop") >> fl.FunctionStep(skip)
        wf = fl.workflow_from_functions([evaluate])
    """)
    wf = cells["wf"]
    assert sorted(wf.step_names) == ["evaluate", "ready", "skip", "train"]
    assert wf.graph.edges["ready", "train"]["action"] == "go"
    assert wf.graph.edges["train", "evaluate"]
    with fl.Session(tmp_path / "h.duckdb", workers=1) as session:
        run = session.submit(wf)
        assert run.wait(timeout=60) == "evaluated model"
        assert run.info().steps["skip"].state is fl.Status.SKIPPED
    named = fl.FunctionStep(cells["train"], name="train_again")  # an explicit name: another step
    assert named is not cells["t"] and named.name == "train_again"


# -- the six-step pipeline ---------------------------------------------------------------------------
PIPELINE = {
    "load": """
        def load(n):
            return list(range(n))
    """,
    "helper": """
        def normalize(v):
            return v * 10
    """,
    "clean": """
        def clean(rows=fl.Depends(load)):
            return [normalize(r) for r in rows]
    """,
    "features": """
        def feature_a(rows=fl.Depends(clean)):
            time.sleep(1)
            return sum(rows)
        def feature_b(rows=fl.Depends(clean)):
            time.sleep(1)
            return max(rows)
    """,
    "combine": """
        SCALE = 1
        def combine(a=fl.Depends(feature_a), b=fl.Depends(feature_b)):
            return (a + b) * SCALE
    """,
    "report": """
        def report(total=fl.Depends(combine), label="total"):
            return f"{label}: {total}"
    """,
    "build": """
        wf = fl.workflow_from_functions([report])
    """,
}
ORDER = list(PIPELINE)


def run_from(cells: Cells, first: str, **edits: str) -> fl.Workflow:
    """Apply ``edits`` to cells, then run every cell from ``first`` down (as 'run all below' does)."""
    PIPELINE_NOW.update(edits)
    for name in ORDER[ORDER.index(first):]:
        cells.run(PIPELINE_NOW[name])
    return cells["wf"]


PIPELINE_NOW: dict[str, str] = {}


def test_six_step_pipeline_reruns_only_what_changed(cells, tmp_path):
    PIPELINE_NOW.clear()
    PIPELINE_NOW.update(PIPELINE)
    wf = run_from(cells, "load")
    inputs = {"n": 4}
    with fl.Session(tmp_path / "h.duckdb", workers=2, cache=True) as session:
        warm = session.submit(wf, inputs)
        assert warm.wait(timeout=60) == "total: 90"
        assert ran(warm) == set(wf.step_names) and len(wf.step_names) == 6

        start = time.perf_counter()
        again = session.submit(wf, inputs)
        assert again.wait(timeout=60) == "total: 90"
        elapsed = time.perf_counter() - start
        assert cached(again) == set(wf.step_names) and elapsed < 0.3, elapsed

        # editing only the last step runs only it
        wf = run_from(cells, "report", report='''
            def report(total=fl.Depends(combine), label="total"):
                return f"{label} = {total}"
        ''')
        r = session.submit(wf, inputs)
        assert r.wait(timeout=60) == "total = 90" and ran(r) == {"report"}

        # editing the helper clean calls runs clean and what its changed output reaches; load stays cached
        wf = run_from(cells, "helper", helper='''
            def normalize(v):
                return v * 100
        ''')
        r = session.submit(wf, inputs)
        assert r.wait(timeout=60) == "total = 900"
        assert ran(r) == {"clean", "feature_a", "feature_b", "combine", "report"} and cached(r) == {"load"}

        # a re-run with the same result leaves its downstream cached
        wf = run_from(cells, "clean", clean='''
            def clean(rows=fl.Depends(load)):
                out = []
                for r in rows:              # rewritten, same result
                    out.append(normalize(r))
                return out
        ''')
        r = session.submit(wf, inputs)
        assert r.wait(timeout=60) == "total = 900"
        assert ran(r) == {"clean"}, ran(r)

        # changing a global a step reads re-runs that step (and what its changed result reaches)
        cells.run("SCALE = 2")
        r = session.submit(wf, inputs)
        assert r.wait(timeout=60) == "total = 1800" and ran(r) == {"combine", "report"}

        # changing one input re-runs the steps that read it and their changed downstream
        r = session.submit(wf, {**inputs, "label": "sum"})
        assert r.wait(timeout=60) == "sum = 1800" and ran(r) == {"report"}
        r = session.submit(wf, {"n": 5, "label": "sum"})
        assert r.wait(timeout=60) == "sum = 2800" and cached(r) == set() and ran(r) == set(wf.step_names)

        # rerun= forces steps; the history and the cache view say what happened
        r = session.submit(wf, {"n": 5, "label": "sum"}, rerun=["load"])
        r.wait(timeout=60)
        assert ran(r) == {"load"}
        rows = session.sql("SELECT step, cached FROM steps WHERE run_id = ? ORDER BY step", [r.id]).fetchall()
        assert dict(rows) == {s: s != "load" for s in wf.step_names}
        hits = dict(session.sql("SELECT step, sum(hits) FROM cache GROUP BY step").fetchall())
        assert hits["load"] >= 5
        events = session.broker.events(r.id)
        finished = {e.step: e.detail for e in events if e.kind == "step_finished"}
        assert finished["report"]["cached"] is True and finished["report"]["cached_from"]
        assert finished["load"]["cached"] is False


def test_a_cache_false_step_always_runs_and_submit_can_turn_the_cache_off(cells, tmp_path):
    cells.run("""
        def stamp():
            return "stamped"
        class Notify(fl.Step):
            cache = False
            def run_step(self, s=fl.Depends(stamp)):
                return s + "!"
        wf = fl.Workflow(outputs=[Notify()])
    """)
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        first = session.submit(cells["wf"])
        first.wait(timeout=60)
        second = session.submit(cells["wf"])
        assert second.wait(timeout=60) == "stamped!"
        assert ran(second) == {"Notify"} and cached(second) == {"stamp"}
        third = session.submit(cells["wf"], cache=False)
        third.wait(timeout=60)
        assert ran(third) == {"Notify", "stamp"}
        assert session.cache.size == 1  # only stamp's result is cached
        assert session.cache.clear(step="stamp") == 1 and len(session.cache) == 0


def test_the_cache_survives_reopening_the_file(cells, tmp_path):
    cells.run("""
        def slow_square(x):
            return x * x
        wf = fl.workflow_from_functions([slow_square])
    """)
    path = tmp_path / "h.duckdb"
    with fl.Session(path, workers=1, cache=True) as session:
        assert session.submit(cells["wf"], {"x": 7}).wait(timeout=60) == 49
    with fl.Session(path, workers=1, cache=True) as session:
        run = session.submit(cells["wf"], {"x": 7})
        assert run.wait(timeout=60) == 49 and cached(run) == {"slow_square"}
        assert session.cache.entries()[0].hits == 1


def test_an_unpicklable_result_is_never_cached_and_its_step_is_named(cells, tmp_path):
    # Values are pickled where they are born (DESIGN §4), so a result that cannot be pickled
    # fails its step with a message naming it, before the cache could see it; nothing is cached.
    cells.run("""
        import threading
        def make_lock():
            return threading.Lock()
        def use(lock=fl.Depends(make_lock)):
            return type(lock).__name__
        wf = fl.workflow_from_functions([use])
    """)
    with fl.Session(tmp_path / "h.duckdb", workers=0, cache=True) as session:
        client = LocalBrokerClient(session.broker)
        for _ in range(2):
            run = session.submit(cells["wf"])
            ProcessEngine(client, [cells["wf"]]).work()
            with pytest.raises(fl.StepFailedError, match=r"step 'make_lock' \(a lock\) cannot be pickled"):
                run.wait(timeout=10, raise_on_failure=True)
            assert cached(run) == set()
        assert len(session.cache) == 0


def test_a_corrupt_cache_entry_is_a_miss_with_a_warning(cells, tmp_path, caplog):
    cells.run("""
        def produce(x):
            return {"x": x}
        wf = fl.workflow_from_functions([produce])
    """)
    path = tmp_path / "h.duckdb"
    with fl.Session(path, workers=1, cache=True) as session:
        first = session.submit(cells["wf"], {"x": 1})
        first.wait(timeout=60)
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("UPDATE fl_steps SET result_pickle = 'not a pickle'::BLOB WHERE step = 'produce'")
    con.close()
    with fl.Session(path, workers=1, cache=True) as session:
        with caplog.at_level(logging.WARNING):
            run = session.submit(cells["wf"], {"x": 1})
            assert run.wait(timeout=60) == {"x": 1}
        assert ran(run) == {"produce"}
        assert f"cache entry of step 'produce' (result of run {first.id}) cannot be read" in caplog.text
        again = session.submit(cells["wf"], {"x": 1})
        assert again.wait(timeout=60) == {"x": 1} and cached(again) == {"produce"}


# -- a real kernel, restarted ------------------------------------------------------------------------
KERNEL_CELLS = [
    "import json, time\nimport fuseline_nb as fl",
    '''
LIMIT = 3
def load(n):
    return list(range(n))
def clean(rows=fl.Depends(load)):
    return [r for r in rows if r < LIMIT]
def slow(rows=fl.Depends(clean)):
    time.sleep(0.5)
    return sum(rows)
def report(total=fl.Depends(slow)):
    return f"total {total}"
wf = fl.workflow_from_functions([report])
''',
    '''
session = fl.Session("history.duckdb", workers=2, cache=True)
run = session.submit(wf, {"n": 10})
out = run.wait(timeout=60)
print(json.dumps({"out": out, "cached": {n: s.cached for n, s in run.info().steps.items()},
                  "fingerprints": wf.fingerprints()}))
session.close()
''',
]


def test_after_a_kernel_restart_the_same_cells_on_the_same_file_are_all_cached(tmp_path) -> None:
    import json

    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    results = []
    for _ in range(2):  # two kernels, one after the other: a restart
        nb = new_notebook(cells=[new_code_cell(c) for c in KERNEL_CELLS])
        NotebookClient(nb, kernel_name="python3", timeout=180,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        text = "".join(o.get("text", "") for o in nb.cells[2]["outputs"] if o.get("output_type") == "stream")
        results.append(json.loads(text.strip().splitlines()[-1]))
    first, second = results
    assert first["out"] == second["out"] == "total 3"
    assert first["fingerprints"] == second["fingerprints"]
    assert not any(first["cached"].values())
    assert second["cached"] == {"load": True, "clean": True, "slow": True, "report": True}


def test_wf_run_with_cache_shares_the_sessions_store(cells, tmp_path):
    cells.run("""
        def double(x):
            return 2 * x
        def plus_one(v=fl.Depends(double)):
            return v + 1
        wf = fl.workflow_from_functions([plus_one])
    """)
    wf = cells["wf"]
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        assert session.submit(wf, {"x": 4}).wait(timeout=60) == 9
        assert wf.run({"x": 4}, cache=session) == 9
        assert {n: s.cached for n, s in wf.last_run.steps.items()} == {"double": True, "plus_one": True}
        assert wf.run({"x": 5}, cache=session, rerun=["plus_one"]) == 11
        assert wf.run({"x": 5}, cache=session) == 11
        assert all(s.cached for s in wf.last_run.steps.values())
    with pytest.raises(TypeError, match=r"cache= takes True, a Session or a broker, not 'yes'"):
        wf.run({"x": 1}, cache="yes")
