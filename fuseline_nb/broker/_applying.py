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

Examples
--------
>>> from fuseline_nb.broker import MemoryBroker
>>> issubclass(MemoryBroker, Applier)
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..workflow.runinfo import StepInfo
from ._gcfreeze import thaw
from ._outbox import Outbox
from .cache import CacheStore
from .records import StepRecords
from .state import LiveState
from .storage.base import RuntimeStorage
from .transitions import Effects


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
        """Carry out what a transition decided: its writes in order, then record and publish its events."""
        do = self._do
        for op, args in fx.ops:
            do[op](*args)
        if fx.events:
            self.storage.record_events(fx.events)
            self._out.send(fx.events)  # delivered now, or at the end of a deferred_events() block
        st = self._state
        if st.dirty:
            for records in st.dirty:
                records.close()  # the records the transition opened: back into their arrays
            st.dirty.clear()
        if st.ending and self._out.idle():
            self._ended()

    def _write(self, fx: Effects) -> None:
        """Only the writes of ``fx``, in order (its events are published by a later :meth:`_apply`)."""
        do = self._do
        for op, args in fx.ops:
            do[op](*args)

    def _ended(self) -> None:
        """Every run_finished is delivered: the ended runs are read from the storage now."""
        if self._state.ending:
            self._state.ending.clear()
            thaw()  # what the dispatch froze is collectable again (see _gcfreeze)

    def _queued(self, run_id: str, steps: list[str], records: StepRecords, at: float | None) -> None:
        """The writes of an Effects' ``queued`` entry: ``enqueue`` then ``save_step`` of each step, in order."""
        s = self.storage
        s.enqueue_steps(run_id, steps)
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
