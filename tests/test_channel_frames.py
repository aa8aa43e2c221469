"""The worker channel's latency measures: FrameReader against multiprocessing's own Connection framing, and when to spin."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import struct
import threading
import time
from typing import Any

import pytest

from fuseline_nb.worker import _spin, latency
from fuseline_nb.worker._duplex import duplex_pipe
from fuseline_nb.worker._pipeforms import report_from
from fuseline_nb.worker.channel import ChannelClient
from fuseline_nb.worker.latency import FrameReader, Spin, receive, send


@pytest.fixture
def pipe():
    a, b = multiprocessing.Pipe()
    yield a, b
    a.close()
    b.close()


def test_several_messages_in_one_read_come_out_in_order(pipe):
    a, b = pipe
    for i in range(5):
        send(a, ("report", (i,)))
    frames = FrameReader(b).read()
    assert [pickle.loads(f) for f in frames] == [("report", (i,)) for i in range(5)]


def test_a_message_split_across_reads_is_kept_until_complete(pipe):
    a, b = pipe
    body = pickle.dumps(("ok", "x" * 50))
    raw = struct.pack("!i", len(body)) + body
    reader = FrameReader(b)
    os.write(a.fileno(), raw[:2])  # not even the whole header
    assert reader.read() == []
    os.write(a.fileno(), raw[2:20])
    assert reader.read() == []
    os.write(a.fileno(), raw[20:] + raw)  # the rest, and a second message whole
    assert [pickle.loads(f) for f in reader.read()] == [("ok", "x" * 50)] * 2


@pytest.mark.parametrize("size", [16_000, 16_385, 70_000, 3_000_000])
def test_big_messages_both_ways(pipe, size):
    a, b = pipe
    payload = os.urandom(size)
    # send() output is what Connection.recv_bytes expects...
    t = threading.Thread(target=send, args=(a, ("ok", payload)))
    t.start()
    assert receive(b) == ("ok", payload)
    t.join()
    # ...and FrameReader reads what Connection.send_bytes writes.
    t = threading.Thread(target=a.send_bytes, args=(pickle.dumps(("ok", payload)),))
    t.start()
    assert pickle.loads(FrameReader(b).next()) == ("ok", payload)
    t.join()


def test_end_of_channel_raises_eoferror(pipe):
    a, b = pipe
    send(a, ("ok", 1))
    a.close()
    reader = FrameReader(b)
    assert pickle.loads(reader.next()) == ("ok", 1)
    with pytest.raises(EOFError):
        reader.read()


def test_spin_gives_up_after_its_time_and_sees_data_at_once(pipe):
    a, b = pipe
    reader = FrameReader(b)
    t0 = time.perf_counter()
    spin = Spin(0.002)
    assert reader.spin(0.002, spin) is False
    # its whole time, unless it was taken off its CPU for a while (then it stops: see spin_until)
    assert time.perf_counter() - t0 >= 0.002 or spin.away >= _spin.AWAY_SECONDS
    send(a, ("ok", None))
    assert reader.spin(1.0) is True
    assert pickle.loads(reader.next()) == ("ok", None)


def _pattern(spin: Spin, replies: list[float]) -> list[bool]:
    """Whether ``spin`` spun for each wait; a spin's reply takes the next time of ``replies``."""
    spun = []
    for took in replies:
        while not spin.wanted():
            spun.append(False)
        spun.append(True)
        spin.took(took)
    return spun


def test_a_missed_spin_skips_1_2_4_waits_and_a_caught_one_spins_every_time_again():
    # decided by this channel's own replies: no look at the machine's load
    spin = Spin(0.02)
    assert _pattern(spin, [0.1, 0.1, 0.1, 0.0, 0.0, 0.0]) == [
        True, False, True, False, False, True, False, False, False, False, True, True, True]
    assert spin.skipped == 7
    assert not Spin(0.0).wanted()  # FUSELINE_NB_SPIN_US=0


