"""The life of a DuckDB storage around its connection: claiming the file, the
flusher thread, closing at exit, and turning DuckDB's error text into ours.

Nothing here imports duckdb; :mod:`.duckdb` calls these helpers.

Examples
--------
>>> err = translate('IO Error: Could not set lock on file "/tmp/h.duckdb": Conflicting lock '
...                 'is held in /usr/bin/python3 (PID 4242). See also ...', "/tmp/h.duckdb")
>>> type(err).__name__, "PID 4242" in str(err)
('StorageLockedError', True)
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import re
import threading
import time
import weakref
from typing import Any

from ...errors import StorageError, StorageLockedError
from .._gcfreeze import thaw
from ._duckdb_arrow import flusher_thread
from ._duckdb_sql import VIEWS

log = logging.getLogger(__name__)

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+?) \(PID (\d+)\)")
_NO_TABLE = re.compile(r"Catalog Error: Table with name (\S+) does not exist"
                       # no such view, but DuckDB's Python replacement scan met a name of the calling frame
                       # (a module imported there): still not a view of the history
                       r"|Python Object \"([^\"]+)\" of type \"[^\"]*\" found on line .* not suitable for replacement scans")
_OPEN: dict[str, weakref.ref[Any]] = {}  # resolved path -> the storage that holds it
_OPEN_LOCK = threading.Lock()
_ALL: weakref.WeakSet[Any] = weakref.WeakSet()


def translate(text: str, path: str) -> StorageError:
    """The :class:`StorageError` for a DuckDB error message about ``path``.

    Examples
    --------
    >>> str(translate('IO Error: The file "x" exists, but it is not a valid DuckDB database file!', "x"))
    "'x' is not a DuckDB database: pass a DuckDB file or the name of a new file"
    >>> str(translate('Catalog Error: Table with name nope does not exist!', "h.duckdb"))
    "no view named 'nope' in the run history 'h.duckdb': the views are workflows, runs, steps, events (e.g. SELECT * FROM runs)"
    >>> str(translate('Invalid Input Error: Python Object "os" of type "module" found on line "x.py:9" not '
    ...               'suitable for replacement scans.', "h.duckdb"))[:27]
    "no view named 'os' in the r"
    """
    holder = _LOCK_HOLDER.search(text)
    if holder or "Could not set lock" in text:
        who = f"{holder.group(1)} (PID {holder.group(2)})" if holder else "another process"
        return StorageLockedError(
            f"DuckDB file {path!r} is held by {who}: close the session or broker that has it "
            "open there (or stop that process), or use another file"
        )
    missing = _NO_TABLE.search(text)
    if missing:  # DuckDB would suggest one of its own catalog tables (pg_enum ...)
        views = ", ".join(name for name, _ in VIEWS)
        return StorageError(
            f"no view named {missing.group(1) or missing.group(2)!r} in the run history {path!r}: the views are "
            f"{views} (e.g. SELECT * FROM runs)"
        )
    if "not a valid DuckDB database" in text:
        return StorageError(f"{path!r} is not a DuckDB database: pass a DuckDB file or the name of a new file")
    return StorageError(f"DuckDB failed on {path!r}: {text}")


def claim(key: str | None, storage: Any) -> None:
    """Register ``storage`` as the holder of file ``key`` in this process, or refuse.

    DuckDB would hand a second connection to the same file in one process the
    same database, so two brokers would both write it: refused, unless the
    first one is closed, or only waits to be collected.
    """
    if key is None:
        return
    for attempt in range(5):
        with _OPEN_LOCK:
            ref = _OPEN.get(key)
            other = ref() if ref is not None else None
            if other is None or other._closed:
                _OPEN[key] = weakref.ref(storage)
                return
        del other
        # a broker dropped in a notebook may wait for the cycle collector, or for its
        # flusher thread to let go of it
        if attempt == 0:
            thaw()  # a run's freeze (broker/_gcfreeze) would hide the dropped broker
            gc.collect()
        else:
            time.sleep(0.05)
    raise StorageLockedError(
        f"DuckDB file {storage.path!r} is already open in this process (PID {os.getpid()}) "
        "by another broker or storage: close() that one first, or use another file"
    )


def release(key: str | None, storage: Any) -> None:
    """Forget that ``storage`` holds file ``key``."""
    if key is None:
        return
    with _OPEN_LOCK:
        ref = _OPEN.get(key)
        if ref is not None and ref() in (storage, None):
            del _OPEN[key]


_WARMED = threading.Event()  # pyarrow's lazy imports are paid in this process
_warming: list[threading.Thread] = []  # the flusher thread paying them, while it does


def _warm_up() -> None:
    """Pay pyarrow's lazy imports (it imports pandas on first use, > 1 s on a busy machine) now.

    Otherwise the first flush pays them, and a broker killed within that time
    after its first dispatch leaves a file without the run. Once per process.
    """
    if _WARMED.is_set():
        return
    if threading.current_thread() not in _warming:
        _warming.append(threading.current_thread())
    try:
        import pyarrow as pa

        pa.array([0]), pa.array(["x"])
    except Exception:  # the first real flush will say what is wrong
        log.debug("pyarrow warm-up failed", exc_info=True)
    finally:
        _WARMED.set()
        _warming.clear()


def will_warm_up(thread: threading.Thread) -> None:
    """Say, before starting it, that ``thread`` (a flusher) will pay the warm-up: others wait for it
    from now on, not only once the thread got to run (a busy machine can start it late)."""
    if not _WARMED.is_set():
        _warming.append(thread)


def wait_warm(timeout: float = 60.0) -> None:
    """Wait (in any thread but the one warming up) until pyarrow's imports are done.

    A DuckDB call imports modules too: made while a flusher thread imports
    pandas, it waits on that import's lock from inside DuckDB, and a Ctrl-C
    landing there is swallowed by DuckDB and can leave the import lock
    broken (the CLI then hung). Waiting here, outside DuckDB, avoids both.
    """
    if _warming and not _WARMED.is_set() and threading.current_thread() not in _warming:
        _WARMED.wait(timeout)


def flush_loop(ref: weakref.ref[Any], wake: threading.Event, stop: threading.Event,
               full: threading.Event) -> None:
    """The flusher thread: holds the storage only while flushing, so it can be collected.

    Every change is written within ``flush_interval`` of being made (the
    crash promise): a flush is due an interval after the oldest event
    buffered (each broker change comes with events; the storage notes when
    the first one after a flush was buffered), and at least every interval
    while none is (what was buffered without an event then). So a run shorter
    than an interval is not flushed in its middle. It flushes sooner after a
    run ends: a gap (half an interval,
    at most 50 ms) after the end, not at once — the notebook is taking in the
    run's end right then (``Run.wait()`` returning, a read that flushes by
    itself), and the flush's Python part would compete with it for the GIL.
    When another run is still going after that gap, the ended one's rows wait
    for the regular flush instead (back-to-back runs share one flush an
    interval, not one a run). After each flush it leaves the same gap.
    ``full`` (the broker waits because the buffer is over its bound, see
    :mod:`._duckdb_pressure`; or the storage closes) cuts every wait short:
    the flushes then follow each other.
    """
    _warm_up()
    flusher_thread()  # its Python work gives way to a thread waiting for the GIL (see give_way)
    storage = ref()
    if storage is None:
        return
    interval = storage.flush_interval
    gap = min(interval / 2, 0.05)
    del storage
    delay = interval
    while True:
        due = time.monotonic() + delay
        while True:  # until the regular flush is due, the buffer is full, or an ended run's gap is over
            wake.wait(max(0.0, due - time.monotonic()))
            wake.clear()
            storage = ref()
            if storage is None or storage._stopping:
                return
            if full.is_set():
                break
            now = time.monotonic()
            if now >= due:
                first = storage._first
                if not first or first + interval <= now:
                    break
                due = first + interval  # the events buffered are younger than an interval: not due yet
            if storage._ended:  # a run ended (finalize_run): soon, not at once
                storage._ended = False
                del storage
                full.wait(gap)
                storage = ref()
                if storage is None or storage._stopping:
                    return
                if full.is_set() or not storage._queues:  # no other run goes on: write the end now
                    break
            del storage
        storage._ended = False  # this flush writes every end buffered so far
        try:
            storage._flush()
            delay = interval - gap
        except Exception:
            delay = min(max(delay, interval) * 2, 5.0)  # back off while the disk (or file) is unhappy
            log.exception("flushing run history to %s failed; retrying in %.1f s", storage.path, delay)
        del storage
        full.wait(gap)
        full.clear()
        if stop.is_set():
            return


def track(storage: Any) -> None:
    """Close ``storage`` at interpreter exit if it is still open then."""
    _ALL.add(storage)


@atexit.register
def _close_all() -> None:
    """At interpreter exit, flush and close every storage still open (a kernel shutting down)."""
    for storage in list(_ALL):
        try:
            storage.close()
        except Exception:
            log.exception("closing %r at exit failed", storage)
