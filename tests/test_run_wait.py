"""``Run.wait()`` sleeps on one lock per run (``RunDone``) and is woken by the run's end, a closing
session or its timeout; it never misses an end that came first."""

from __future__ import annotations

import threading

import pytest

import fuseline_nb as fl
from fuseline_nb.errors import StorageClosedError
from fuseline_nb.runhandle import RunDone


def _one() -> int:
    return 1


def test_every_waiter_is_woken_by_one_set_from_another_thread():
    done = RunDone()
    woke: list[bool] = []
    started = threading.Barrier(4)

    def waiter() -> None:
        started.wait()
        woke.append(done.wait(30.0))

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    started.wait()
    assert not done.is_set() and done.wait(0.0) is False
    setter = threading.Thread(target=done.set)
    setter.start()
    setter.join()
    done.set()  # a second set (the session closing after the run's end) is harmless
    for t in threads:
        t.join(30.0)
    assert woke == [True, True, True]
    assert done.wait(None) is True and done.wait(0.0) is True  # and stays set for later waiters


def test_a_wait_begun_after_the_run_ended_returns_at_once():
    with fl.Session(workers=1) as session:
        run = session.submit(fl.Workflow(outputs=[fl.FunctionStep(_one, name="one")]))
        assert run.wait(timeout=60) == 1
        assert run.id not in session._done  # its end is known: nothing kept for it
        assert run.wait(timeout=0) == 1  # no wait at all: the final record is kept


def test_a_session_closed_by_another_thread_wakes_the_waiter_with_the_reason():
    session = fl.Session(workers=0)  # no workers: the run stays unfinished
    run = session.submit(fl.Workflow(outputs=[fl.FunctionStep(_one, name="one")]))
    waiting = session._event_for(run.id)
    closer = threading.Timer(0.05, session.close)
    closer.start()
    try:
        with pytest.raises(StorageClosedError, match=r"the session closed before run '.+' ended"):
            run.wait(timeout=60)
        assert waiting.is_set()
    finally:
        closer.join()
        session.close()


def test_a_timeout_still_says_what_the_run_has_done():
    with fl.Session(workers=0) as session:
        run = session.submit(fl.Workflow(outputs=[fl.FunctionStep(_one, name="one")]))
        with pytest.raises(TimeoutError, match=r"has not ended after 0.05 s \(1 pending\)"):
            run.wait(timeout=0.05)
        with pytest.raises(TimeoutError, match=r"has not ended after 0 s"):
            run.wait(timeout=0)