def test_under_lasting_misses_a_side_spins_once_per_max_skip_waits():
    spin = Spin(0.02)
    spun = _pattern(spin, [0.1] * 12)
    assert spun.count(True) == 12 and len(spun) - 12 == spin.skipped
    gaps = [len(g) for g in "".join("x" if s else "." for s in spun).split("x")[1:-1]]
    assert gaps == [1, 2, 4, 8, 16, 32, latency.MAX_SKIP, latency.MAX_SKIP, latency.MAX_SKIP,
                    latency.MAX_SKIP, latency.MAX_SKIP]


def test_a_spinning_client_gets_its_replies_quick_or_slow(pipe):
    a, b = pipe
    client = ChannelClient(a, spin=0.02)

    def answer(delay: float) -> None:
        receive(b)
        time.sleep(delay)
        send(b, ("ok", {"status": "ok"}))

    for delay in (0.1, 0.1, 0.0, 0.0):  # the first spin misses, the second wait skips it, then quick
        t = threading.Thread(target=answer, args=(delay,))
        t.start()
        t0 = time.perf_counter()
        assert client.status() == {"status": "ok"}
        assert time.perf_counter() - t0 >= delay
        t.join()
    assert client.spin.skipped >= 1  # the 100 ms reply was missed (the rule itself: the tests above)


def test_a_worker_pipe_says_what_it_cannot_do(pipe):
    """Cancelling and repositories are the kernel's business: the pipe refuses them by name."""
    from fuseline_nb.broker import RepositoryInfo
    from fuseline_nb.errors import TransportUnsupportedError

    client = ChannelClient(pipe[0])
    with pytest.raises(TransportUnsupportedError, match=r"ChannelClient cannot cancel runs; cancel through"):
        client.cancel_run("some-run")
    with pytest.raises(NotImplementedError, match=r"ChannelClient does not carry repositories"):
        client.register_repository(RepositoryInfo(name="r", url="u", workflows=[]))
    with pytest.raises(TransportUnsupportedError, match="does not carry repositories"):
        client.list_repositories()


def _held_client(pipe, monkeypatch, hold: float, timeouts=(None, None, None)):
    """A pool worker's client holding three prefetched assignments; the kernel end is ``pipe[1]``."""
    from fuseline_nb.broker.base import StepAssignment
    from fuseline_nb.worker import channel

    monkeypatch.setattr(channel, "HOLD_SECONDS", hold)
    a, b = pipe
    client = ChannelClient(a, wait=True)
    batch = [StepAssignment("wf", "r1", f"s{i}", {}, 0.0, 60.0, timeout=t) for i, t in enumerate(timeouts)]
    send(b, ("assignments", batch))  # the reply is waiting before the client asks
    assert client.get_step("w1").step_name == "s0"
    reader = FrameReader(b)
    assert [pickle.loads(m)[0] for m in reader.read()] == ["get_step"]
    return client, reader


def _report(step: str, took: float):
    from fuseline_nb.broker.base import StepReport
    from fuseline_nb.workflow.status import Status

    return StepReport("wf", "r1", step, Status.SUCCEEDED, None, 1, started_at=100.0, finished_at=100.0 + took)


def _pending(reader: FrameReader) -> list:
    poll = select.poll()
    poll.register(reader._conn.fileno(), select.POLLIN)
    return [pickle.loads(m) for m in reader.read()] if poll.poll(0) else []


def test_reports_of_quick_steps_leave_together_with_the_request_for_more_work(pipe, monkeypatch):
    client, reader = _held_client(pipe, monkeypatch, hold=60.0)
    client.report_step("w1", _report("s0", 0.0))
    assert client.get_step("w1").step_name == "s1"
    client.report_step("w1", _report("s1", 0.0))
    assert client.get_step("w1").step_name == "s2"
    assert _pending(reader) == []  # nothing written yet: two reports held
    send(pipe[1], ("assignments", []))  # the kernel's answer to what comes next
    client.report_step("w1", _report("s2", 0.0))
    got = [pickle.loads(m) for m in reader.read()]  # both messages in one read: they left in one write
    assert [(k, [report_from(r).step_name for r in (a[1] if k == "reports" else [a[1]])]) for k, a in got] == [
        ("reports", ["s0", "s1"]), ("report_and_get", ["s2"])]


