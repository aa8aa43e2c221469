"""The channel server's poller (worker/_watch.py): epoll where there is one, poll elsewhere — same answers."""

from __future__ import annotations

import multiprocessing
import os
import select
import time

import pytest

from fuseline_nb.worker._watch import Watch


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
