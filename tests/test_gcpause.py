"""Building pauses the cyclic collector and hands what it made to the oldest generation, leaving the user's
collector settings (enabled or not, a freeze of their own) as they were."""

from __future__ import annotations

import gc
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