def test_a_slow_steps_report_and_the_ones_held_before_it_leave_at_once(pipe, monkeypatch):
    client, reader = _held_client(pipe, monkeypatch, hold=0.5)
    client.report_step("w1", _report("s0", 0.0))
    client.get_step("w1")
    client.report_step("w1", _report("s1", 1.0))  # longer than the hold: no reason to wait for the next step
    assert [(k, [report_from(r).step_name for r in a[1]]) for k, a in _pending(reader)] == [("reports", ["s0", "s1"])]


def test_a_held_report_leaves_when_the_next_step_starts_after_the_hold(pipe, monkeypatch):
    client, reader = _held_client(pipe, monkeypatch, hold=0.02)
    client.report_step("w1", _report("s0", 0.0))
    assert _pending(reader) == []
    time.sleep(0.03)  # the hold is a time: let it pass
    assert client.get_step("w1").step_name == "s1"
    assert [(k, [report_from(r).step_name for r in a[1]]) for k, a in _pending(reader)] == [("reports", ["s0"])]
    client.flush()  # nothing more held: nothing written
    assert _pending(reader) == []


def test_nothing_is_held_across_the_start_or_the_end_of_a_step_with_a_timeout(pipe, monkeypatch):
    # the kernel times a step from when its worker's earlier reports arrive: none may wait
    client, reader = _held_client(pipe, monkeypatch, hold=60.0, timeouts=(None, 5.0, None))
    client.report_step("w1", _report("s0", 0.0))
    assert _pending(reader) == []
    assert client.get_step("w1").step_name == "s1"  # a timed step starts: what is held leaves first
    assert [(k, [report_from(r).step_name for r in a[1]]) for k, a in _pending(reader)] == [("reports", ["s0"])]
    client.report_step("w1", _report("s1", 0.0))  # and its own end is never held
    assert [(k, [report_from(r).step_name for r in a[1]]) for k, a in _pending(reader)] == [("reports", ["s1"])]


def _batch(n: int, first: int = 0):
    from fuseline_nb.broker.base import StepAssignment

    return [StepAssignment("wf", "r1", f"s{i}", {}, 0.0, 60.0) for i in range(first, first + n)]


def test_a_worker_asks_for_its_next_batch_half_way_with_its_held_reports_in_one_write(pipe, monkeypatch):
    monkeypatch.setattr("fuseline_nb.worker.channel.HOLD_SECONDS", 60.0)
    a, b = pipe
    client = ChannelClient(a, wait=True)
    send(b, ("assignments", _batch(8)))
    ran = [client.get_step("w1").step_name]
    reader = FrameReader(b)
    assert [k for k, _ in _pending(reader)] == ["get_step"]  # the first ask, empty-handed
    for _ in range(2):
        client.report_step("w1", _report(ran[-1], 0.0))
        ran.append(client.get_step("w1").step_name)
    client.report_step("w1", _report(ran[-1], 0.0))
    assert _pending(reader) == []  # five left in hand: not yet
    ran.append(client.get_step("w1").step_name)  # s3 starts with four left: ask now, while they run
    got = _pending(reader)
    assert [k for k, _ in got] == ["reports", "get_step"]
    assert [report_from(r).step_name for r in got[0][1][1]] == ["s0", "s1", "s2"] and got[1][1] == ("w1", False)
    send(b, ("assignments", _batch(6, first=8)))  # the answer waits in the pipe until the client needs it
    for _ in range(8):
        client.report_step("w1", _report(ran[-1], 0.0))
        ran.append(client.get_step("w1").step_name)
    assert ran == [f"s{i}" for i in range(12)]  # in hand-out order, and no other round trip
    assert [k for k, _ in _pending(reader)] == ["reports", "get_step"]  # half-way through the second batch


def test_a_request_while_an_early_ask_is_answered_takes_that_answer_first(pipe):
    a, b = pipe
    client = ChannelClient(a, wait=True)
    send(b, ("assignments", _batch(4)))
    for step in ("s0", "s1"):
        assert client.get_step("w1").step_name == step
    reader = FrameReader(b)
    assert [(k, args[-1]) for k, args in _pending(reader)] == [("get_step", True), ("get_step", False)]  # early
    send(b, ("assignments", _batch(2, first=4)))
    send(b, ("ok", {"status": "ok"}))  # the request's own answer comes second
    assert client.status() == {"status": "ok"}  # e.g. a keep-alive from the heartbeat thread
    assert [client.get_step("w1").step_name for _ in range(4)] == ["s2", "s3", "s4", "s5"]


