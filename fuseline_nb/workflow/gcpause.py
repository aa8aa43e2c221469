"""Pausing the cyclic garbage collector while large, long-lived structures are made.

Examples
--------
>>> with paused_gc():
...     pass
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: building (or submitting) a large workflow
    allocates many long-lived objects, and each automatic collection would rescan
    them all (the per-step cost would grow with the workflow).

    Examples
    --------
    >>> import gc
    >>> with paused_gc():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


__all__ = ["paused_gc"]
