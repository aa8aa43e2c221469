"""The pipe between the kernel and one worker process: two one-way OS pipes, one each way.

``multiprocessing.Pipe()`` is a Unix socket pair. A pair of plain pipes
(``Pipe(duplex=False)`` twice) carries the same bytes for less: on this
project's 2-vCPU VM a small write + poll + read round trip between two
processes on one CPU costs each side ~4.3 µs of CPU over pipes against
~6.0 µs over a socket pair (20,000 round trips, both on one CPU) — and a chain step is
one round trip, with both sides' CPU on its path when they share a CPU.
A pipe also wakes only its reader when written and only its writer when
read (a socket's sleepers were woken by the other side's reads too: see
:meth:`~fuseline_nb.worker.latency.FrameReader.next`).

:class:`Duplex` is one end: it reads from one pipe and writes to the other,
with the part of ``multiprocessing.connection.Connection``'s interface the
channel uses (``fileno()`` is the end it reads, as selectors and ``poll``
want; :attr:`Duplex.wfd` the descriptor it writes). Each pipe holds
:data:`PIPE_BYTES` where the system allows (a socket pair held ~180 KiB
here; a pipe 64 KiB by default), so a burst of messages waits for the
reader no sooner than before.

Examples
--------
>>> import multiprocessing
>>> kernel, worker = duplex_pipe(multiprocessing.get_context("spawn"))
>>> kernel.send_bytes(b"step"); worker.poll(1.0), worker.recv_bytes()
(True, b'step')
>>> worker.send(("done", 1)); kernel.recv()
('done', 1)
>>> kernel.close(); worker.close(); kernel.closed
True
"""

from __future__ import annotations

from typing import Any, Final

#: Bytes each pipe of a channel holds (``F_SETPIPE_SZ``; at most ``/proc/sys/fs/pipe-max-size``).
PIPE_BYTES: Final = 256 * 1024
_F_SETPIPE_SZ: Final = 1031  # Linux's fcntl command (the fcntl module names it from Python 3.10 on)


def _grow(conn: Any) -> None:
    """Let ``conn``'s pipe hold :data:`PIPE_BYTES` (Linux; elsewhere, or past the system's limit, as it is)."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_SETPIPE_SZ", _F_SETPIPE_SZ), PIPE_BYTES)
    except (ImportError, OSError):  # not Linux, or past the per-user limit: a smaller pipe works as well
        pass


class Duplex:
    """One end of a :func:`duplex_pipe`: reads from ``reader``, writes to ``writer`` (two one-way connections)."""

    __slots__ = ("_reader", "_writer", "wfd")

    def __init__(self, reader: Any, writer: Any) -> None:
        self._reader = reader
        self._writer = writer
        #: The descriptor this end writes (``latency.send`` writes to it directly).
        self.wfd: int = writer.fileno()

    def __reduce__(self) -> tuple[Any, ...]:  # sent to a spawned process: its two connections travel
        return (Duplex, (self._reader, self._writer))

    def fileno(self) -> int:
        """The descriptor this end reads (what selectors and ``poll`` watch)."""
        return int(self._reader.fileno())

    @property
    def closed(self) -> bool:
        """Whether this end is closed."""
        return bool(self._reader.closed)

    def send_bytes(self, data: Any) -> None:
        """Send one message's bytes (``Connection.send_bytes``' framing)."""
        self._writer.send_bytes(data)

    def send(self, obj: Any) -> None:
        """Send one pickled object (``Connection.send``)."""
        self._writer.send(obj)

    def recv_bytes(self) -> bytes:
        """Receive one message's bytes."""
        data: bytes = self._reader.recv_bytes()
        return data

    def recv(self) -> Any:
        """Receive one pickled object."""
        return self._reader.recv()

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether there is something to read (waiting up to ``timeout`` seconds; ``None``: no limit)."""
        return bool(self._reader.poll(timeout))

    def close(self) -> None:
        """Close both pipes' ends held here (the other end then reads EOF)."""
        self.wfd = -1  # a write after close fails (EBADF), never reaches a file that reused the number
        try:
            self._reader.close()
        finally:
            self._writer.close()


def duplex_pipe(ctx: Any) -> tuple[Duplex, Duplex]:
    """Two ends of a channel made of two one-way pipes of ``ctx`` (a multiprocessing context): ``(a, b)``.

    What one end sends the other receives, both ways.
    """
    b_reads, a_writes = ctx.Pipe(duplex=False)
    a_reads, b_writes = ctx.Pipe(duplex=False)
    for writer in (a_writes, b_writes):
        _grow(writer)
    return Duplex(a_reads, a_writes), Duplex(b_reads, b_writes)


__all__ = ["PIPE_BYTES", "Duplex", "duplex_pipe"]
