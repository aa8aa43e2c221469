"""What makes a step's round trip between a worker process and the kernel quick: all of it, here.

Each measure below is kept because ``benchmarks/bench_workers.py`` shows what
it saves (figures in ``docs/latency.md``); nothing else on the pipe tries to
be clever.

1. **One write, one read per message.** :func:`send` writes the header and
   the body of a message with one ``os.write``; :class:`FrameReader` reads
   with one ``os.read`` of up to 64 KiB and hands out every message it
   completed, so a burst of reports costs the kernel one read. The framing
   is ``multiprocessing.Connection.send_bytes``'s (a 4-byte big-endian
   length, then the bytes), so either side may use the other's reader.
   A worker waiting for its reply sleeps in ``poll``, not in ``read``
   (:meth:`FrameReader.next`): asleep in ``read`` it was woken a second
   time per round trip, for nothing, when the kernel read its request.
2. **Several assignments per round trip** (prefetch). While steps are
   queued, the kernel hands a worker whose recent steps were short several
   assignments at once (:func:`batch_size`): as many as keep it busy for
   about :data:`BATCH_SECONDS` judged by its longest recent step, at most a
   fair share of the backlog (so a free worker always finds work, and the
   batches shrink as the queue empties), at most ``prefetch``. The worker
   reports all but the last of them one-way (the ``reports`` message:
   nobody waits for an answer) and the last with ``report_and_get``, which
   brings the next batch. On a fan-out of no-op steps one round trip then
   carries dozens of steps; a step that turns out long holds its batch's
   others up, so batches are sized by time (a step's timeout counts from
   when it starts, not from when it was handed out).
   The one-way reports of steps quicker than :data:`HOLD_SECONDS` are held
   and leave together: with the ``report_and_get`` of the batch (one write
   for both messages), or as soon as the oldest held one is
   :data:`HOLD_SECONDS` old when a step ends or starts — so a batch of tiny
   steps costs one write and one broker call for all its reports, and a
   report waits at most for the next step of its batch (the worker's
   heartbeat sends it after ``lease / 3``, at most 0.5 s, whatever that
   step does). Nothing is held across the start or the end of a step with a
   timeout: the kernel times a step from when its worker's earlier reports
   arrive.
3. **A short spin for a quick reply** (:class:`Spin`, in ``_spin``). A process that sleeps
   while it waits must be woken when the reply comes, and a wake-up costs
   more than the work. So, on a chain of short steps, the waiting side looks
   for the reply for up to :func:`spin_seconds` (100 µs) before it sleeps.
   Whether to spin is decided from this very channel's replies, not from the
   machine's load: a spin that saw its reply keeps spinning on; one that did
   not (a slow step, or a busy machine where the other side waited for a
   CPU) makes the side skip the next 1, 2, 4 ... :data:`MAX_SKIP` waits
   before it tries again. On a quiet machine every spin succeeds and none is
   skipped; under load a failed spin costs at most ``spin / MAX_SKIP`` of
   CPU per wait. ``FUSELINE_NB_SPIN_US`` sets the time (``0`` turns
   spinning off).
   Every few looks a spin gives its CPU to whatever else is ready to run
   there (:func:`spin_until`): when the scheduler put both sides on one CPU,
   a plain spin kept the other side from answering until it gave up (chain
   of no-op steps: ~130 µs a step, a sleep each; yielding: ~109, as sleeping
   at once); on two CPUs the yield returns at once (~59 µs, as before).
   A spin that is back on its CPU after :data:`AWAY_SECONDS` away without
   its answer stops (and sleeps), and a reply that came only while the
   spin was away counts as missed: spinning cannot catch the answer of a
   side that needs the spinner's CPU, and on a busy machine each yield
   hands another process the CPU for a time slice (every CPU busy with
   another process: ~430-800 µs a step before, ~280-430 after).
4. **The two messages of every step travel as their fields' tuple**
   (``fuseline_nb.worker._pipeforms``): a report and an assignment are
   pickled as builtins (no ``__reduce__`` call, no class lookup) and made
   into their dataclass on the other side with one call, about half the
   pickling of a round trip; and a waiting worker's report and its next
   step are one broker call (``report_and_get``).

Examples
--------
>>> import multiprocessing
>>> a, b = multiprocessing.Pipe()
>>> send(a, ("ok", 1)); receive(b)
('ok', 1)
>>> batch_size(64, step_seconds=0.00001, backlog=100, workers=2)
25
"""

from __future__ import annotations

import os
import pickle
import select
import struct
from collections import deque
from typing import Any, Final

from ._duplex import Duplex
from ._spin import AWAY_SECONDS, MAX_SKIP, SPIN_DEFAULT_US, SPIN_ENV, Spin, spin_seconds, spin_until

#: A worker gets more than one assignment at a time only after steps shorter than this (seconds).
PREFETCH_BELOW: Final = 0.1
#: A batch of assignments is sized to keep its worker busy for about this long (seconds).
BATCH_SECONDS: Final = 0.05
#: The default most assignments a worker holds at once (``Session(prefetch=...)``).
PREFETCH_DEFAULT: Final = 64
#: Reports of steps quicker than this are held while the worker has more work in hand, at most this long (s).
HOLD_SECONDS: Final = 0.001


