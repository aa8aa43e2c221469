"""A run keeps what existed at its dispatch out of the cyclic collector's walks, and gives it back at its end."""

from __future__ import annotations

import gc
import weakref

import pytest

from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.broker import MemoryBroker, StepReport, _gcfreeze
from fuseline_nb.workflow.status import Status


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _run_one(broker: MemoryBroker) -> tuple[str, str]:
    wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="gc")
    wid = broker.register_worker([wf.to_schema()])
    return wid, broker.dispatch_workflow(wf.to_schema())


@pytest.fixture()
def long_from_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gcfreeze, "FREEZE_FROM_STEPS", 1)  # these tests' one-step runs count as long


def test_a_short_run_freezes_nothing() -> None:
    broker = MemoryBroker()
    _run_one(broker)
    assert gc.get_freeze_count() == 0
    broker.close()


def test_dispatch_freezes_and_the_end_of_the_run_thaws_so_old_cyclic_garbage_is_collected(
        long_from_one_step: None) -> None:
    broker = MemoryBroker()
    old = _Cycle()
    gone = weakref.ref(old)
    wid, run_id = _run_one(broker)
    assert gc.get_freeze_count() > 0  # the workflow, schema and records: not walked while it runs
    del old
    gc.collect()
    assert gone() is not None  # frozen: it waits for the end of the run (nothing is lost)
    (a,) = broker.get_steps(wid, 1)
    broker.report_step(wid, StepReport(a.workflow_id, run_id, "one", Status.SUCCEEDED, 1, attempt=1))
    assert broker.get_run(run_id).state is Status.SUCCEEDED
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None


def test_cancelling_a_run_or_closing_its_broker_thaws(long_from_one_step: None) -> None:
    broker = MemoryBroker()
    _, run_id = _run_one(broker)
    assert gc.get_freeze_count() > 0
    broker.cancel_run(run_id)
    assert gc.get_freeze_count() == 0
    _run_one(broker)
    assert gc.get_freeze_count() > 0
    broker.close()
    assert gc.get_freeze_count() == 0


def test_a_freeze_the_user_made_is_left_alone_by_short_runs_and_closing() -> None:
    gc.freeze()  # e.g. before forking, in the user's own code
    try:
        frozen = gc.get_freeze_count()
        broker = MemoryBroker()
        wid, run_id = _run_one(broker)  # a short run: freezes nothing, so its end thaws nothing
        (a,) = broker.get_steps(wid, 1)
        broker.report_step(wid, StepReport(a.workflow_id, run_id, "one", Status.SUCCEEDED, 1, attempt=1))
        assert broker.get_run(run_id).state is Status.SUCCEEDED
        broker.close()
        assert gc.get_freeze_count() >= frozen > 0
    finally:
        gc.unfreeze()


def test_a_long_run_collects_young_objects_less_often_until_it_ends(long_from_one_step: None) -> None:
    before = gc.get_threshold()
    broker = MemoryBroker()
    wid, run_id = _run_one(broker)
    assert gc.get_threshold() == (_gcfreeze.LONG_RUN_THRESHOLD, *before[1:])
    (a,) = broker.get_steps(wid, 1)
    broker.report_step(wid, StepReport(a.workflow_id, run_id, "one", Status.SUCCEEDED, 1, attempt=1))
    assert gc.get_threshold() == before  # the run's end puts the collector's thresholds back
    _, run_id = _run_one(broker)
    gc.set_threshold(5000, *before[1:])  # the user's own setting, made during the run
    try:
        broker.cancel_run(run_id)
        assert gc.get_threshold()[0] == 5000  # kept: the thaw only undoes its own change
    finally:
        gc.set_threshold(*before)
        broker.close()
