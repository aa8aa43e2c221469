"""Back-pressure on the DuckDB history's buffer (broker/storage/_duckdb_pressure.py).

A real broker on a real file runs a real fan-out (``ProcessEngine`` in this
process); the history's writes are slowed (a slow disk: each flush sleeps)
so the flusher falls behind, as on a busy machine. The broker must then
wait for the flusher instead of buffering without bound, lose nothing, never
wait on a disk that fails, and keep the crash promise (test_duckdb_restart's
child, killed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from fuseline_nb import FunctionStep, Status, Workflow
from fuseline_nb.broker import DuckDBBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.broker.storage._duckdb_pressure import MAX_BUFFERED_ROWS, Pressure
from fuseline_nb.errors import StorageError
from fuseline_nb.worker import ProcessEngine


def _fan(n: int) -> Workflow:
    root, sink = FunctionStep(lambda: 1, name="root"), FunctionStep(lambda: 2, name="sink")
    for i in range(n):
        m = FunctionStep(lambda: None, name=f"m{i}")
        root >> m
        m >> sink
    return Workflow(outputs=[sink], workflow_id=f"pressure-fan-{n}")


def _slow(st, pause: float, sizes: list[int]):
    """Make each of ``st``'s writes take ``pause`` longer (a slow disk), noting the rows each wrote."""
    write = st._write

    def slow(batch):
        sizes.append(len(batch.steps) + len(batch.events) + len(batch.results))
        time.sleep(pause)
        write(batch)

    st._write = slow


def _history(broker, run_id: str) -> tuple[list, list]:
    steps = broker.sql("SELECT step, state, attempts FROM steps WHERE run_id = ? ORDER BY step",
                       [run_id]).fetchall()
    seqs = [s for (s,) in broker.sql("SELECT seq FROM events WHERE run_id = ? ORDER BY seq", [run_id]).fetchall()]
    return steps, seqs


def test_the_default_bound():
    assert Pressure().bound == MAX_BUFFERED_ROWS == 3_000_000


def test_a_slow_flush_holds_the_broker_back_and_loses_nothing(tmp_path):
    wf = _fan(600)
    with DuckDBBroker(tmp_path / "h.duckdb", flush_interval=0.05) as broker:
        st = broker.storage
        st._pressure.bound = 300
        sizes: list[int] = []
        _slow(st, 0.05, sizes)
        client = LocalBrokerClient(broker)
        run_id = client.dispatch_workflow(wf.to_schema())
        ProcessEngine(client, [wf]).work()
        assert broker.get_run(run_id).state is Status.SUCCEEDED
        steps, seqs = _history(broker, run_id)
    # the root's report queues 600 steps at once (two calls of 600 rows: the records, the events);
    # no other write took more than the bound and what one call adds (an engine reports a step at a time)
    assert max(sizes) <= 600 + 10, sizes
    assert sorted(sizes)[-3] <= 300 + 10, sizes
    assert st._pressure.waits >= 3, (st._pressure.waits, sizes)
    # nothing lost: every step once, SUCCEEDED, every event numbered without a gap
    assert len(steps) == 602 and {(state, attempts) for _, state, attempts in steps} == {("SUCCEEDED", 1)}
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 3 * 602


def test_without_a_bound_the_same_slow_flush_lets_the_buffer_grow(tmp_path):
    # the test above is only worth something if the slow disk does make the buffer grow
    wf = _fan(600)
    with DuckDBBroker(tmp_path / "h.duckdb", flush_interval=0.05) as broker:
        st = broker.storage
        sizes: list[int] = []
        _slow(st, 0.05, sizes)
        client = LocalBrokerClient(broker)
        run_id = client.dispatch_workflow(wf.to_schema())
        ProcessEngine(client, [wf]).work()
        steps, _ = _history(broker, run_id)
    assert max(sizes) > 3 * 602, sizes  # the whole run waited in memory for one write
    assert st._pressure.waits == 0 and len(steps) == 602


