"""The steps of a run that has ended, read from the broker's compact records as they are asked for.

When a run ends, the broker drops its live records; a ``run_finished``
listener that keeps the run's final record (the :class:`~fuseline_nb.Session`
does, so ``Run.wait()`` and ``Run.info()`` need no trip to the history)
would otherwise make a :class:`~fuseline_nb.workflow.runinfo.StepInfo` for
every step at that moment: about 3 µs and 300 bytes a step, seconds and
hundreds of MB for a million-step run, spent in the thread that reported
the last step. :class:`EndedSteps` keeps the run's
:class:`~fuseline_nb.broker.records.StepRecords` instead (about 45 bytes a
step, arrays) and makes a step's ``StepInfo`` when it is read.

Examples
--------
>>> from fuseline_nb.broker.records import StepRecords
>>> from fuseline_nb.workflow.status import Status
>>> recs = StepRecords(["a", "b"], {"a": 0, "b": 1})
>>> info = recs.open("a"); info.state = Status.SUCCEEDED
>>> recs.close()
>>> steps = EndedSteps(recs)
>>> list(steps), steps["a"].state, steps["b"].state, len(steps)
(['a', 'b'], <Status.SUCCEEDED: 'SUCCEEDED'>, <Status.PENDING: 'PENDING'>, 2)
>>> steps.counts()[Status.SUCCEEDED], steps == {"a": steps["a"], "b": steps["b"]}
(1, True)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..workflow.runinfo import StepInfo
from ..workflow.status import Status
from .records import StepRecords

_STATES: tuple[Status, ...] = tuple(Status)  # as StepRecords codes them (0: PENDING, also no record)


class EndedSteps(Mapping[str, StepInfo]):
    """``{step: StepInfo}`` of an ended run, every step of its plan in order, made from its records when read.

    Read-only: a step's ``StepInfo`` is made anew at each read (a step that
    never got a record reads as a PENDING one). It pickles and copies as a
    plain ``dict``.
    """

    __slots__ = ("_records",)

    def __init__(self, records: StepRecords) -> None:
        self._records = records

    def __getitem__(self, step: str) -> StepInfo:
        records = self._records
        if step in records:
            return records.copy(step)
        if step in records.index:
            return StepInfo()
        raise KeyError(step)

    def __contains__(self, step: object) -> bool:
        return step in self._records.index

    def __iter__(self) -> Iterator[str]:
        return iter(self._records.names)

    def __len__(self) -> int:
        return len(self._records.names)

    def counts(self) -> dict[Status, int]:
        """How many steps are in each state, counted in the records' arrays (no ``StepInfo`` made)."""
        records = self._records
        state = records.state
        out = {status: state.count(code) for code, status in enumerate(_STATES)}
        for step, info in records.opened.items():  # an open record's state is its StepInfo's
            out[_STATES[state[records.index[step]]]] -= 1
            out[info.state] += 1
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (dict(self.items()),)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


__all__ = ["EndedSteps"]
