"""A reopened history file resumes its unfinished runs by itself (issue 18 item 8).

A child Python process opens a Session on a real DuckDB file, submits a
2-step workflow defined in a module file, and is SIGKILLed while the first
step runs. A new ``Session(file, workers=2)`` in this process then finishes
the run WITHOUT a submit: the workflow's bytes were stored in the file when
they were shipped. When the module is gone, the session names the run and
why, and the run resumes at the next submit once the module is back.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest

import fuseline_nb as fl
from fuseline_nb import Status

pytestmark = pytest.mark.slow

MODULE = '''
import os, time
from fuseline_nb import Depends, FunctionStep, Workflow

def first(marker: str) -> int:
    if not os.path.exists(marker):  # the first attempt only: long enough to be killed in
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)
    return 20

def second(v: int = Depends(first)) -> int:
    return v + 1

def build():
    return Workflow(outputs=[FunctionStep(second)], workflow_id="resume-chain")
'''

CHILD = '''
import os, sys, time
import fuseline_nb as fl
from {module} import build

path, marker = sys.argv[1], sys.argv[2]
session = fl.Session(path, workers=1)
run = session.submit(build(), {{"marker": marker}})
deadline = time.monotonic() + 60
while not os.path.exists(marker) or not open(marker).read():
    if time.monotonic() > deadline:
        sys.exit("the first step did not start")
    time.sleep(0.02)
session.broker.flush()  # the run and its RUNNING step are in the file
print(run.id, flush=True)
time.sleep(600)  # killed here
'''


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A module file on sys.path and PYTHONPATH (workers and children import it)."""
    name = f"resumewf_{uuid.uuid4().hex[:8]}"
    d = tmp_path / "mods"
    d.mkdir()
    (d / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(d), os.environ.get("PYTHONPATH", "")]))
    yield d, name
    sys.modules.pop(name, None)


def _killed_mid_run(tmp_path: Path, module: str, child_code: str = CHILD) -> tuple[Path, Path, str]:
    """Run the child until the first step runs, SIGKILL it; the file, the marker, the run id."""
    path, marker = tmp_path / "runs.duckdb", tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", child_code.format(module=module), str(path), str(marker)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line, f"the child said nothing: {child.stderr.read() if child.stderr else ''}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    # The worker that held the step watches its parent and exits; make sure of it.
    worker_pid = int(marker.read_text())
    _wait_gone(worker_pid)
    return path, marker, line


def _wait_gone(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _wait_done(session: fl.Session, run_id: str, timeout: float = 60.0) -> fl.RunInfo:
    deadline = time.monotonic() + timeout
    while True:
        info = session.broker.get_run(run_id)
        if info.done or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


def test_reopened_session_resumes_the_killed_run_without_a_submit(tmp_path, module_dir, caplog):
    _, module = module_dir
    path, _, run_id = _killed_mid_run(tmp_path, module)
    with caplog.at_level(logging.WARNING, logger="fuseline_nb"):
        with fl.Session(path, workers=2) as session:
            info = _wait_done(session, run_id)
            assert info.state is Status.SUCCEEDED, info
            assert info.steps["first"].result == 20 and info.steps["second"].result == 21
            assert info.steps["first"].attempts >= 2  # the killed attempt, then the resumed one
            assert session.sql("SELECT state FROM runs WHERE run_id = ?", [run_id]).fetchall() == \
                [("SUCCEEDED",)]
    assert not [r for r in caplog.records if "cannot resume" in r.getMessage()]


def test_a_definition_kept_beside_the_file_resumes_the_killed_run(tmp_path, module_dir, caplog):
    # the child keeps every definition over 16 bytes in a file beside the history (as a
    # 1,000,000-step one is); this process reads it back from there to resume the run
    _, module = module_dir
    small = "import fuseline_nb.broker.storage._duckdb_files as F\nF.FILE_BYTES = 16\n"
    path, _, run_id = _killed_mid_run(tmp_path, module, small + CHILD)
    con = duckdb.connect(str(path), read_only=True)
    [(blob, name)] = con.execute("SELECT definition, definition_file FROM fl_definitions").fetchall()
    con.close()
    assert blob is None and (Path(f"{path}.values") / name).is_file()
    with caplog.at_level(logging.WARNING, logger="fuseline_nb"):
        with fl.Session(path, workers=2) as session:
            info = _wait_done(session, run_id)
            assert info.state is Status.SUCCEEDED, info
            assert info.steps["second"].result == 21
    assert not [r for r in caplog.records if "cannot resume" in r.getMessage()]


def test_unloadable_definition_is_named_and_the_run_resumes_at_submit(tmp_path, module_dir, caplog):
    mods, module = module_dir
    path, marker, run_id = _killed_mid_run(tmp_path, module)
    source = (mods / f"{module}.py").read_text()
    (mods / f"{module}.py").unlink()
    sys.modules.pop(module, None)
    importlib.invalidate_caches()
    with caplog.at_level(logging.WARNING, logger="fuseline_nb"):
        session = fl.Session(path, workers=2)
    with session:
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                  and "cannot resume" in r.getMessage()]
        assert len(warned) == 1, warned
        assert run_id in warned[0] and "'resume-chain'" in warned[0]
        assert f"No module named '{module}'" in warned[0] and "submitted again" in warned[0]
        assert session.broker.get_run(run_id).state is Status.RUNNING
        (mods / f"{module}.py").write_text(source)
        importlib.invalidate_caches()
        build = importlib.import_module(module).build
        again = session.submit(build(), {"marker": str(marker)})
        info = _wait_done(session, run_id)
        assert info.state is Status.SUCCEEDED, info
        assert info.steps["second"].result == 21
        assert again.wait(timeout=60) == 21


