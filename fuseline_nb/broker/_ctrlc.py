"""Ctrl-C held back while the broker changes a run, so a transition is carried out whole or not at all.

The notebook's main thread makes some broker calls itself — ``submit``
dispatches a run, ``run.cancel()`` cancels one — and on a big run these take
a while (cancelling 30,000 steps: ~0.2 s, longer when the DuckDB history
makes the broker wait for its flusher). A Ctrl-C (Jupyter's interrupt
button) landing in the middle raised ``KeyboardInterrupt`` half-way through
the transition: the live run was left CANCELLED with steps still PENDING and
the history never got the steps' ends. :func:`held_ctrl_c` keeps such a
Ctrl-C until the block ends, then raises it as the handler that was there
would. Only the main thread gets signals; in any other thread, under a
handler that is not a function (ignored, or the C default) and inside an
outer block it does nothing more than the outer block does.

Examples
--------
>>> with held_ctrl_c() as pressed:
...     pressed
[]
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_MAIN = threading.main_thread()


class _Held:
    """The handler in place inside a block: notes each press."""

    __slots__ = ("pressed",)

    def __init__(self) -> None:
        self.pressed: list[tuple[int, Any]] = []

    def __call__(self, signum: int, frame: Any) -> None:
        self.pressed.append((signum, frame))


@contextmanager
def held_ctrl_c() -> Iterator[list[tuple[int, Any]]]:
    """Hold Ctrl-C (SIGINT) back in the main thread until the block ends, then raise it.

    Yields the list of presses held so far (empty: none), so the block can
    act on one before it is raised (``Session.submit`` cancels the run it
    dispatched).

    Examples
    --------
    >>> import os, signal
    >>> try:
    ...     with held_ctrl_c() as pressed:
    ...         os.kill(os.getpid(), signal.SIGINT)
    ...         print("the block goes on:", len(pressed))
    ... except KeyboardInterrupt:
    ...     print("raised when it ended")
    the block goes on: 1
    raised when it ended
    """
    if threading.current_thread() is not _MAIN:
        yield []
        return
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, _Held):  # an outer block holds it
        yield handler.pressed
        return
    if not callable(handler):
        yield []
        return
    held = _Held()
    signal.signal(signal.SIGINT, held)
    try:
        yield held.pressed
    finally:
        signal.signal(signal.SIGINT, handler)
        if held.pressed:
            handler(*held.pressed[0])  # the Ctrl-C, now (KeyboardInterrupt by default)


__all__ = ["held_ctrl_c"]
