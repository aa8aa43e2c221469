"""Back-pressure on the DuckDB history's write buffer: the broker waits while its buffer is over a bound.

The broker's thread only adds rows to the storage's buffer; the flusher
thread takes the whole buffer (swaps it for an empty one) and writes it. On a
busy machine the flusher can fall behind: each flush takes longer, the rows
buffered meanwhile grow, and so does the next flush (a 1->1,000,000->1 run
under load: 2.8 GB in the kernel, a GB of it rows waiting to be written).

:class:`Pressure` bounds that: when a call leaves more than
:attr:`Pressure.bound` rows buffered (step records, events, results: about
five a step), the calling thread (the broker's) wakes the flusher and waits
until the flusher has taken the buffer, which it does at once when it is
idle (the buffer's rows are then on their way, in the one write in flight),
or when the write in flight ends. So at most one write's rows plus
``bound`` rows wait in memory, and nothing is dropped: the rows are only
held back where they are made. The wait ends without the flusher when it
cannot help: the storage is closing, the flusher thread is gone, or the last
write failed (the disk is full, the file is gone: the buffer is kept for the
next try and grows as before, the log says why) — a broken disk never stops
the runs.

The flusher's own thread never waits (it writes; it adds no rows).

Examples
--------
>>> import threading
>>> flusher = threading.Thread(target=lambda: None)
>>> p = Pressure(bound=3)
>>> p.over(2), p.over(4)
(False, True)
>>> p.relieve(lambda: 10, flusher)  # over the bound, but no flusher thread to wait for
0
>>> p.failed(True); p.relieve(lambda: 10, flusher)  # a failing disk: no wait either
0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Rows (step records, events, results) the buffer may hold before the broker waits for the flusher:
#: ~200 bytes each, so ~600 MB. A quiet 1->1,000,000->1 run buffers over two million for a moment while
#: the root's queue (2 million rows) is written: at a bound of 1,000,000 it waited twice (2.7 s of a 60 s
#: run, for ~115 MiB less peak), at 2,000,000 once (1.3 s), at 3,000,000 never (bench_scale, quiet);
#: a flusher slowed by load lets the buffer grow to the whole run (the bound is for that).
MAX_BUFFERED_ROWS = 3_000_000


class Pressure:
    """The bound on a storage's buffered rows, and the wait for the flusher to take them.

    Examples
    --------
    >>> p = Pressure(); p.bound == MAX_BUFFERED_ROWS
    True
    """

    __slots__ = ("_broken", "_taken", "bound", "waited", "waits")

    def __init__(self, bound: int = MAX_BUFFERED_ROWS) -> None:
        #: Rows buffered above which a writing call waits for the flusher.
        self.bound = bound
        #: How many calls waited, and for how long in all (seconds): for tests and measurements.
        self.waits = 0
        self.waited = 0.0
        self._taken = threading.Condition(threading.Lock())
        self._broken = False

    def over(self, rows: int) -> bool:
        """Whether ``rows`` buffered is over the bound."""
        return rows > self.bound

    def taken(self) -> None:
        """The flusher (or a reader's flush) took the buffer: let waiting writers go on."""
        with self._taken:
            self._taken.notify_all()

    def failed(self, broken: bool) -> None:
        """The last write failed (``True``; waiting writers go on, later ones do not wait) or worked."""
        with self._taken:
            self._broken = broken
            if broken:
                self._taken.notify_all()

    def relieve(self, rows: Callable[[], int], flusher: threading.Thread,
                wake: Callable[[], None] = lambda: None, stopping: Callable[[], bool] = lambda: False) -> int:
        """Wait until ``rows()`` is back under the bound (the flusher took the buffer); how many times
        this waited (0 or 1).

        ``wake()`` starts the flusher; no wait on the flusher's own thread, after a failed write,
        while ``stopping()``, or once the flusher thread has ended.
        """
        current = threading.current_thread()
        if current is flusher or self._broken:
            return 0
        t0 = time.perf_counter()
        waited = 0
        with self._taken:
            while self.over(rows()) and not self._broken and not stopping() and flusher.is_alive():
                if not waited:
                    waited = 1
                    wake()
                self._taken.wait(0.25)  # re-checks the flusher's life every quarter second
        if waited:
            self.waits += 1
            self.waited += time.perf_counter() - t0
        return waited


__all__ = ["MAX_BUFFERED_ROWS", "Pressure"]
