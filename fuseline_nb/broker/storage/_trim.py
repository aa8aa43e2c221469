"""Give the C heaps' free memory back to the operating system after a big flush.

A big flush (a fan-out's root queueing a million steps, a definition of a
million steps) makes DuckDB and the flusher allocate and free hundreds of
megabytes of small C blocks. glibc's ``malloc`` keeps freed blocks inside
its heaps for reuse: the process's resident memory stays at the flush's
high-water mark, and the next big flush starts from there. ``malloc_trim(0)``
returns every free page of every heap to the system (~7 ms for a 600 MB
heap), so the kernel's peak is one flush's transient, not the sum of them.

Only glibc has it; elsewhere (macOS, musl, Windows) :func:`give_back` does
nothing and says so with ``False``.

Examples
--------
>>> give_back() in (True, False)
True
>>> big_flush(rows=10, steps_in_definitions=0)
False
>>> big_flush(rows=TRIM_ROWS, steps_in_definitions=0)
True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

#: A flush of at least this many rows (steps, events, a new run's steps, a definition's steps) is
#: followed by :func:`give_back` (smaller flushes free too little to be worth the call).
TRIM_ROWS = 50_000

_TRIM: Any = None  # libc's malloc_trim once looked up; False where there is none


def big_flush(rows: int, steps_in_definitions: int) -> bool:
    """Whether a flush that wrote ``rows`` rows and definitions of ``steps_in_definitions`` steps
    is big enough to give memory back after it."""
    return rows + steps_in_definitions >= TRIM_ROWS


def give_back() -> bool:
    """Return the C heaps' free pages to the system; whether glibc's could be trimmed.

    Arrow's own pool (mimalloc by default, which keeps freed segments for
    reuse) is asked to release what it holds unused too, when pyarrow is
    loaded (the flush's Arrow tables come from it).
    """
    global _TRIM
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        try:
            arrow.default_memory_pool().release_unused()
        except Exception:  # an older pyarrow, another pool: nothing to release
            log.debug("releasing Arrow's unused memory failed", exc_info=True)
    if _TRIM is None:
        _TRIM = _find_trim()
    if _TRIM is False:
        return False
    try:
        _TRIM(0)
    except OSError:  # never let giving memory back break a flush
        log.debug("malloc_trim failed", exc_info=True)
        return False
    return True


def _find_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (musl has none: AttributeError)
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


__all__ = ["TRIM_ROWS", "big_flush", "give_back"]