def test_an_early_ask_answered_with_nothing_is_followed_by_a_waiting_one_when_the_hands_are_empty(pipe):
    a, b = pipe
    client = ChannelClient(a, wait=True)
    send(b, ("assignments", _batch(4)))
    client.get_step("w1")
    client.get_step("w1")
    reader = FrameReader(b)
    assert [(k, args[-1]) for k, args in _pending(reader)] == [("get_step", True), ("get_step", False)]
    send(b, ("assignments", []))  # nothing ready then
    client.report_step("w1", _report("s1", 0.0))
    client.get_step("w1")
    client.report_step("w1", _report("s2", 0.0))
    client.get_step("w1")
    assert _pending(reader) == []  # the last step runs: nothing asked meanwhile
    send(b, ("assignments", _batch(1, first=9)))
    client.report_step("w1", _report("s3", 0.0))  # hands empty: the report asks and waits
    assert [(k, args[-1]) for k, args in _pending(reader)][-1] == ("report_and_get", True)
    assert client.get_step("w1").step_name == "s9"


def _busy_then_write(conn: Any, cpu: int, ready: Any, seconds: float) -> None:
    """Pinned to ``cpu``: use ``seconds`` of CPU, then send one message (the other side's reply)."""
    os.sched_setaffinity(0, {cpu})
    ready.set()
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass
    conn.send_bytes(b"!")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.parametrize("give_way", [True, False])
def test_a_spin_gives_its_cpu_to_the_other_side_when_they_share_one(monkeypatch, give_way):
    # On one CPU with the side it waits for, a plain spin keeps that side from running (it gets the CPU
    # only when the scheduler preempts the spinner): the spinner uses about as much CPU as the other side
    # needs to answer. A spin that gives way between looks lets it answer and uses next to none.
    if not give_way:  # the plain spin of before: no yield, and on through its time away from the CPU
        monkeypatch.setattr(_spin, "_give_way", lambda: None)
        monkeypatch.setattr(_spin, "AWAY_SECONDS", float("inf"))
    cpu = sorted(os.sched_getaffinity(0))[0]
    saved = os.sched_getaffinity(0)
    ctx = multiprocessing.get_context("spawn")
    r, w = ctx.Pipe(duplex=False)
    ready = ctx.Event()
    child = ctx.Process(target=_busy_then_write, args=(w, cpu, ready, 0.05))
    try:
        os.sched_setaffinity(0, {cpu})
        child.start()
        assert ready.wait(30)
        poller = select.poll()
        poller.register(r.fileno(), select.POLLIN)
        used = time.thread_time()
        latency.spin_until(lambda: poller.poll(0), 30.0)  # (it stops when it finds no answer back on its CPU)
        used = time.thread_time() - used
        assert poller.poll(30_000), "no answer"
    finally:
        os.sched_setaffinity(0, saved)
        child.join(30)
        r.close()
        w.close()
    if give_way:
        assert used < 0.02, f"the spin used {used * 1e3:.1f} ms of CPU while the other side needed 50 on its CPU"
    else:  # the check that this test can fail: a spin that does not give way competes for the CPU
        assert used > 0.02, f"a plain spin used only {used * 1e3:.1f} ms"


