"""Audit (session 8): the broker's "answer first" writes, carried out by a reader interrupted by Ctrl-C.

Inside a channel server's ``deferred_events()`` block the broker holds the history writes of a report
(step records, results, events) until the answer has left; any read of the history from another thread
(``session.sql``, ``get_run`` of an ended run, ``events``) carries them out first. The reader is often the
notebook's main thread, and on a big run a write may wait there for the DuckDB flusher (back-pressure):
a Ctrl-C landing in such a write made the reader raise ``KeyboardInterrupt`` — and every held write
after it was dropped for good: the run's ``step_finished`` events, its later steps' records and its end
never reached the history, without a word (the live run went on and looked right).

The Ctrl-C is delivered here where the real one lands: right after the storage took a write (as in the
flusher wait that follows it), on a real DuckDB history file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import fuseline_nb as fl
from fuseline_nb.broker import DuckDBBroker, StepReport


def chain() -> fl.Workflow:
    a = fl.FunctionStep(lambda: 1, name="a")
    b = fl.FunctionStep(lambda: 2, name="b")
    c = fl.FunctionStep(lambda: 3, name="c")
    a >> b >> c
    return fl.Workflow(outputs=[c], workflow_id="audit8-answer-first")


def test_a_reader_interrupted_while_writing_what_the_answer_held_loses_no_write(tmp_path: Path) -> None:
    wf = chain()
    broker = DuckDBBroker(tmp_path / "h.duckdb")
    seen: list[tuple[str, str | None]] = []
    broker.subscribe(lambda e: seen.append((e.kind, e.step)))
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    storage: Any = broker.storage
    real = storage.save_steps
    interrupt = [False]

    def save_steps(*args: Any) -> None:  # the storage takes the rows, then Ctrl-C lands (the flusher wait)
        real(*args)
        if interrupt[0]:
            interrupt[0] = False
            raise KeyboardInterrupt

    storage.save_steps = save_steps
    a = broker.get_step(wid)
    assert a is not None
    for value in (1, 2, 3):
        with broker.deferred_events():  # a channel server answering the worker first
            _, got = broker.report_and_get(
                wid, [StepReport(a.workflow_id, a.instance_id, a.step_name, fl.Status.SUCCEEDED, value,
                                 attempt=a.attempt)], 1)
            if value == 1:  # the answer left; the notebook reads the history now and is interrupted
                interrupt[0] = True
                with pytest.raises(KeyboardInterrupt):
                    broker.events(run_id)
        if got:
            a = got[0]
    assert broker.get_run(run_id).state is fl.Status.SUCCEEDED
    stored = [(e.kind, e.step) for e in broker.events(run_id)]
    assert stored == seen  # before: the interrupted read dropped the held writes after the first one
    assert [k for k, _ in stored].count("step_finished") == 3 and stored[-1] == ("run_finished", None)
    rows = broker.sql("SELECT step, state FROM steps WHERE run_id = ? ORDER BY step", [run_id]).fetchall()
    assert rows == [("a", "SUCCEEDED"), ("b", "SUCCEEDED"), ("c", "SUCCEEDED")]
    assert broker.sql("SELECT state FROM runs WHERE run_id = ?", [run_id]).fetchall() == [("SUCCEEDED",)]
    broker.close()
