"""The kernel-worker channel's plumbing: the server's poller (worker/_watch.py: epoll, or poll elsewhere)
and the pipe pair each worker talks over (worker/_duplex.py)."""

from __future__ import annotations

import multiprocessing
import os
import select
import time

import pytest

from fuseline_nb.worker._duplex import PIPE_BYTES, Duplex, duplex_pipe
from fuseline_nb.worker._watch import Watch
from fuseline_nb.worker.latency import FrameReader, receive, send


def _watch(kind: str, monkeypatch: pytest.MonkeyPatch) -> Watch:
    if kind == "poll":
        monkeypatch.delattr(select, "epoll", raising=False)
    elif not hasattr(select, "epoll"):
        pytest.skip("no epoll here")
    return Watch()


@pytest.mark.parametrize("kind", ["epoll", "poll"])
def test_a_watch_answers_the_values_of_the_readable_descriptors_and_waits_up_to_its_timeout(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    watch = _watch(kind, monkeypatch)
    a, b = multiprocessing.Pipe()
    r, w = os.pipe()
    try:
        watch.register(b, ("conn", "w1"))  # a file object
        watch.register(r, ("wake", None))  # a descriptor
        with pytest.raises(KeyError, match="already watched"):
            watch.register(r, ("wake", None))
        t0 = time.perf_counter()
        assert watch.wait(0.05) == []
        assert time.perf_counter() - t0 >= 0.04  # it waited (rounded up to whole milliseconds, never less)
        a.send_bytes(b"x")
        assert watch.wait(0) == [("conn", "w1")]
        os.write(w, b"!")
        assert sorted(watch.wait(None), key=str) == [("conn", "w1"), ("wake", None)]
        watch.unregister(b)
        assert watch.wait(0) == [("wake", None)]
        with pytest.raises(KeyError):
            watch.unregister(b)
        a.close()
        b.close()
        with pytest.raises(OSError):  # a closed connection has no descriptor any more
            watch.unregister(b)
    finally:
        watch.close()
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("kind", ["epoll", "poll"])
def test_a_peer_that_closed_its_end_reads_as_readable(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    watch = _watch(kind, monkeypatch)
    a, b = multiprocessing.Pipe()
    try:
        watch.register(b, "w1")
        a.close()  # a worker process that died: its pipe reads EOF, the server must look
        assert watch.wait(1.0) == ["w1"]
    finally:
        watch.close()
        b.close()


def test_a_duplex_pipe_carries_messages_both_ways_and_each_end_reads_eof_when_the_other_closes() -> None:
    kernel, worker = duplex_pipe(multiprocessing.get_context("spawn"))
    try:
        send(kernel, ("assignments", [("wf", "r1", "a")]))
        send(worker, ("report_and_get", ("w1", ("wf", "r1", "a"), True)))
        assert receive(worker) == ("assignments", [("wf", "r1", "a")])
        assert [m for m in FrameReader(kernel).read()]  # the kernel's reader: one read, the whole message
        big = b"x" * 100_000  # over the one-write size: sent through send_bytes
        kernel.send_bytes(big)
        assert FrameReader(worker).next() == big
        worker.close()
        with pytest.raises(EOFError):
            kernel.recv_bytes()
        with pytest.raises(OSError):  # a closed end refuses to write instead of writing to a reused number
            send(worker, ("ok", None))
    finally:
        kernel.close()
        worker.close()


def test_both_ends_of_a_duplex_pipe_can_write_a_burst_at_once_without_reading() -> None:
    # a worker's reports and the kernel's batch may cross; each pipe holds at least what a socket pair held
    kernel, worker = duplex_pipe(multiprocessing.get_context("spawn"))
    try:
        burst = b"y" * (PIPE_BYTES * 3 // 4)
        for end in (kernel, worker):
            os.set_blocking(end.wfd, False)
            assert os.write(end.wfd, burst) == len(burst)  # a full pipe would refuse (BlockingIOError)
    finally:
        kernel.close()
        worker.close()


def _echo(conn: Duplex) -> None:
    conn.send(("pid", os.getpid(), conn.recv()))
    conn.close()


def test_a_duplex_end_travels_to_a_spawned_process() -> None:
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = duplex_pipe(ctx)
    proc = ctx.Process(target=_echo, args=(theirs,))
    proc.start()
    theirs.close()  # as the pool does: the child holds its end now
    try:
        mine.send("hello")
        assert mine.poll(30.0)
        kind, pid, got = mine.recv()
        assert (kind, pid, got) == ("pid", proc.pid, "hello")
        proc.join(30.0)
        with pytest.raises(EOFError):  # the child exited: its ends closed, ours reads EOF
            mine.recv_bytes()
    finally:
        mine.close()
        proc.join(5.0)