def _spin_for_a_busy_peer_on_one_cpu(cpu_seconds: float) -> tuple[bool, Spin]:
    """Spin (30 s at most) for the answer of a child pinned to this CPU that needs ``cpu_seconds`` first.

    Whether the spin saw the answer, and its :class:`Spin` after ``took()``.
    """
    cpu = sorted(os.sched_getaffinity(0))[0]
    saved = os.sched_getaffinity(0)
    ctx = multiprocessing.get_context("spawn")
    r, w = ctx.Pipe(duplex=False)
    ready = ctx.Event()
    child = ctx.Process(target=_busy_then_write, args=(w, cpu, ready, cpu_seconds))
    spin = Spin(30.0)
    try:
        os.sched_setaffinity(0, {cpu})
        child.start()
        assert ready.wait(30)
        poller = select.poll()
        poller.register(r.fileno(), select.POLLIN)
        assert spin.wanted()
        began = time.perf_counter()
        seen = bool(latency.spin_until(lambda: poller.poll(0), spin.seconds, spin))
        assert poller.poll(30_000), "no answer"
        spin.took(time.perf_counter() - began)
    finally:
        os.sched_setaffinity(0, saved)
        child.join(30)
        r.close()
        w.close()
    return seen, spin


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
@pytest.mark.parametrize("learns", [True, False])
def test_a_spin_answered_only_after_it_left_its_cpu_stops_and_is_not_counted_as_caught(monkeypatch, learns):
    # The answer of a side that shares the spinner's CPU comes only while the spinner is off that CPU:
    # spinning cannot catch it, only hand the CPU over (to that side, or to any other process ready there,
    # a time slice at a time). So the spin stops when it is back without an answer, and such a spin counts
    # as missed: the next waits sleep at once. (learns=False: the rule patched out, as before: the spin went
    # on until the answer came within its time, and counted as caught.)
    if not learns:
        monkeypatch.setattr(_spin, "AWAY_SECONDS", float("inf"))
    seen, spin = _spin_for_a_busy_peer_on_one_cpu(0.05)  # 50 ms of CPU: longer than a time slice
    if learns:
        assert not seen, "the spin went on after it was back on its CPU without an answer"
        assert (spin.caught, spin.gave_way) == (0, 1)
        assert not spin.wanted(), "the next wait should sleep at once"
    else:  # the check that this test can fail
        assert seen and (spin.caught, spin.gave_way) == (1, 0) and spin.wanted()


def _sleeps_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt"))


def _asleep(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "S"


def _request_then_wait(conn: Any, how: str) -> None:
    """A worker's side: send a request, then wait for the reply (``FrameReader.next``, or a bare blocking read)."""
    reader = FrameReader(conn)
    pid = os.getpid()
    before = _sleeps_of(pid)
    send(conn, ("request", None))
    if how == "next":
        reader.next()
    else:
        while not reader.read():
            pass
    send(conn, ("slept", _sleeps_of(pid) - before))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="counts sleeps from /proc (Linux)")
@pytest.mark.parametrize(("how", "sleeps", "pipe"), [("next", 1, "socket"), ("bare read", 2, "socket"),
                                                     ("next", 1, "duplex"), ("bare read", 1, "duplex")])
def test_a_side_waiting_for_its_reply_sleeps_once_not_again_when_its_request_is_read(how, sleeps, pipe):
    # A process asleep in read() on a socket is woken when the other side reads what it wrote (room to
    # write), finds nothing and sleeps again: a second wake-up per round trip. FrameReader.next() sleeps in
    # poll() for data, which that wake-up does not end. ("bare read" shows the kernel's behaviour it avoids.)
    # A pool's channel is two pipes (worker/_duplex.py): a pipe wakes its reader only when written, so even a
    # bare read sleeps once there, and next() sleeps in read (one system call instead of poll + read).
    ctx = multiprocessing.get_context("spawn")
    a, b = ctx.Pipe() if pipe == "socket" else duplex_pipe(ctx)
    child = ctx.Process(target=_request_then_wait, args=(b, how))
    child.start()
    try:
        assert a.poll(30)  # the request is written; the child goes on to wait for the reply
        deadline = time.monotonic() + 30
        while not _asleep(child.pid):
            assert time.monotonic() < deadline, "the child never waited"
            time.sleep(0.001)
        before = _sleeps_of(child.pid)
        assert receive(a) == ("request", None)  # room to write on the child's side
        until = time.monotonic() + 0.5  # a second sleep shows within a moment, or never
        while _sleeps_of(child.pid) == before and time.monotonic() < until:
            time.sleep(0.001)
        send(a, ("reply", None))
        assert receive(a) == ("slept", sleeps)
        child.join(30)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
        a.close()
        b.close()
