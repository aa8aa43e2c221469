"""Crash (session 7): the history's disk fills up mid-run, then space is freed — nothing may be lost.

A child process (a kernel) opens a Session on a real DuckDB file, then its
files may grow no further (``RLIMIT_FSIZE``: what a full disk looks like to
DuckDB, "File too large"); a run of four steps with 400 kB results ends
while the file cannot grow. Before: the flush fell back to the "safe form"
meant for one bad value and wrote the run WITHOUT its results (NULL pickles,
no event details) — after reopening, ``get_run(...).steps[s].result`` was
``None`` for a SUCCEEDED step, silently, for good, although the space came
back a moment later. Now the rows wait in memory whole, a read says what is
wrong and what to do, and once the file can grow they are written as made.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuseline_nb.broker import DuckDBBroker

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")]

MODULE = '''
import os
from fuseline_nb import Depends, FunctionStep, Workflow

def b0(seed: int) -> bytes:
    return os.urandom(400_000)

def b1(x: bytes = Depends(b0)) -> bytes:
    return os.urandom(400_000)

def b2(x: bytes = Depends(b1)) -> bytes:
    return os.urandom(400_000)

def b3(x: bytes = Depends(b2)) -> bytes:
    return os.urandom(400_000)

def small(n: int) -> int:
    return n + 1

def build():
    return Workflow(outputs=[FunctionStep(b3)], workflow_id="crash7-disk")

def warmup():
    return Workflow(outputs=[FunctionStep(small)], workflow_id="crash7-warm")
'''

CHILD = '''
import hashlib, json, os, resource, signal, sys
import fuseline_nb as fl
from fuseline_nb.errors import StorageError
from crash7disk import build, warmup

def main():
    path = sys.argv[1]
    out = {}
    session = fl.Session(path, workers=1)
    session.submit(warmup(), {"n": 1}).wait(timeout=60)
    session.broker.flush()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    size = max(os.path.getsize(p) for p in (path, path + ".wal") if os.path.exists(p))
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300_000, hard))  # "the disk is full"
    run = session.submit(build(), {"seed": 1})
    run.wait(timeout=60)
    out["state"] = run.state.name
    out["results"] = {name: hashlib.sha256(step.result).hexdigest() for name, step in run.info().steps.items()}
    out["run_id"] = run.id
    if sys.argv[2] == "close":  # closed while the disk is still full: no next try
        try:
            session.close()
            out["close"] = "no error"
        except StorageError as exc:
            out["close"] = str(exc)
        print(json.dumps(out), flush=True)
        return
    try:
        session.sql("SELECT count(*) FROM runs").fetchall()
        out["read"] = "no error"
    except StorageError as exc:
        out["read"] = str(exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space freed
    out["after"] = session.sql("SELECT state FROM runs WHERE run_id = ?", [run.id]).fetchall()[0][0]
    session.close()
    print(json.dumps(out), flush=True)

if __name__ == "__main__":
    main()
'''


def _child(tmp_path: Path, mode: str) -> tuple[Path, dict]:
    """Run the child kernel (``mode``: ``free`` frees the space before closing, ``close`` closes while full)."""
    (tmp_path / "crash7disk.py").write_text(MODULE)
    (tmp_path / "child.py").write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    path = tmp_path / "h.duckdb"
    done = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(path), mode], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return path, json.loads(done.stdout.strip().splitlines()[-1])


def test_a_full_disk_mid_run_loses_no_result_once_space_is_freed(tmp_path: Path) -> None:
    path, out = _child(tmp_path, "free")
    assert out["state"] == "SUCCEEDED", out
    # while the file cannot grow, a read says so, names the file, what to do and that nothing is lost yet
    assert "cannot be written (File too large)" in out["read"], out["read"]
    assert "free space on its disk" in out["read"] and str(path) in out["read"], out["read"]
    assert "wait in memory" in out["read"], out["read"]
    assert out["after"] == "SUCCEEDED"
    broker = DuckDBBroker(path)  # reopened: every result as the workers made it
    try:
        info = broker.get_run(out["run_id"])
        got = {name: hashlib.sha256(step.result).hexdigest() for name, step in info.steps.items()
               if step.result is not None}
        assert got == out["results"], (sorted(got), sorted(out["results"]))
        details = broker.sql("SELECT count(*) FROM events WHERE run_id = ? AND kind = 'step_finished' "
                             "AND detail_json IS NOT NULL", [out["run_id"]]).fetchall()[0][0]
        assert details == 4
    finally:
        broker.close()


def test_closing_on_a_full_disk_says_what_was_lost_and_keeps_the_runs_end(tmp_path: Path) -> None:
    # Before: close() wrote the safe form without a word to the caller (an error in the log only).
    path, out = _child(tmp_path, "close")
    assert out["state"] == "SUCCEEDED", out
    assert out["close"].startswith(f"closing the run history {str(path)!r}: it cannot be written (File too large)")
    assert "what fit was written without results and event details" in out["close"], out["close"]
    assert "Free space on its disk before closing" in out["close"], out["close"]
    broker = DuckDBBroker(path)  # what fit: the run's end and its steps' states
    try:
        info = broker.get_run(out["run_id"])
        assert info.state.name == "SUCCEEDED"
        assert sorted((name, step.state.name) for name, step in info.steps.items()) == [
            (f"b{i}", "SUCCEEDED") for i in range(4)]
    finally:
        broker.close()


def test_the_file_fault_is_told_apart_from_a_bad_value() -> None:
    from fuseline_nb.broker.storage._duckdb_write import fault_error, file_fault
    from fuseline_nb.errors import StorageError

    assert file_fault(OSError(28, "No space left on device")) == "No space left on device"
    wrapped = StorageError("DuckDB failed on 'h.duckdb': Could not write file \"h.duckdb.wal\": File too large")
    assert file_fault(wrapped) == "File too large"
    try:
        raise StorageError("writing failed") from OSError(30, "Read-only file system")
    except StorageError as exc:
        assert file_fault(exc) == "Read-only file system"
    assert file_fault(ValueError("Conversion Error: could not convert")) is None
    with pytest.raises(StorageError, match=r"'h.duckdb' cannot be written \(Read-only file system\): free space"):
        raise fault_error("h.duckdb", "Read-only file system")
