"""Building pauses the cyclic collector and hands what it made to the oldest generation, leaving the user's
collector settings (enabled or not, a freeze of their own) as they were."""

from __future__ import annotations

import gc
import threading
import weakref

from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.workflow.gcpause import paused_gc


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _in_generation(obj: object, generation: int) -> bool:
    return any(o is obj for o in gc.get_objects(generation=generation))


def test_what_the_pause_made_goes_to_the_oldest_generation_and_cyclic_garbage_is_still_collected() -> None:
    gc.collect()
    with paused_gc():
        assert not gc.isenabled()
        made = _Cycle()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert _in_generation(made, 2) and not _in_generation(made, 0)  # not walked by the young collections
    gone = weakref.ref(made)
    del made
    gc.collect()  # a full collection still finds it
    assert gone() is None


def test_a_disabled_collector_stays_disabled_and_nothing_moves() -> None:
    gc.disable()
    try:
        with paused_gc():
            made = _Cycle()
        assert not gc.isenabled()
        assert _in_generation(made, 0)  # the user's setting: nothing done behind their back
    finally:
        gc.enable()


def test_a_freeze_of_the_users_is_left_as_it_was() -> None:
    gc.collect()
    mine = _Cycle()
    gc.freeze()
    try:
        Workflow(outputs=[FunctionStep(lambda: 1, name="one")]).to_schema()
        with paused_gc():
            made = _Cycle()
        assert gc.get_freeze_count() > 0  # not thawed by the build
        assert not any(_in_generation(mine, g) for g in range(3))  # still frozen
        assert _in_generation(made, 0)  # nothing moved: moving would have thawed the user's freeze
    finally:
        gc.unfreeze()


def test_nested_pauses_move_once_at_the_outer_end() -> None:
    gc.collect()
    with paused_gc():
        with paused_gc():
            inner = _Cycle()
        assert not gc.isenabled()  # the inner end leaves the outer pause alone
        assert _in_generation(inner, 0)
    assert gc.isenabled() and _in_generation(inner, 2)


def _other_thread_pauses(entered: threading.Event, leave: threading.Event, left: threading.Event,
                         promote: bool = False) -> threading.Thread:
    def run() -> None:
        with paused_gc(promote=promote):
            entered.set()
            leave.wait(10)
        left.set()

    t = threading.Thread(target=run)
    t.start()
    assert entered.wait(10)
    return t


def test_pauses_overlapping_in_two_threads_end_with_the_collector_on_whichever_ends_first() -> None:
    # the DuckDB flusher pauses while it builds a flush's columns, the notebook while it builds a
    # workflow: the first pause to end must not turn the collector back on under the other, and
    # the last must turn it on (a pause that saved and restored "as it was" left it off for good)
    for flusher_ends_first in (True, False):
        gc.collect()
        entered, leave, left = threading.Event(), threading.Event(), threading.Event()
        if flusher_ends_first:
            flusher = _other_thread_pauses(entered, leave, left)
            with paused_gc():
                leave.set()
                assert left.wait(10)
                assert not gc.isenabled()  # the flusher's end leaves the build's pause alone
                made = _Cycle()
        else:
            with paused_gc():
                flusher = _other_thread_pauses(entered, leave, left)
                made = _Cycle()
            assert not gc.isenabled()  # the build ended first: the flusher still pauses
            leave.set()
            assert left.wait(10)
        flusher.join(10)
        assert gc.isenabled() and gc.get_freeze_count() == 0
        assert _in_generation(made, 2)  # the build asked for it: handed over once the last pause ended


def test_a_pause_that_does_not_promote_leaves_what_it_made_young() -> None:
    gc.collect()
    with paused_gc(promote=False):
        made = _Cycle()
    assert gc.isenabled() and _in_generation(made, 0)
