"""A pool's channel server answers first only when that overlaps something.

Inside a deferred block the broker writes the history after the answer has
left (``broker/_applying.py``): on two CPUs the worker runs its next step
meanwhile. When the server's spin finds it was off its CPU while it waited
(``Spin.shared``: the worker, or another process, runs on the server's CPU),
nothing overlaps and holding the writes only costs CPU, so the server
answers after the broker call has written everything (as ``LocalBrokerClient``
callers always do). These tests run real worker processes through a
workflow with a fan-out, a branch, a retried failure and a failure that
cancels, both ways, and compare what the history keeps and the events.
"""

from __future__ import annotations

from typing import Any

import pytest

import fuseline_nb as fl
from fuseline_nb import FunctionStep, RetryPolicy, Workflow
from fuseline_nb.worker._spin import AWAY_SECONDS, Spin


def _flaky_once(marker: str) -> int:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ValueError("first try fails")
    return 3


def _bad() -> int:
    raise ValueError("no")


def _workflow(marker: str) -> Workflow:
    root = FunctionStep(lambda: 0, name="root")
    route = FunctionStep(lambda: "left", name="route")
    left, right = FunctionStep(lambda: 1, name="left"), FunctionStep(lambda: 2, name="right")
    flaky = FunctionStep(lambda: _flaky_once(marker), name="flaky", policies=[RetryPolicy(2)])
    bad, after_bad = FunctionStep(_bad, name="bad"), FunctionStep(lambda: 5, name="after_bad")
    fan = [FunctionStep(lambda i=i: i, name=f"fan{i}") for i in range(6)]
    join = FunctionStep(lambda: 6, name="join")
    root >> route
    route - "left" >> left
    route - "right" >> right
    root >> flaky >> join
    root >> bad >> after_bad
    left >> join
    for f in fan:
        root >> f
    return Workflow(outputs=[join, right, after_bad, *fan], workflow_id="answer-order")


class _Counting:
    """The broker's block, counting how often the server entered it."""

    def __init__(self, block: Any) -> None:
        self.block, self.entered = block, 0

    def __enter__(self) -> None:
        self.entered += 1
        self.block.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self.block.__exit__(*exc)


def _run(shared: bool, tmp_path: Any, tag: str) -> tuple[Any, ...]:
    with fl.Session(None, workers=2) as session:
        server = session.pool._server
        server.spin = Spin(0.0)  # never spins: ``shared`` stays as set (no spin to learn otherwise)
        server.spin.shared = shared
        counting = server._block = _Counting(server._block)
        run = session.submit(_workflow(str(tmp_path / f"{tag}.flaky")))
        run.wait(timeout=120)
        info = run.info()
        steps = {n: (s.state, s.attempts, s.action, s.error is not None, s.skip_reason, s.recovered,
                     s.result.load() if hasattr(s.result, "load") else s.result)
                 for n, s in info.steps.items()}
        events = session.broker.events(run.run_id)
        order = [(e.kind, e.step, e.state, e.attempt) for e in events]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))  # numbered once each, in order
        return info.state, steps, sorted(order, key=str), counting.entered


@pytest.mark.slow
def test_a_pool_keeps_the_same_history_whether_it_answers_first_or_after_writing(tmp_path: Any) -> None:
    first = _run(False, tmp_path, "first")
    after = _run(True, tmp_path, "after")
    assert first[3] > 0 and after[3] == 0  # the server deferred in one run only (the test can tell them apart)
    assert first[:3] == after[:3]
    state, steps, _, _ = after
    assert state is fl.Status.FAILED
    assert steps["flaky"][:2] == (fl.Status.SUCCEEDED, 2) and steps["after_bad"][0] is fl.Status.CANCELLED
    assert steps["right"][0] is fl.Status.SKIPPED and steps["fan5"][-1] == 5


def test_a_spin_off_its_cpu_says_its_cpu_is_shared_until_the_next_spin() -> None:
    spin = Spin(0.0001)
    assert not spin.shared  # answer first until there is evidence
    spin.away = 2 * AWAY_SECONDS
    spin.took(0.00005)  # the reply came while the spin was away from its CPU
    assert spin.shared
    assert [spin.wanted() for _ in range(2)] == [False, True]  # skipped waits keep it
    assert spin.shared
    spin.took(0.00002)  # caught without leaving the CPU: two CPUs
    assert not spin.shared
