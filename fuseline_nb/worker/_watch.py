"""What the kernel's channel server waits on: file descriptors, each with the thing it stands for.

:class:`Watch` is ``selectors.DefaultSelector`` cut to what the server's loop
uses: register a file object (or a descriptor) with a value, wait, get the
values of the ready ones. ``selectors`` answers ``(key, events)`` pairs and
looks each descriptor's key up through a method call; one chain step of a
pool waits once (and a few more times while it spins), and on one CPU the
kernel's CPU per step is on the chain's path, so the loop asks the
operating system's poller (``epoll``, or ``poll`` where there is none)
directly and keeps one ``{fd: value}`` dict.

Examples
--------
>>> import os
>>> r, w = os.pipe()
>>> watch = Watch()
>>> watch.register(r, "the pipe")
>>> watch.wait(0)
[]
>>> _ = os.write(w, b"!")
>>> watch.wait(0)
['the pipe']
>>> watch.unregister(r); watch.wait(0)
[]
>>> watch.close(); os.close(r); os.close(w)
"""

from __future__ import annotations

import math
import select
from typing import Any


def _fd(obj: Any) -> int:
    return obj if isinstance(obj, int) else int(obj.fileno())


class Watch:
    """Descriptors to wait for readability, each with a value (see the module docstring)."""

    __slots__ = ("_epoll", "_poller", "_values", "wait")

    def __init__(self) -> None:
        self._values: dict[int, Any] = {}
        epoll = getattr(select, "epoll", None)
        self._epoll = epoll() if epoll is not None else None
        self._poller = self._epoll if self._epoll is not None else select.poll()
        #: ``wait(timeout)``: the values of the descriptors readable within ``timeout`` seconds
        #: (``None``: no limit; ``0``: look only), a list. Raises ``OSError`` as the poller does.
        self.wait = self._wait_epoll if self._epoll is not None else self._wait_poll

    def register(self, obj: Any, value: Any) -> None:
        """Watch ``obj`` (a file object with ``fileno()`` or a descriptor); :meth:`wait` answers ``value``."""
        fd = _fd(obj)
        if fd in self._values:
            raise KeyError(f"{obj!r} (descriptor {fd}) is already watched")
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        else:
            self._poller.register(fd, select.POLLIN)
        self._values[fd] = value

    def unregister(self, obj: Any) -> None:
        """Stop watching ``obj``. Raises ``KeyError`` when it is not watched (``ValueError``: closed)."""
        fd = _fd(obj)
        del self._values[fd]
        try:
            self._poller.unregister(fd)
        except OSError:  # closed already: the poller dropped it itself
            pass

    def _wait_epoll(self, timeout: float | None) -> list[Any]:
        # epoll's timeout is in milliseconds, rounded up (as selectors does): never a busy loop of 0 ms waits
        t = -1 if timeout is None else math.ceil(timeout * 1e3) * 1e-3 if timeout > 0 else 0
        values = self._values
        return [values[fd] for fd, _ in self._poller.poll(t)]

    def _wait_poll(self, timeout: float | None) -> list[Any]:
        t = None if timeout is None else math.ceil(timeout * 1e3) if timeout > 0 else 0
        values = self._values
        return [values[fd] for fd, _ in self._poller.poll(t)]

    def close(self) -> None:
        """Let the poller go (the watched descriptors stay open)."""
        self._values.clear()
        if self._epoll is not None:
            self._epoll.close()


__all__ = ["Watch"]