def batch_size(prefetch: int, *, step_seconds: float | None, backlog: int, workers: int) -> int:
    """How many assignments to hand a worker at once (see the module docstring, measure 2).

    ``step_seconds`` is the longest of the worker's recent steps (``None``:
    not known yet, or it holds work already). One unless that is under
    :data:`PREFETCH_BELOW`; else as many as fill :data:`BATCH_SECONDS` at
    that pace, no more than ``backlog / (2 * workers)`` (the other workers,
    and the end of the queue, get their share) and no more than
    ``prefetch``.

    Examples
    --------
    >>> batch_size(64, step_seconds=0.2, backlog=1000, workers=2)  # long steps: one at a time
    1
    >>> batch_size(64, step_seconds=0.01, backlog=1000, workers=2)  # 50 ms of 10 ms steps
    5
    >>> batch_size(64, step_seconds=0.00001, backlog=10, workers=2)  # the queue's end: shared out
    2
    >>> batch_size(64, step_seconds=None, backlog=1000, workers=2)
    1
    """
    if prefetch <= 1 or step_seconds is None or step_seconds >= PREFETCH_BELOW:
        return 1
    by_time = int(BATCH_SECONDS / step_seconds) if step_seconds > 0 else prefetch
    return max(1, min(prefetch, by_time, backlog // (2 * max(workers, 1))))


_HEADER: Final = struct.Struct("!i")  # the framing of multiprocessing.Connection.send_bytes
_BIG_HEADER: Final = struct.Struct("!Q")  # after a -1 header: messages of 2 GiB and more
_SMALL: Final = 16384  # up to this size, header and body leave in one write (as Connection does)
_READ_SIZE: Final = 65536


def send(conn: Any, message: tuple[Any, ...]) -> None:
    """Send one message over a ``multiprocessing`` connection.

    A small message leaves in one ``os.write`` (the framing of
    ``Connection.send_bytes``, without its layers); a big one through
    ``send_bytes``.

    Examples
    --------
    >>> import multiprocessing
    >>> a, b = multiprocessing.Pipe()
    >>> send(a, ("get_step", ("w1", True))); receive(b)
    ('get_step', ('w1', True))
    """
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > _SMALL:
        conn.send_bytes(data)
        return
    fd = conn.wfd if conn.__class__ is Duplex else conn.fileno()  # OSError when closed (wfd -1: at the write)
    buf = _HEADER.pack(len(data)) + data
    sent = os.write(fd, buf)
    while sent < len(buf):  # a full pipe: the rest follows
        sent += os.write(fd, buf[sent:])


def send_all(conn: Any, messages: list[tuple[Any, ...]]) -> None:
    """Send several messages with one ``os.write`` when they are small (else one after the other).

    Examples
    --------
    >>> import multiprocessing
    >>> a, b = multiprocessing.Pipe()
    >>> send_all(a, [("reports", ("w1", [])), ("get_step", ("w1", True))])
    >>> [pickle.loads(m) for m in FrameReader(b).read()]
    [('reports', ('w1', [])), ('get_step', ('w1', True))]
    """
    datas = [pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL) for m in messages]
    if sum(map(len, datas)) > _SMALL:
        for data in datas:
            conn.send_bytes(data)
        return
    fd = conn.wfd if conn.__class__ is Duplex else conn.fileno()
    buf = b"".join(_HEADER.pack(len(d)) + d for d in datas)
    sent = os.write(fd, buf)
    while sent < len(buf):
        sent += os.write(fd, buf[sent:])


def receive(conn: Any) -> tuple[Any, ...]:
    """Receive one message."""
    return pickle.loads(conn.recv_bytes())


class FrameReader:
    """Reads whole messages from a connection with as few ``read`` calls as possible.

    ``Connection.recv_bytes`` reads the 4-byte header and then the body: two
    system calls per message. This reader asks for up to 64 KiB at once and
    keeps what belongs to the next message. :meth:`read` does one read and
    returns the messages it completed (for a ``selectors`` loop);
    :meth:`next` blocks until one message is complete.

    Examples
    --------
    >>> import multiprocessing
    >>> a, b = multiprocessing.Pipe()
    >>> send(a, ("ok", 1)); send(a, ("ok", 2))
    >>> reader = FrameReader(b)
    >>> [pickle.loads(m) for m in reader.read()]
    [('ok', 1), ('ok', 2)]
    >>> a.send_bytes(b"x" * 100_000); len(reader.next())
    100000
    """

    __slots__ = ("_big", "_buf", "_conn", "_fd", "_filled", "_frames", "_need", "_pipe", "_poller", "_seen")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        try:  # (not asked at every read: 2-3 calls) -1 once close() closed it: reads fail, as on a closed conn
            self._fd: int = conn.fileno()
        except (AttributeError, OSError):  # no live connection: nothing to read
            self._fd = -1
        self._buf = bytearray()  # the start of a message not complete yet
        self._need = 0  # bytes still missing from it, when its size is known
        self._big: bytearray | None = None  # a big message, filled in place (no copy, no regrowth)
        self._filled = 0  # bytes of it read so far
        self._frames: deque[bytes] = deque()  # complete messages not handed out yet (next())
        self._poller: Any = None
        self._seen = False  # spin() saw data: next() reads without waiting first
        self._pipe = conn.__class__ is Duplex  # a pipe wakes its reader only when written: next() sleeps in read

    def read(self) -> list[bytes]:
        """One read; the messages it completed (maybe none). Raises ``EOFError`` at the end.

        A message bigger than a read is read straight into a buffer of its
        size, which is then handed out as it is (a ``bytearray``): a 200 MB
        result costs the kernel its 200 MB here, not two or three times that.
        """
        if self._big is not None:
            return self._read_big()
        data = os.read(self._fd, max(_READ_SIZE, self._need))
        if not data:
            raise EOFError("the other end closed the channel")
        if not self._buf and len(data) >= 4 and _HEADER.unpack_from(data)[0] + 4 == len(data):
            self._need = 0  # exactly one whole message (a reply, a lone request): the usual read
            return [data[4:]]
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        frames: list[bytes] = []
        pos, end = 0, len(buf)
        need = 0
        with memoryview(buf) as view:  # slices of a view: one copy per message, not two
            while end - pos >= 4:
                size = _HEADER.unpack_from(buf, pos)[0]
                head = 4
                if size == -1:
                    if end - pos < 12:
                        break
                    size = _BIG_HEADER.unpack_from(buf, pos + 4)[0]
                    head = 12
                if end - pos - head < size:
                    need = head + size - (end - pos)
                    if size > _READ_SIZE:  # the rest is read into its own buffer
                        self._big = bytearray(size)
                        self._filled = end - pos - head
                        self._big[:self._filled] = view[pos + head:end]
                        pos, need = end, 0
                    break
                frames.append(bytes(view[pos + head:pos + head + size]))
                pos += head + size
        self._need = need
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < end:
            self._buf = bytearray(buf[pos:])
        return frames

    def _read_big(self) -> list[bytes]:
        big = self._big
        assert big is not None
        with memoryview(big) as view:
            n = os.readv(self._fd, [view[self._filled:]])
        if not n:
            raise EOFError("the other end closed the channel")
        self._filled += n
        if self._filled < len(big):
            return []
        self._big = None
        return [big]  # type: ignore[list-item]  # a bytearray: pickle.loads takes it as it is

    def spin(self, seconds: float, spin: Spin | None = None) -> bool:
        """Wait up to ``seconds`` for data without sleeping (:func:`spin_until`); whether some came.

        With ``spin``, its time off the CPU is noted there (``spin.away``) for :meth:`Spin.took`.
        """
        if self._frames:
            return True
        poll = self._poll().poll
        self._seen = bool(spin_until(lambda: poll(0), seconds, spin))
        return self._seen

    def next(self) -> bytes:
        """Block until a message is complete; return it.

        On a socket it sleeps in ``poll`` for data, never in ``read``: a
        process asleep in ``read`` on a socket is also woken each time the
        other side reads what this one wrote (the socket's "room to write"
        wake-up), finds nothing and sleeps again — once per round trip, on the
        other side's critical path when both share a CPU. ``poll`` for
        ``POLLIN`` sleeps through it. A pool's channel (a
        :class:`~fuseline_nb.worker._duplex.Duplex`: pipes) wakes a reader only
        when written, so there it sleeps in ``read`` (one system call, not two).
        """
        frames = self._frames
        while not frames:
            if not self._seen and not self._pipe:
                (self._poller or self._poll()).poll()
            self._seen = False
            got = self.read()
            if len(got) == 1 and not frames:  # the usual: one whole message
                return got[0]
            frames.extend(got)
        return frames.popleft()

    def close(self) -> None:
        """Close the connection: reads raise ``OSError`` from now on, as on a closed connection (its
        number, which another file may get next, is not read again).

        Examples
        --------
        >>> import multiprocessing
        >>> a, b = multiprocessing.Pipe()
        >>> reader = FrameReader(b); reader.close()
        >>> reader.read()
        Traceback (most recent call last):
        OSError: [Errno 9] Bad file descriptor
        """
        self._fd = -1
        self._poller = None
        self._conn.close()

    def _poll(self) -> Any:
        if self._poller is None:
            if self._fd < 0:
                raise OSError("handle is closed")
            self._poller = select.poll()
            self._poller.register(self._fd, select.POLLIN)
        return self._poller


__all__ = [
    "AWAY_SECONDS",
    "BATCH_SECONDS",
    "HOLD_SECONDS",
    "MAX_SKIP",
    "PREFETCH_BELOW",
    "PREFETCH_DEFAULT",
    "SPIN_DEFAULT_US",
    "SPIN_ENV",
    "FrameReader",
    "Spin",
    "batch_size",
    "receive",
    "send",
    "send_all",
    "spin_seconds",
    "spin_until",
]
