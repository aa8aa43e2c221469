"""The broker's events on their way to its listeners: delivered at once, or held until a deferred block ends.

A :class:`~fuseline_nb.broker.core.StorageBroker` records every event in its
storage as the transition is applied and hands it to its
:class:`~fuseline_nb.workflow.events.EventHub` through an :class:`Outbox`.
Normally the outbox delivers at once (under the broker's lock, as always).
Inside ``with broker.deferred_events():`` the events the *calling thread's*
broker calls make are held instead and delivered, in order, when the
outermost block of that thread ends — also when its body raises. A channel
server uses it to answer a worker first and run the listeners (views, the
session, its own wake-ups) after the answer is on its way.

What stays true:

- **One order.** The outbox is shared by every thread: a broker call made
  outside a block by another thread first delivers whatever is held, then
  its own events; a new subscriber gets what is held delivered before it
  joins (it sees no event older than its subscription). So listeners see
  the events in the order the broker made them, each exactly once.
- **Readable at delivery.** A run that ended stays readable from memory
  (``get_run``) until its ``run_finished`` is delivered: the broker keeps
  it in ``LiveState.ending`` until the outbox is empty.
- **Answer first, history after.** Inside a block the broker writes at once
  only what decides the next hand-out (the queue, the cache); the history
  writes (step records, results, a run's end) and the recording of the
  events are held here, in order (:attr:`Outbox.later`), and carried out
  when the block ends, before its events are delivered. Any broker call
  outside a block, any read of the history and a new subscriber first
  carry out what is held: every reader sees every write, in the order the
  broker made them, and a listener reads the history its event speaks of.

Examples
--------
>>> import threading
>>> from fuseline_nb.workflow.events import Event, EventHub
>>> hub, seen = EventHub(), []
>>> _ = hub.subscribe(lambda e: seen.append(e.seq))
>>> box = Outbox(hub, threading.RLock())
>>> with box.deferred():
...     box.send([Event("run_dispatched", "r1", 1, 0.0)])
...     len(seen)
0
>>> seen
[1]
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from threading import get_ident
from typing import Any

from ..workflow.events import Event, EventHub


class Outbox:
    """Delivers a broker's events to its hub: at once, or, inside :meth:`deferred`, when the block ends.

    ``lock`` is the broker's lock (held around every delivery);
    ``delivered`` is called, under it, each time nothing is held any more
    (the broker forgets the runs that ended); ``settle`` carries out the
    history writes held in :attr:`later` (called under the lock before a
    delivery).

    Examples
    --------
    >>> from fuseline_nb.workflow.events import EventHub
    >>> box = Outbox(EventHub(), threading.RLock())
    >>> box.holding(), box.held, box.later
    (False, [], [])
    """

    __slots__ = ("_block", "_deferring", "_delivered", "_delivering", "_hub", "_lock", "_settle", "held", "later")

    def __init__(self, hub: EventHub, lock: threading.RLock, delivered: Callable[[], None] | None = None,
                 settle: Callable[[], None] | None = None) -> None:
        self._hub = hub
        self._lock = lock
        self._delivered = delivered
        self._settle = settle
        #: history writes a deferring thread's broker calls made, in order, not carried out yet (see settle)
        self.later: list[tuple[str, tuple[Any, ...]]] = []
        self._deferring: dict[int, int] = {}  # thread id -> how many deferred blocks it is in
        #: events made but not yet delivered (in the order they were made), from any thread's block
        self.held: list[Event] = []
        self._delivering = 0  # deliveries under way (a listener's broker call may nest one)
        self._block = _Deferred(self)

    def holding(self) -> bool:
        """Whether the calling thread is inside a :meth:`deferred` block."""
        return get_ident() in self._deferring

    def idle(self) -> bool:
        """Whether every event made so far has been delivered and every held write made (no delivery under way)."""
        return not self.held and not self._delivering and not self.later

    def send(self, events: list[Event]) -> None:
        """Deliver ``events`` (after what is held), or hold them when this thread defers. Call under the lock."""
        if self._deferring and get_ident() in self._deferring:
            if self._hub._subs:  # (has_subscribers, without the property call: per broker call)
                self.held.extend(events)
            return
        if self.held:
            self.deliver()
        hub = self._hub
        if hub._subs:
            self._delivering += 1
            try:
                hub.publish_many(events)
            finally:
                self._delivering -= 1

    def hold(self, events: list[Event]) -> None:
        """Keep ``events`` (made inside a block, written now) for the next delivery. Call under the lock."""
        if self._hub._subs:
            self.held.extend(events)

    def deliver(self) -> None:
        """Deliver what is held, in order, each event once.

        A listener's ``BaseException`` (``KeyboardInterrupt``) leaves the
        events not yet begun held for the next delivery; with a batch
        listener the whole list counts as begun.
        """
        with self._lock:
            if self.later and self._settle is not None:
                self._settle()  # the history the events speak of is written before they go out
            self._delivering += 1
            try:
                self._deliver()
            finally:
                self._delivering -= 1
            if self._delivered is not None and self.idle():
                self._delivered()

    def _deliver(self) -> None:
        held = self.held
        while held:
            events, self.held = held, []
            n = 0
            try:
                publish = self._hub.publish
                if not self._hub.has_batch_subscribers:
                    for e in events:
                        n += 1  # counted before: an event half delivered is not delivered again
                        publish(e)
                else:  # a batch listener takes them at once
                    n = len(events)
                    self._hub.publish_many(events)
            finally:
                if n < len(events):
                    self.held[:0] = events[n:]
            held = self.held  # held meanwhile by a listener's deferred call: delivered in this loop

    def deferred(self) -> AbstractContextManager[None]:
        """Hold the events this thread's broker calls make until the outermost block ends; then deliver them.

        The same context manager object every time (a channel server enters
        one per request: no generator made per block).
        """
        return self._block


class _Deferred:
    """What :meth:`Outbox.deferred` returns: a block per thread, nested blocks counted."""

    __slots__ = ("_box",)

    def __init__(self, box: Outbox) -> None:
        self._box = box

    # A thread changes only its own entry of ``_deferring`` (one dict operation at a time), and other
    # threads only ask whether theirs is there: no lock to enter or leave a block. Delivering takes it.
    def __enter__(self) -> None:
        deferring, me = self._box._deferring, get_ident()
        deferring[me] = deferring.get(me, 0) + 1

    def __exit__(self, *exc: object) -> None:
        box = self._box
        deferring, me = box._deferring, get_ident()
        depth = deferring.pop(me) - 1
        if depth:
            deferring[me] = depth
        elif box.held or box.later:
            box.deliver()


__all__ = ["Outbox"]
