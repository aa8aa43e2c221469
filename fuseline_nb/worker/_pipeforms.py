"""The pipe's form of the two messages every step sends: a report and an assignment.

Every step crosses the process channel twice — its assignment to a worker,
its report back — so these two travel as the tuple of their dataclass's
fields, in declaration order (a report's ``state`` as its text), inside the
pickled message: builtins only, so pickling them makes no Python call and
looks up no class, and the other side makes the dataclass from the tuple
with one call. That halves the pickling of a step's round trip (a report
~1.7 → ~0.9 µs to encode, ~2.3 → ~1.2 µs to decode; an assignment
~1.8 → ~0.8 µs to encode). The dataclasses stay the messages (and
``__reduce__`` still pickles them anywhere else): these functions only give
their fields, all of them, in order; the readers take a dataclass as it is too.
A pool worker makes its report's tuple straight from the step's outcome
(``fuseline_nb.worker.engine.report_fields``), with no dataclass between.

Examples
--------
>>> from fuseline_nb.broker.base import StepReport
>>> from fuseline_nb import Status
>>> r = StepReport("wf", "r1", "s", Status.SUCCEEDED, None, 1, started_at=1.0, finished_at=2.0)
>>> report_wire(r)[:4]
('wf', 'r1', 's', 'SUCCEEDED')
>>> report_from(report_wire(r)) == r, report_from(r) is r
(True, True)
"""

from __future__ import annotations

from typing import Any

from ..broker.base import StepAssignment, StepReport
from ..workflow.status import Status

_STATES: dict[str, Status] = {s.value: s for s in Status}


def report_wire(r: StepReport) -> tuple[Any, ...]:
    """``r``'s fields in declaration order, its state as its text (see the module docstring).

    Examples
    --------
    >>> from fuseline_nb.broker.base import StepReport
    >>> len(report_wire(StepReport("wf", "r1", "s", Status.FAILED, error="x")))
    12
    """
    state = r.state
    return (r.workflow_id, r.instance_id, r.step_name, state._value_ if state.__class__ is Status else state,
            r.result, r.attempt, r.error, r.traceback, r.action, r.started_at, r.finished_at, r.conditions)


def report_from(x: Any) -> StepReport:
    """The :class:`StepReport` of a :func:`report_wire` tuple (a ``StepReport`` is returned as it is).

    Examples
    --------
    >>> report_from(("wf", "r1", "s", "FAILED", None, 2, "ValueError: x", None, None, 1.0, 2.0, None)).state
    <Status.FAILED: 'FAILED'>
    """
    if x.__class__ is StepReport:
        return x  # type: ignore[no-any-return]
    state = x[3]
    return StepReport(x[0], x[1], x[2], _STATES.get(state) or Status(state), *x[4:])


def assignment_wire(a: StepAssignment) -> tuple[Any, ...]:
    """``a``'s fields in declaration order (see the module docstring).

    Examples
    --------
    >>> a = StepAssignment("wf", "r1", "s", {"workflow_inputs": {}, "results": {}, "winners": {}}, 0.0, 60.0)
    >>> assignments_from([assignment_wire(a)]) == [a]
    True
    """
    return (a.workflow_id, a.instance_id, a.step_name, a.payload, a.assigned_at, a.expires_at, a.attempt,
            a.version, a.timeout)


def assignments_from(batch: list[Any]) -> list[StepAssignment]:
    """The :class:`StepAssignment` s of a list of :func:`assignment_wire` tuples (or of assignments).

    Examples
    --------
    >>> assignments_from([])
    []
    """
    return [x if x.__class__ is StepAssignment else StepAssignment(*x) for x in batch]