def test_a_shipped_definition_is_stored_once_beside_its_schema(tmp_path, module_dir):
    _, module = module_dir
    build = importlib.import_module(module).build
    marker = tmp_path / "marker"
    marker.write_text("done")  # no long first attempt
    path = tmp_path / "runs.duckdb"
    with fl.Session(path, workers=1) as session:
        wf = build()
        assert session.submit(wf, {"marker": str(marker)}).wait(timeout=60) == 21
        assert session.submit(wf, {"marker": str(marker)}).wait(timeout=60) == 21
        blob = session.broker.stored_definition(wf.workflow_id, wf.version)
        assert blob is not None and session.broker.stored_definition(wf.workflow_id, "nope") is None
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute("SELECT workflow_id, version FROM fl_definitions").fetchall()
    finally:
        con.close()
    assert rows == [(wf.workflow_id, wf.version)]


def test_a_run_without_a_stored_definition_is_named_and_resumes_at_submit(tmp_path, module_dir, caplog):
    # A run dispatched with no Session workers (the HTTP service, a file of history schema 4):
    # nothing was shipped, so nothing is stored; the session says so instead of idling in silence.
    _, module = module_dir
    build = importlib.import_module(module).build
    marker = tmp_path / "marker"
    marker.write_text("done")
    path = tmp_path / "runs.duckdb"
    from fuseline_nb.broker import DuckDBBroker

    with DuckDBBroker(str(path)) as broker:
        run_id = broker.dispatch_workflow(build().to_schema(), {"marker": str(marker)})
    with caplog.at_level(logging.WARNING, logger="fuseline_nb"):
        session = fl.Session(path, workers=1)
    with session:
        warned = [r.getMessage() for r in caplog.records if "cannot resume" in r.getMessage()]
        assert len(warned) == 1 and run_id in warned[0] and "holds no definition" in warned[0], warned
        session.submit(build(), {"marker": str(marker)}).wait(timeout=60)
        info = _wait_done(session, run_id)
        assert info.state is Status.SUCCEEDED and info.steps["second"].result == 21, info


def test_a_session_reopened_on_dask_resumes_the_killed_run_without_a_submit(tmp_path, module_dir, caplog):
    distributed = pytest.importorskip("distributed")
    _, module = module_dir
    path, _, run_id = _killed_mid_run(tmp_path, module)
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=2,
                                  dashboard_address=":0") as cluster:
        with caplog.at_level(logging.WARNING, logger="fuseline_nb"):
            with fl.Session(path, dask=cluster.scheduler_address) as session:
                info = _wait_done(session, run_id)
                assert info.state is Status.SUCCEEDED, info
                assert info.steps["second"].result == 21
    assert not [r for r in caplog.records if "cannot resume" in r.getMessage()]


def test_a_session_without_workers_names_the_runs_nothing_can_resume(tmp_path, module_dir, caplog):
    _, module = module_dir
    build = importlib.import_module(module).build
    marker = tmp_path / "marker"
    marker.write_text("done")
    path = tmp_path / "runs.duckdb"
    with fl.Session(path, workers=1) as session:  # stores the definition
        assert session.submit(build(), {"marker": str(marker)}).wait(timeout=60) == 21
    from fuseline_nb.broker import DuckDBBroker

    with DuckDBBroker(str(path)) as broker:  # a run left unfinished
        run_id = broker.dispatch_workflow(build().to_schema(), {"marker": str(marker)})
    with caplog.at_level(logging.WARNING, logger="fuseline_nb"):
        session = fl.Session(path, workers=0)
    with session:
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1, warned
        assert run_id in warned[0] and "'resume-chain'" in warned[0] and "workers=0" in warned[0]
        assert f"fl.Session({str(path)!r}, workers=2)" in warned[0]
        assert session.broker.get_run(run_id).state is Status.RUNNING
    with fl.Session(path, workers=1) as session:  # what the warning says to do
        info = _wait_done(session, run_id)
        assert info.state is Status.SUCCEEDED and info.steps["second"].result == 21, info
