"""Audit (session 8): a step calling a function of the user's own module, the module edited on disk.

``helpers.py`` beside the notebook, ``import helpers`` in a cell, a step calling ``helpers.f``. The user
edits ``helpers.py`` and reloads it (``importlib.reload(helpers)``, what ``%autoreload`` does): the step's
fingerprint changes and the workflow is shipped again, but a worker process keeps the module it imported
— before, it ran the OLD ``f`` (20 for 30) and the cache stored that result under the new code's key,
without a word. And when the user edits the file without reloading, a worker started (or replaced)
since imports the file as it is now while the notebook runs and fingerprints what it imported: the
results came from code the notebook does not have, and were cached under its keys (an edit tried and
undone then served the tried code's result).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fuseline_nb as fl
from fuseline_nb.worker._freshmods import check_modules
from tests.cells import Cells, notebook


@pytest.fixture
def module(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A user module ``audit8mod_<n>`` in a directory on ``sys.path`` (the workers get the same path)."""
    name = f"audit8mod_{os.getpid()}_{time.monotonic_ns()}"
    path = tmp_path / "src" / f"{name}.py"
    path.parent.mkdir()
    path.write_text("def f(x):\n    return x * 2\n")
    sys.path.insert(0, str(path.parent))
    try:
        yield name, path
    finally:
        sys.path.remove(str(path.parent))
        sys.modules.pop(name, None)


def _edit(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with a modification time another than before (a file system's clock
    may be coarse)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


@pytest.fixture
def cells(module: tuple[str, Path]) -> Iterator[Cells]:
    name, _ = module
    with notebook(f"import fuseline_nb as fl\nimport importlib\nimport {name} as helpers\n") as c:
        c.run("""
            def step(x):
                return helpers.f(x)
            wf = fl.Workflow(outputs=[fl.FunctionStep(step, name='step')], workflow_id='audit8-module')
        """)
        yield c


@pytest.mark.slow
def test_a_module_reloaded_in_the_notebook_is_reloaded_by_the_workers(
        cells: Cells, module: tuple[str, Path], tmp_path: Path) -> None:
    _, path = module
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        assert session.submit(cells["wf"], {"x": 10}).wait(timeout=60) == 20
        _edit(path, "def f(x):\n    return x * 3\n")
        cells.run("importlib.reload(helpers)")
        assert cells["wf"].run({"x": 10}) == 30
        run = session.submit(cells["wf"], {"x": 10})
        assert run.wait(timeout=60) == 30  # before: 20, the worker's old module
        # ... and nothing wrong was cached: the same key is served the right result
        again = session.submit(cells["wf"], {"x": 10})
        assert again.wait(timeout=60) == 30 and again.info().steps["step"].cached is True


@pytest.mark.slow
def test_a_module_edited_on_disk_and_not_reloaded_is_said_and_not_cached(
        cells: Cells, module: tuple[str, Path], tmp_path: Path) -> None:
    name, path = module
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        assert session.submit(cells["wf"], {"x": 5}).wait(timeout=60) == 10
        _edit(path, "def f(x):\n    return x * 3\n")  # tried, not reloaded
        pids = session.pool.pids()
        os.kill(pids[0], signal.SIGKILL)  # a worker replaced meanwhile imports the file as it is now
        deadline = time.monotonic() + 30
        while session.pool.pids() in ([], pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.warns(fl.StaleDefinitionWarning, match=(
                rf"module '{name}' \(.*{name}\.py\) changed on disk since this notebook imported it and was not "
                r"reloaded: worker processes load the file as it is now, while this notebook .* has the code "
                rf"it imported; runs submitted meanwhile do not use the cache\. Run importlib\.reload\({name}\)")):
            tried = session.submit(cells["wf"], {"x": 7})
        tried.wait(timeout=60)
        assert tried.info().steps["step"].cached is False
        _edit(path, "def f(x):\n    return x * 2\n")  # the edit undone
        cells.run("importlib.reload(helpers)")
        run = session.submit(cells["wf"], {"x": 7})
        # before: 21, the tried code's result cached under the key of the code the notebook has
        assert run.wait(timeout=60) == 14 == cells["wf"].run({"x": 7})


def test_only_a_module_the_steps_reach_turns_the_cache_off(
        cells: Cells, module: tuple[str, Path], tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    name, path = module
    other = path.parent / f"{name}_other.py"  # a module of the user's the workflow does not use
    other.write_text("X = 1\n")
    cells.run(f"import {name}_other")
    try:
        steps = cells["wf"]
        assert check_modules(steps, True) is True  # (both seen as they are now)
        _edit(other, "X = 2\n")
        assert check_modules(steps, True) is True and not recwarn.list  # not reached: nothing changes
        _edit(path, "def f(x):\n    return x * 3\n")
        with pytest.warns(fl.StaleDefinitionWarning, match=rf"module '{name}' "):
            assert check_modules(steps, None) is False
        assert check_modules(steps, True) is False  # (said once per change)
        cells.run("importlib.reload(helpers)")
        assert check_modules(steps, True) is True
    finally:
        sys.modules.pop(f"{name}_other", None)


AUTORELOAD_CELLS = [
    "%load_ext autoreload\n%autoreload 2",
    "import json, os, time\nimport fuseline_nb as fl\nimport audit8_helpers as helpers\n"
    "session = fl.Session('h.duckdb', workers=1, cache=True)\n"
    "def step(x):\n    return helpers.f(x)\n"
    "wf = fl.Workflow(outputs=[fl.FunctionStep(step, name='step')], workflow_id='audit8-autoreload')\n"
    "print(session.submit(wf, {'x': 10}).wait(timeout=60))",
    "before = os.stat('audit8_helpers.py').st_mtime_ns\n"
    "open('audit8_helpers.py', 'w').write('def f(x):\\n    return x * 3\\n')\n"
    "os.utime('audit8_helpers.py', ns=(before + 2_000_000_000, before + 2_000_000_000))",
    "run = session.submit(wf, {'x': 10})\n"  # autoreload has patched helpers before this cell
    "out = run.wait(timeout=60)\n"
    "again = session.submit(wf, {'x': 10})\n"
    "print(json.dumps([wf.run({'x': 10}), out, again.wait(timeout=60), again.info().steps['step'].cached]))\n"
    "session.close()",
]


@pytest.mark.slow
def test_with_autoreload_in_a_real_kernel_the_workers_follow_the_edit_without_a_warning(tmp_path: Path) -> None:
    """``%autoreload 2`` patches a module's functions in place (its ``__spec__`` stays): the workers run
    the edit, and the submit neither warns nor turns the cache off (the extension's record says the
    notebook has the file as it is)."""
    import json

    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    (tmp_path / "audit8_helpers.py").write_text("def f(x):\n    return x * 2\n")
    nb = new_notebook(cells=[new_code_cell(c) for c in AUTORELOAD_CELLS])
    NotebookClient(nb, kernel_name="python3", timeout=180,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    first = "".join(o.get("text", "") for o in nb.cells[1]["outputs"] if o.get("name") == "stdout")
    assert first.strip() == "20"
    outputs = nb.cells[3]["outputs"]
    text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert json.loads(text.strip().splitlines()[-1]) == [30, 30, 30, True]
    assert "StaleDefinitionWarning" not in "".join(o.get("text", "") for o in outputs)
