"""How a :class:`~fuseline_nb.broker.core.StorageBroker` carries out an :class:`~fuseline_nb.broker.transitions.Effects`.

The transitions decide; this mixin writes what they decided to the storage
— in order, with the storage's batch calls for the compact entries (a
``steps`` entry is one ``set_results`` and one ``save_steps`` call, a
``queued`` entry one ``enqueue_steps`` and one ``save_steps`` call) — then
records the events in one ``record_events`` call and hands them to the
broker's :class:`~fuseline_nb.broker._outbox.Outbox` (delivered at once, or
at the end of a ``deferred_events()`` block). Then the records the
transition opened are closed, and runs that ended are forgotten once their
``run_finished`` is delivered.

**Answer first.** Inside a ``deferred_events()`` block (a channel server
answering a worker) only the writes that decide what is handed out next
are made at once: the queue (``enqueue``, the ``enqueue_steps`` half of a
``queued`` entry), the cache store, new workflows and runs. The history
writes — step records and results (``steps``, ``save_step``,
``set_result``, the ``save_steps`` half of ``queued``), a run's end
(``finalize_run``), the making and recording of the events (an
``Effects(raw=True)`` keeps them as their fields) — and the closing of the
records wait in the outbox's :attr:`~fuseline_nb.broker._outbox.Outbox.later`, in
order, until the block ends (after the answer left), and are then carried
out before the block's events are delivered (:meth:`Applier._settle`). A
broker call outside a block and every read of the history carry them out
first, so no reader sees a write missing and the storage gets every write
in the order the broker made it.

Examples
--------
>>> from fuseline_nb.broker import MemoryBroker
>>> issubclass(MemoryBroker, Applier)
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from threading import get_ident
from typing import Any

from ..workflow.runinfo import StepInfo
from ._gcfreeze import thaw
from ._outbox import Outbox
from ._transitions_effects import made
from .cache import CacheStore
from .records import StepRecords
from .state import LiveState
from .storage.base import RuntimeStorage
from .transitions import Effects

log = logging.getLogger(__name__)
#: an Effects' ops that only write history: held inside a deferred block until it ends (see the module docstring)
_LATER = frozenset({"steps", "save_step", "set_result", "finalize_run"})


class Applier:
    """The writing side of :class:`~fuseline_nb.broker.core.StorageBroker` (a base class of it).

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.broker.transitions import Effects
    >>> broker = MemoryBroker(); broker._apply(Effects())
    """

    storage: RuntimeStorage
    _state: LiveState
    _out: Outbox
    _do: dict[str, Callable[..., Any]]
    cache_store: CacheStore  # a property of StorageBroker's (made on first use)

    def _writes_table(self) -> dict[str, Callable[..., Any]]:
        """What each entry of an Effects' ``ops`` calls (the cache store is made on first use)."""
        s = self.storage
        save_step = s.save_step
        return {
            "register_workflow": s.register_workflow, "create_run": s.create_run, "enqueue": s.enqueue,
            "save_step": lambda run_id, step, info: save_step(
                run_id, step, info if info.__class__ is StepInfo else info.record(step)),
            "queued": self._queued, "steps": self._steps,
            "set_result": s.set_result, "finalize_run": s.finalize_run,
            "cache_put": lambda entry, value: self.cache_store.put(entry, value),
            "cache_hit": lambda key, at: self.cache_store.hit(key, at),
            "cache_mark": lambda run_id, step, source: self.cache_store.mark_cached(run_id, step, source),
        }

    def _apply(self, fx: Effects) -> None:
        """Carry out what a transition decided: its writes in order, then record and publish its events.

        Inside this thread's ``deferred_events()`` block the history part
        waits until the block ends (see the module docstring).
        """
        out = self._out
        deferring = out._deferring
        if deferring and get_ident() in deferring:
            self._hold(fx)
            if fx.events:  # made (if raw), recorded and held for delivery when the block ends
                out.later.append(("record_events", (fx.events,)))
            return
        if out.later:
            self._settle()  # what a block holds goes first: one order of writes
        do = self._do
        for op, args in fx.ops:
            do[op](*args)
        if fx.events:
            self.storage.record_events(fx.events)
            out.send(fx.events)  # delivered now, or at the end of a deferred_events() block
        st = self._state
        if st.dirty:
            for records in st.dirty:
                records.close()  # the records the transition opened: back into their arrays
            st.dirty.clear()
        if st.ending and out.idle():
            self._ended()

    def _write(self, fx: Effects) -> None:
        """Only the writes of ``fx``, in order (its events are published by a later :meth:`_apply`)."""
        out = self._out
        deferring = out._deferring
        if deferring and get_ident() in deferring:
            self._hold(fx)
            return
        if out.later:
            self._settle()
        do = self._do
        for op, args in fx.ops:
            do[op](*args)

    def _hold(self, fx: Effects) -> None:
        """A deferring thread's writes: those that decide the next hand-out now, the history ones held in order."""
        later, do = self._out.later, self._do
        for entry in fx.ops:
            op = entry[0]
            if op in _LATER:
                later.append(entry)
            elif op == "queued":  # the queue now (the next hand-out reads it), the records after the answer
                args = entry[1]
                self.storage.enqueue_steps(args[0], args[1])
                later.append(("queued_rows", args))
            else:
                do[op](*entry[1])

    def _settle(self) -> None:
        """Carry out the history writes held by deferred blocks, in order, then close the records they opened.

        Called under the broker's lock: at the end of a block (before its
        events are delivered), before any write outside a block, and before
        a read of the history. A write the storage refuses now cannot refuse
        the report any more (its answer has left): it is logged as an error
        naming the run, and the writes after it are still made. A
        ``KeyboardInterrupt`` (Ctrl-C in a thread that reads the history)
        leaves the writes not begun held, in order, for the next settle.
        """
        out = self._out
        later, out.later = out.later, []
        s, do = self.storage, self._do
        done = 0
        try:
            for op, args in later:
                done += 1  # (counted before: a write begun is not made twice)
                try:
                    if op == "record_events":
                        events = made(args[0])  # an Effects(raw=True)'s events become events now
                        s.record_events(events)
                        out.hold(events)
                    elif op == "queued_rows":
                        self._queued_rows(*args)
                    else:
                        do[op](*args)
                except Exception:
                    first = args[0][0] if op == "record_events" and args[0] else None
                    run = args[0] if first is None else first[1] if first.__class__ is tuple else first.run_id
                    log.exception("the history of run %s lost a write (%s) made after the answer to its worker: "
                                  "the run goes on, its stored history may miss this change", run, op)
        finally:
            if done < len(later):  # a Ctrl-C in the reading thread (one waiting for the flusher, say):
                out.later[:0] = later[done:]  # the writes not begun wait for the next settle, in order
        st = self._state
        if st.dirty:
            for records in st.dirty:
                records.close()
            st.dirty.clear()

    def _settled(self) -> None:
        """Before a read of the history: what deferred blocks hold is written (call under the lock)."""
        if self._out.later:
            self._settle()

    def _ended(self) -> None:
        """Every run_finished is delivered: the ended runs are read from the storage now."""
        if self._state.ending:
            self._state.ending.clear()
            thaw()  # what the dispatch froze is collectable again (see _gcfreeze)

    def _queued(self, run_id: str, steps: list[str], records: StepRecords, at: float | None) -> None:
        """The writes of an Effects' ``queued`` entry: ``enqueue`` then ``save_step`` of each step, in order."""
        self.storage.enqueue_steps(run_id, steps)
        self._queued_rows(run_id, steps, records, at)

    def _queued_rows(self, run_id: str, steps: list[str], records: StepRecords, at: float | None) -> None:
        """The ``save_step`` half of a ``queued`` entry (its ``enqueue`` half made already)."""
        s = self.storage
        if at is not None:  # all queued fresh at ``at``: one PENDING record stands for them all
            pending = records.pending(at)
            s.save_steps(run_id, [(step, pending) for step in steps])
        else:
            record = records.record
            s.save_steps(run_id, [(step, record(step)) for step in steps])

    def _steps(self, run_id: str, results: list[tuple[str, Any]], saves: list[tuple[str, StepInfo]]) -> None:
        """The writes of an Effects' ``steps`` entry: the results, then the records."""
        if results:
            self.storage.set_results(run_id, results)
        if saves:
            self.storage.save_steps(run_id, saves)


__all__ = ["Applier"]
