"""Pausing the cyclic garbage collector while large, long-lived structures are made.

Examples
--------
>>> with paused_gc():
...     pass
"""

from __future__ import annotations

import gc
import threading

#: Held around every ``gc.freeze()`` / ``gc.unfreeze()`` of this package (``broker/_gcfreeze.py`` too),
#: so one thread's move to the oldest generation never thaws another's freeze; and around the pause count.
_GC_LOCK = threading.Lock()

_pauses = 0  # paused_gc blocks going on now, in every thread
_restore = False  # whether the collector was enabled when the first of them began
_promote = False  # whether one of them asked to hand what it made to the oldest generation


class paused_gc:  # (lower case: used as a function, ``with paused_gc():``)
    """Pause the cyclic garbage collector: building (or submitting) a large workflow
    allocates many long-lived objects, and each automatic collection would rescan
    them all (the per-step cost would grow with the workflow).

    At the end, the objects made meanwhile go straight to the collector's
    oldest generation (``gc.freeze()`` then ``gc.unfreeze()``, only when
    nothing is frozen, so a freeze of the user's stays as it was): left in
    the youngest, the first collection after the pause would walk all of
    them, and the middle one again — 0.8 µs a step of a 1→300,000→1
    fan-out's build. ``promote=False`` skips that for a pause whose objects
    are all gone at its end (the DuckDB flusher's column building).

    Pauses are counted across threads: the collector is enabled again when
    the last one ends, and only if it was enabled when the first began (a
    flusher's pause ending in the middle of the notebook's build does not
    turn the collector back on under it, nor does the build's end leave it
    off). What is handed to the oldest generation is handed then, if any of
    the overlapping pauses asked for it.

    A class rather than a ``contextlib`` generator: a submit enters several
    (the session's, the broker's), and each costs a third as much this way.

    Examples
    --------
    >>> import gc
    >>> with paused_gc():
    ...     gc.isenabled()
    False
    >>> gc.isenabled(), gc.get_freeze_count()
    (True, 0)
    """

    __slots__ = ("promote",)

    def __init__(self, promote: bool = True) -> None:
        self.promote = promote

    def __enter__(self) -> None:
        global _pauses, _restore, _promote
        with _GC_LOCK:
            if _pauses == 0:
                _restore = gc.isenabled()
                _promote = False
                gc.disable()
            _pauses += 1
            _promote = _promote or self.promote

    def __exit__(self, *exc: object) -> None:
        global _pauses
        with _GC_LOCK:
            _pauses -= 1
            if _pauses == 0 and _restore:
                if _promote and gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


__all__ = ["paused_gc"]
