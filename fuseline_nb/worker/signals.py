"""Ctrl-C and worker processes: born with SIGINT held back, released once their handler is set.

Ctrl-C in a terminal (or a kernel's interrupt of the process group) sends
SIGINT to every process of the group, the workers included. The parent (the
kernel, ``fuseline-nb run``, ``fuseline-nb worker``) decides what a Ctrl-C
means; a worker must neither die of it half-imported nor be cut off half
started. :func:`sigint_held` wraps the start of a process and
:func:`release_sigint` is the first thing the new process does once its own
handler is in place.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import resource_tracker
from typing import Any


@contextmanager
def sigint_held() -> Iterator[None]:
    """Start processes inside this block and they are born with Ctrl-C held back.

    Ctrl-C in a terminal (or a kernel's interrupt of the process group) sends
    SIGINT to every process of the group, workers included. A worker still
    starting up (importing) would die of it with a ``KeyboardInterrupt``
    traceback, and a start cut short in this process leaves a child reading
    half its start-up data. The blocked signal mask is inherited through fork
    and exec, so the new process keeps any SIGINT pending until it calls
    :func:`release_sigint` with its own handler in place. In this process the
    Ctrl-C is not lost: in the main thread it is raised as soon as the block
    ends (by the handler that was there before).

    Examples
    --------
    >>> import signal
    >>> with sigint_held():
    ...     signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    True
    >>> signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    False
    """
    # multiprocessing starts its resource tracker with the first process and then UNBLOCKS SIGINT
    # in the calling thread: have it running first, so the block below holds.
    resource_tracker.ensure_running()
    pressed: list[tuple[int, Any]] = []
    handler: Any = None
    if threading.current_thread() is threading.main_thread():
        # Another thread may take the signal; Python then raises it here, in the main thread:
        # hold that back too, so a start is never cut in half.
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            signal.signal(signal.SIGINT, lambda signum, frame: pressed.append((signum, frame)))
        else:
            handler = None
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, OSError, ValueError):  # no signal masks here
        before = {signal.SIGINT}
    try:
        yield
    finally:
        if signal.SIGINT not in before:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
            if pressed:
                handler(*pressed[0])  # the Ctrl-C, now (KeyboardInterrupt by default)


def release_sigint() -> None:
    """In a process started under :func:`sigint_held`: let SIGINT through (its handler is set by now).

    A Ctrl-C that arrived while the process started is handled now, by the
    handler the process installed (a pool worker ignores it; a
    ``fuseline-nb worker`` process stops after its step).

    Examples
    --------
    >>> import signal
    >>> with sigint_held():
    ...     release_sigint()
    ...     signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    False
    """
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    except (AttributeError, OSError, ValueError):
        pass


__all__ = ["release_sigint", "sigint_held"]