def test_a_failing_disk_never_stops_the_run_and_its_rows_wait_in_memory(tmp_path, caplog):
    wf = _fan(300)
    with DuckDBBroker(tmp_path / "h.duckdb", flush_interval=0.05) as broker:
        st = broker.storage
        st._pressure.bound = 50
        write = st._write

        def broken(batch):
            raise StorageError("No space left on device")

        st._write = broken
        client = LocalBrokerClient(broker)
        run_id = client.dispatch_workflow(wf.to_schema())
        done = threading.Event()
        engine = threading.Thread(target=lambda: (ProcessEngine(client, [wf]).work(), done.set()), daemon=True)
        engine.start()
        assert done.wait(10), "the run stopped while the history could not be written"
        assert run_id not in [r for r, *_ in broker.unfinished_runs()]  # it ended
        assert st._buffered() > 50  # kept for the next write, not dropped
        st._write = write  # the disk is back
        assert broker.get_run(run_id).state is Status.SUCCEEDED
        steps, seqs = _history(broker, run_id)
    assert len(steps) == 302 and {state for _, state, _ in steps} == {"SUCCEEDED"}
    assert seqs == list(range(1, len(seqs) + 1))
    assert "No space left on device" in caplog.text


def test_a_writer_does_not_wait_for_a_flusher_that_is_gone(tmp_path):
    with DuckDBBroker(tmp_path / "h.duckdb") as broker:
        st = broker.storage
        st._pressure.bound = 5
        flusher = st._thread
        st._stopping = True  # the flusher thread ends (as if it had died)
        for event in (st._stop, st._full, st._wake):
            event.set()
        flusher.join(5)
        st._stopping = False
        assert not flusher.is_alive()
        wf = _fan(20)
        client = LocalBrokerClient(broker)
        run_id = client.dispatch_workflow(wf.to_schema())
        t0 = time.monotonic()
        ProcessEngine(client, [wf]).work()
        assert time.monotonic() - t0 < 10
        steps, _ = _history(broker, run_id)  # a read flushes in this thread
    assert len(steps) == 22 and st._pressure.waits == 0


CHILD = '''
import os, signal, sys, time
from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.broker import DuckDBBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker import ProcessEngine

def fan(n):
    root, sink = FunctionStep(lambda: 1, name="root"), FunctionStep(lambda: 2, name="sink")
    for i in range(n):
        m = FunctionStep(lambda: None, name=f"m{i}")
        root >> m
        m >> sink
    return Workflow(outputs=[sink], workflow_id="pressure-kill")

WF = fan(400)
if __name__ == "__main__":
    broker = DuckDBBroker(sys.argv[1], flush_interval=0.05)
    st = broker.storage
    st._pressure.bound = 200
    write = st._write
    def slow(batch):
        time.sleep(0.05)
        write(batch)
    st._write = slow
    client = LocalBrokerClient(broker)
    print(client.dispatch_workflow(WF.to_schema()), flush=True)
    engine = ProcessEngine(client, [WF])
    engine.work(max_steps=250)
    print(st._pressure.waits, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # with rows buffered and a write maybe in flight
'''


@pytest.mark.slow
def test_a_process_killed_while_held_back_resumes_as_the_history_promises(tmp_path):
    (tmp_path / "child.py").write_text(CHILD)
    path = tmp_path / "h.duckdb"
    done = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == -signal.SIGKILL, done.stderr
    run_id, waits = done.stdout.split()
    assert int(waits) >= 1  # the child was held back before it died
    sys.path.insert(0, str(tmp_path))
    try:
        from child import WF
    finally:
        sys.path.remove(str(tmp_path))
    with DuckDBBroker(path) as broker:
        written = broker.sql("SELECT count(*) FROM steps WHERE run_id = ? AND state = 'SUCCEEDED'",
                             [run_id]).fetchall()[0][0]
        assert written >= 1  # what was flushed before the kill is there
        ProcessEngine(LocalBrokerClient(broker), [WF]).work()
        assert broker.get_run(run_id).state is Status.SUCCEEDED
        steps, seqs = _history(broker, run_id)
    assert len(steps) == 402 and {state for _, state, _ in steps} == {"SUCCEEDED"}
    assert seqs == sorted(set(seqs))  # the resumed run's events continue the written ones
