"""Messages on a worker pipe: one write and one read each, and brief spinning for replies.

The framing is ``multiprocessing.Connection.send_bytes``'s (a 4-byte
big-endian length, then the bytes), so :func:`send` output is read by
``Connection.recv_bytes`` and :class:`FrameReader` reads what
``send_bytes`` writes. :func:`spin_seconds` is how long a waiting side
looks for a reply before it sleeps (see ``docs/latency.md``).

Examples
--------
>>> import multiprocessing
>>> a, b = multiprocessing.Pipe()
>>> send(a, ("ok", 1)); receive(b)
('ok', 1)
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import struct
import time
from collections import deque
from typing import Any, Final

log = logging.getLogger(__name__)

#: Environment variable: microseconds a pool waits for a reply without sleeping (0: never).
SPIN_ENV: Final = "FUSELINE_NB_SPIN_US"
#: ...its default.
SPIN_DEFAULT_US: Final = 100.0


def spin_seconds() -> float:
    """How long the kernel and pool workers wait for a quick reply without sleeping.

    Across processes a round trip costs two wake-ups; a short, bounded spin
    (only while replies do come that fast, and only with a CPU to spare)
    saves them on chains of short steps. Set ``FUSELINE_NB_SPIN_US=0`` to
    turn it off (read when a pool starts its workers).

    Examples
    --------
    >>> import os
    >>> os.environ.get(SPIN_ENV) is not None or spin_seconds() == SPIN_DEFAULT_US / 1e6
    True
    """
    raw = os.environ.get(SPIN_ENV, "")
    try:
        micros = float(raw) if raw.strip() else SPIN_DEFAULT_US
    except ValueError:
        log.warning("ignoring %s=%r (not a number of microseconds)", SPIN_ENV, raw)
        micros = SPIN_DEFAULT_US
    return max(0.0, micros) / 1e6


#: Spinning stops after this many replies in a row slower than the spin (and resumes after a quick one).
SLOW_STREAK: Final = 2


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
    fd = conn.fileno()  # raises OSError when the connection is closed
    buf = _HEADER.pack(len(data)) + data
    sent = os.write(fd, buf)
    while sent < len(buf):  # a full socket buffer: the rest follows
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

    __slots__ = ("_big", "_buf", "_conn", "_filled", "_frames", "_need", "_poller")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._buf = bytearray()  # the start of a message not complete yet
        self._need = 0  # bytes still missing from it, when its size is known
        self._big: bytearray | None = None  # a big message, filled in place (no copy, no regrowth)
        self._filled = 0  # bytes of it read so far
        self._frames: deque[bytes] = deque()  # complete messages not handed out yet (next())
        self._poller: Any = None

    def read(self) -> list[bytes]:
        """One read; the messages it completed (maybe none). Raises ``EOFError`` at the end.

        A message bigger than a read is read straight into a buffer of its
        size, which is then handed out as it is (a ``bytearray``): a 200 MB
        result costs the kernel its 200 MB here, not two or three times that.
        """
        if self._big is not None:
            return self._read_big()
        data = os.read(self._conn.fileno(), max(_READ_SIZE, self._need))
        if not data:
            raise EOFError("the other end closed the channel")
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
            n = os.readv(self._conn.fileno(), [view[self._filled:]])
        if not n:
            raise EOFError("the other end closed the channel")
        self._filled += n
        if self._filled < len(big):
            return []
        self._big = None
        return [big]  # type: ignore[list-item]  # a bytearray: pickle.loads takes it as it is

    def spin(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for data without sleeping; whether some came.

        A reply expected within microseconds arrives sooner to a process
        that stays on its CPU than to one the system has to wake.
        """
        if self._frames:
            return True
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._conn.fileno(), select.POLLIN)
        poll, clock = self._poller.poll, time.perf_counter
        until = clock() + seconds
        while not poll(0):
            if clock() >= until:
                return False
        return True

    def next(self) -> bytes:
        """Block until a message is complete; return it."""
        while not self._frames:
            self._frames.extend(self.read())
        return self._frames.popleft()


# -- the worker side --------------------------------------------------------------------


__all__ = ["SLOW_STREAK", "SPIN_DEFAULT_US", "SPIN_ENV", "FrameReader", "receive", "send", "spin_seconds"]
