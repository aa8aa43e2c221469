"""Crash (session 7): a flush interval that is not a number of seconds is refused, not a flusher that spins or dies.

Before: ``flush_interval=float("nan")`` passed the ``<= 0`` check and the
flusher thread spun at 100% of a core (0.5 s of CPU in 0.5 s), and
``float("inf")`` (meant as "only on reads and close") killed the flusher
thread with ``OverflowError: timestamp out of range for platform time_t``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from fuseline_nb.broker import DuckDBBroker
from fuseline_nb.broker.storage import DuckDBRuntimeStorage


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), threading.TIMEOUT_MAX * 2, 0, -1])
def test_a_flush_interval_that_is_no_number_of_seconds_is_refused(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match=r"flush_interval must be > 0, not .*a number of seconds, at most"):
        DuckDBBroker(tmp_path / "h.duckdb", flush_interval=bad)
    assert not [t for t in threading.enumerate() if t.name.startswith("fuseline-duckdb-flush") and "h.duckdb" in t.name]


def _cpu_seconds(thread: threading.Thread) -> float:
    """CPU time one thread of this process has used (Linux: /proc's schedstat, nanoseconds on a CPU)."""
    with open(f"/proc/self/task/{thread.native_id}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads a thread's CPU time from /proc")
def test_the_longest_flush_interval_keeps_an_idle_flusher_that_writes_on_read(tmp_path: Path) -> None:
    st = DuckDBRuntimeStorage(tmp_path / "h.duckdb", flush_interval=threading.TIMEOUT_MAX)
    try:
        assert st.list_runs() == []  # (a read waits for the flusher's warm-up: imports, not counted)
        st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
        cpu = _cpu_seconds(st._thread)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # the flusher waits; it does not die nor spin
            assert st._thread.is_alive()
            time.sleep(0.05)
        assert _cpu_seconds(st._thread) - cpu < 0.1  # a spinning flusher: ~0.3 s
        assert [r.run_id for r in st.list_runs()] == ["r1"]  # a read writes what is buffered
    finally:
        st.close()


def test_reading_a_closed_sessions_history_says_where_it_is_and_how_to_read_it(tmp_path: Path) -> None:
    # Before: session.sql after close() raised "DuckDBRuntimeStorage('.../h.duckdb') is closed" (an internal name,
    # nothing to do); a user closing the session and then asking for the figures meets it first.
    import duckdb

    import fuseline_nb as fl
    from fuseline_nb.errors import StorageClosedError

    path = str(tmp_path / "h.duckdb")
    session = fl.Session(path, workers=0)
    session.close()
    for read in (lambda: session.sql("SELECT count(*) FROM runs"), session.runs):
        with pytest.raises(StorageClosedError, match=r"this Session is closed; its history '.*h\.duckdb' is kept: "
                                                     r"read it with a new fl\.Session\('.*h\.duckdb', workers=0\)"):
            read()
    con = duckdb.connect(path, read_only=True)  # what the message says works
    assert con.sql("SELECT count(*) FROM runs").fetchall() == [(0,)]
    con.close()
    memory = fl.Session(":memory:", workers=0)
    memory.close()
    with pytest.raises(StorageClosedError, match="this Session is closed; create a new one"):
        memory.sql("SELECT 1")
