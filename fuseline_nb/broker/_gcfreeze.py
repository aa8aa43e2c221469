"""Keeping what exists when a run starts out of the cyclic collector's walks while runs go on.

A run of N steps starts with O(N) long-lived objects in the process (the
built workflow, its schema and plan, the broker's records): tens of millions
at N = 1,000,000. They form no garbage while the run goes on, yet every full
collection of the cyclic garbage collector walks all of them, and the
records each step leaves behind trigger such collections again and again
(last session: 40% of the kernel's CPU at 20,000 steps).
:func:`freeze_for_run` moves every object alive when a run is dispatched to
the collector's permanent generation (``gc.freeze()``); :func:`thaw` puts
them back (``gc.unfreeze()``) when a run ends, is cancelled or its broker
closes. Nothing is lost: objects freed by reference counting are freed as
always; only cyclic garbage made of objects that existed at the dispatch
waits until :func:`thaw`, and the next full collection after it collects it.
Objects made during the run are collected as always.

A long run also raises the collector's first threshold to
:data:`LONG_RUN_THRESHOLD` allocations (700 by default) until :func:`thaw`
puts the previous one back (unless someone changed it meanwhile). The
records and events a run keeps for a while (a DuckDB history holds them
until its next flush) were otherwise walked by a young collection every 700
allocations and promoted on into full collections: at 30,000 steps this
halved the collector's time (`notes/broker.md`, fifth session). Objects
freed by reference counting are freed as always; cyclic garbage made
during the run waits a little longer for its collection.

Only runs of at least :data:`FREEZE_FROM_STEPS` steps freeze: the freeze is
undone at the run's end, and the collector's next full pass then walks the
whole heap once — worth it for a long run, a loss for many short ones.

The freeze is process-wide, so the rule is simple and safe with several
runs and brokers: any long run's dispatch freezes, any end thaws what it froze (the runs still going
lose the benefit until the next dispatch, nothing else). A history file
reopened in this process thaws first (``storage._duckdb_life``), so a
dropped broker is found by the collector.

Examples
--------
>>> import gc
>>> before = gc.get_threshold()
>>> freeze_for_run(FREEZE_FROM_STEPS); gc.get_freeze_count() > 0, gc.get_threshold()[0]
(True, 10000)
>>> thaw(); gc.get_freeze_count(), gc.get_threshold() == before
(0, True)
"""

from __future__ import annotations

import gc

from ..workflow.gcpause import _GC_LOCK as _lock  # one lock for every freeze/unfreeze of the package

_froze = False  # whether this module froze (a user's own gc.freeze() is left alone otherwise)

_saved: tuple[int, ...] | None = None  # the collector's thresholds before a long run raised the first

#: A run of this many steps or more freezes what exists at its dispatch (see the module docstring).
FREEZE_FROM_STEPS = 10_000
#: The collector's first threshold while a long run goes on (see the module docstring).
LONG_RUN_THRESHOLD = 10_000


def freeze_for_run(steps: int) -> None:
    """A run of ``steps`` steps was dispatched: if it is long, leave everything alive now out of the
    collector's walks, and let it collect young objects less often, until :func:`thaw`."""
    global _froze, _saved
    if steps >= FREEZE_FROM_STEPS:
        with _lock:
            gc.freeze()
            _froze = True
            before = gc.get_threshold()
            if _saved is None and 0 < before[0] < LONG_RUN_THRESHOLD:  # 0: the user turned it off
                _saved = before
                gc.set_threshold(LONG_RUN_THRESHOLD, *before[1:])


def thaw() -> None:
    """A run ended (or a broker closed): every frozen object is collectable again.

    Only after :func:`freeze_for_run` froze: the end of a short run (or a
    broker closing) leaves a freeze the user made alone.
    """
    global _froze, _saved
    with _lock:
        if _froze:
            gc.unfreeze()
            _froze = False
        if _saved is not None:
            if gc.get_threshold()[0] == LONG_RUN_THRESHOLD:  # else someone set their own meanwhile: kept
                gc.set_threshold(*_saved)
            _saved = None


__all__ = ["FREEZE_FROM_STEPS", "LONG_RUN_THRESHOLD", "freeze_for_run", "thaw"]
