"""The worker channel's framing: FrameReader against multiprocessing's own Connection framing."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import struct
import threading
import time

import pytest

from fuseline_nb.worker.channel import ChannelClient, FrameReader, receive, send


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
    assert reader.spin(0.002) is False
    assert time.perf_counter() - t0 >= 0.002
    send(a, ("ok", None))
    assert reader.spin(1.0) is True
    assert pickle.loads(reader.next()) == ("ok", None)


def test_client_stops_spinning_after_slow_replies_and_resumes_after_a_quick_one(pipe):
    a, b = pipe
    client = ChannelClient(a, spin=0.02)
    spins = []

    class Counting(FrameReader):
        def spin(self, seconds: float) -> bool:
            spins.append(seconds)
            return super().spin(seconds)

    client._reader = Counting(a)

    def answer(delay: float) -> None:
        receive(b)
        time.sleep(delay)
        send(b, ("ok", {"status": "ok"}))

    # spins while fewer than two replies in a row were slow; a quick reply starts it again
    for delay, slow, spun in ((0.1, 1, 1), (0.1, 2, 2), (0.1, 3, 2), (0.0, 0, 2), (0.0, 0, 3)):
        t = threading.Thread(target=answer, args=(delay,))
        t.start()
        t0 = time.perf_counter()
        assert client.status() == {"status": "ok"}
        took = time.perf_counter() - t0
        t.join()
        assert client._slow == slow
        assert len(spins) == spun
        assert took >= delay


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
