"""A big result costs the kernel about twice its size, not three to ten times (issue 18 item 11).

Where the copies were: the pipe reader grew a buffer and copied each message
out twice (3x in memory history); DuckDB holds a big BLOB several times over
while inserting it and keeps it cached (10x with a DuckDB file, 6.6x reading
it back). Now a big message is read into a buffer of its size and handed over
as it is, and a result bigger than ``FILE_BYTES`` is written to a file beside
the history straight from its bytes. Guarded without timing: tracemalloc
peaks for the reader, file contents for the storage, and the kernel's peak
RSS (``ru_maxrss`` of a fresh process, benchmarks/bench_memory.py) under a
generous bound.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

from fuseline_nb import Status
from fuseline_nb.broker.storage import DuckDBRuntimeStorage
from fuseline_nb.broker.storage._duckdb_files import FILE_BYTES
from fuseline_nb.worker.channel import FrameReader, send
from fuseline_nb.workflow.runinfo import StepInfo
from fuseline_nb.workflow.value import Value

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_memory.py"


def test_a_big_message_is_read_into_one_buffer_of_its_size() -> None:
    a, b = multiprocessing.Pipe()
    size = 8 * 1024 * 1024
    payload = os.urandom(size)
    message = pickle.dumps(("report", (payload,)), protocol=pickle.HIGHEST_PROTOCOL)  # made before tracing
    writer = threading.Thread(target=lambda: (a.send_bytes(message), send(a, ("ok", (1,)))))
    reader = FrameReader(b)
    tracemalloc.start()
    try:
        writer.start()
        frame = reader.next()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        writer.join()
    try:
        assert pickle.loads(frame) == ("report", (payload,))
        assert pickle.loads(reader.next()) == ("ok", (1,))  # the message after it is intact
        assert peak < 1.3 * size, f"reading an {size >> 20} MB message peaked at {peak / size:.2f}x its size"
    finally:
        a.close()
        b.close()


def _stored(st: DuckDBRuntimeStorage, step: str) -> tuple[object, object, object]:
    return st._execute("SELECT result_pickle IS NULL, result_file, result_bytes FROM fl_steps "
                       "WHERE step = ?", [step])[0]


def test_a_big_result_goes_to_a_file_beside_the_history_and_reads_back(tmp_path) -> None:
    path = tmp_path / "h.duckdb"
    big, small = Value.of(os.urandom(FILE_BYTES + 1)), Value.of(b"small")
    with DuckDBRuntimeStorage(path) as st:
        st.create_run("r1", "wf", "1", {}, ["big", "small"], created_at=0.0)
        for name, value in (("big", big), ("small", small)):
            st.set_result("r1", name, value)
            st.save_step("r1", name, StepInfo(Status.SUCCEEDED, attempts=1))
        st.flush()
        is_null, name, size = _stored(st, "big")
        assert is_null and size == big.size
        assert (tmp_path / "h.duckdb.values" / name).read_bytes() == big.data  # written as they are
        assert _stored(st, "small")[:2] == (False, None)  # small ones stay in the file
        assert st.sql("SELECT result_preview FROM steps WHERE step = 'big'").fetchall() == [(big.preview,)]
    with DuckDBRuntimeStorage(path) as st:  # read back from another storage
        info = st.load_run("r1")
        assert info.steps["big"].value == big and info.steps["big"].value.fingerprint == big.fingerprint
        assert st.get_result("r1", "big").load() == big.load()
        assert info.steps["small"].result == b"small"


def test_a_big_result_whose_file_is_gone_is_named(tmp_path, caplog) -> None:
    path = tmp_path / "h.duckdb"
    with DuckDBRuntimeStorage(path) as st:
        st.create_run("r1", "wf", "1", {}, ["big"], created_at=0.0)
        st.set_result("r1", "big", Value.of(os.urandom(FILE_BYTES + 1)))
        st.save_step("r1", "big", StepInfo(Status.SUCCEEDED, attempts=1))
    for f in (tmp_path / "h.duckdb.values").iterdir():
        f.unlink()
    with DuckDBRuntimeStorage(path) as st, caplog.at_level(logging.WARNING, logger="fuseline_nb"):
        info = st.load_run("r1")
        assert info.steps["big"].state is Status.SUCCEEDED and info.steps["big"].value is None
    assert any("the result of step 'big' of run r1 is lost" in r.getMessage() and "h.duckdb.values" in
               r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_a_big_input_goes_to_a_file_too_and_is_not_pickled_again(tmp_path) -> None:
    path = tmp_path / "h.duckdb"
    size = 4 * FILE_BYTES
    big, small = Value.of(os.urandom(size)), Value.of({"n": 1})
    with DuckDBRuntimeStorage(path) as st:
        st.create_run("r0", "wf", "1", {"small": small}, ["s"], created_at=0.0)
        st.flush()  # warm: the first flush imports and caches what every flush uses
        st.create_run("r1", "wf", "1", {"big": big, "small": small}, ["s"], created_at=0.0)
        tracemalloc.start()
        try:
            st.flush()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 0.5 * size, f"writing the run's inputs made Python copies of {peak / size:.2f}x the input"
        (stored,) = st._execute("SELECT octet_length(inputs_pickle) FROM fl_runs WHERE run_id = 'r1'")[0]
        assert stored < 10_000  # the bytes are in the folder, not in the file
        assert [f.read_bytes() == big.data for f in (tmp_path / "h.duckdb.values").iterdir()] == [True]
        assert st.sql("SELECT inputs_json FROM runs WHERE run_id = 'r1'").fetchall()[0][0].startswith('{"big": "<')
    with DuckDBRuntimeStorage(path) as st:
        inputs = st.load_run("r1").input_values
        assert inputs["big"] == big and inputs["big"].fingerprint == big.fingerprint
        assert inputs["small"].load() == {"n": 1}
        assert st.get_inputs("r1")["big"].load() == big.load()
        assert st.list_runs()[1].inputs["big"] == big.load()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["memory", "duckdb", "reopen"])
def test_the_kernel_peaks_at_about_twice_a_big_result(tmp_path, case) -> None:
    # A real worker process returns 48 MB; the kernel receives, keeps, writes and opens it
    # (reopen: a fresh kernel reads it back from the file). The copies fuseline_nb makes are
    # Python objects: their tracemalloc peak is the closed value plus the opened one (it was 3.0x
    # in memory history). What DuckDB holds is native: peak RSS catches it (it was 10x and 6.6x);
    # its bound is generous, as RSS also varies with the allocator and the machine's state. The
    # peak is the child's own VmHWM: ru_maxrss carries a big parent's size over fork and exec
    # (late in the suite it read 6x, and 4.6x once for the memory case, with 2.0x of Python objects).
    size = 48 * 1024 * 1024
    path = str(tmp_path / "h.duckdb")

    def ratios(which: str) -> tuple[float, float]:
        out = subprocess.run([sys.executable, str(BENCH), "--child", which, str(size), path, "1"],
                             capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        return got["ratio"], got["traced"]

    if case == "reopen":
        ratios("duckdb")  # writes the file to read back
    rss, python = ratios(case)
    assert python < 2.2, f"{case}: the kernel's Python allocations peaked at {python:.2f}x the result"
    if case != "memory":
        assert rss < 5.0, f"{case}: the kernel's RSS grew {rss:.2f}x the result"
