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

A :class:`~fuseline_nb.workflow.value.Value` inside them (a report's
result, an assignment's inputs and its sources' results) crosses as the
tuple of its fields too (:func:`value_wire`), rebuilt on the other side: a
``Value`` pickled as itself costs a ``__reduce__`` call and a class lookup
when pickled and the class lookup and ``__init__`` when unpickled — about
as much as the rest of the message (measured in one process: an assignment
with one result 5.6 → 1.6 µs to pickle, 6.1 → 2.5 to unpickle; a report
4.5 → 1.8 and 4.3 → 1.5, under load). The bytes, fingerprint, previews and
JSON are the same fields ``Value`` pickles (its ``origin`` stays in its
process, as always); an assignment's other payload entries (``winners``,
or anything else a caller put there) and a non-``Value`` entry among its
values travel as they are.

Examples
--------
>>> from fuseline_nb.broker.base import StepReport
>>> from fuseline_nb import Status
>>> r = StepReport("wf", "r1", "s", Status.SUCCEEDED, None, 1, started_at=1.0, finished_at=2.0)
>>> report_wire(r)[:4]
('wf', 'r1', 's', 'SUCCEEDED')
>>> report_from(report_wire(r)) == r, report_from(r) is r
(True, True)
>>> from fuseline_nb.workflow.value import Value
>>> done = StepReport("wf", "r1", "s", Status.SUCCEEDED, Value.of({"n": 1}), 1)
>>> wire = report_wire(done)
>>> wire[4][1] == done.result.fingerprint, report_from(wire).result == done.result
(True, True)
>>> report_from(wire).result.load()
{'n': 1}
"""

from __future__ import annotations

from typing import Any

from ..broker.base import StepAssignment, StepReport
from ..workflow.status import Status
from ..workflow.value import Value

_STATES: dict[str, Status] = {s.value: s for s in Status}
_EMPTY: dict[str, Any] = {}  # an empty part of a payload's wire form (read only)


def value_wire(v: Value) -> tuple[Any, ...]:
    """The fields a :class:`Value` pickles, as a tuple: its pipe form (``Value(*fields)`` makes it again).

    Examples
    --------
    >>> v = Value.of([1, 2])
    >>> Value(*value_wire(v)) == v, Value(*value_wire(v)).load()
    (True, [1, 2])
    """
    return (v.data, v.fingerprint, v.preview, v.type_name, v.rich, v.json)


def report_wire(r: StepReport) -> tuple[Any, ...]:
    """``r``'s fields in declaration order, its state as its text (see the module docstring).

    Examples
    --------
    >>> from fuseline_nb.broker.base import StepReport
    >>> len(report_wire(StepReport("wf", "r1", "s", Status.FAILED, error="x")))
    12
    """
    state, v = r.state, r.result
    if v is not None:  # a value's fields (an object is made a value here, where it was born)
        if v.__class__ is not Value:
            v = Value.of(v)
        v = (v.data, v.fingerprint, v.preview, v.type_name, v.rich, v.json)  # value_wire(v), inline
    return (r.workflow_id, r.instance_id, r.step_name, state._value_ if state.__class__ is Status else state,
            v, r.attempt, r.error, r.traceback, r.action, r.started_at, r.finished_at, r.conditions)


def report_from(x: Any) -> StepReport:
    """The :class:`StepReport` of a :func:`report_wire` tuple (a ``StepReport`` is returned as it is).

    Examples
    --------
    >>> report_from(("wf", "r1", "s", "FAILED", None, 2, "ValueError: x", None, None, 1.0, 2.0, None)).state
    <Status.FAILED: 'FAILED'>
    """
    if x.__class__ is StepReport:
        return x  # type: ignore[no-any-return]
    state, v = x[3], x[4]
    if v.__class__ is tuple:  # a value's fields (report_wire sends no other tuple there)
        v = Value(*v)
    return StepReport(x[0], x[1], x[2], _STATES.get(state) or Status(state), v, *x[5:])


def assignment_wire(a: StepAssignment) -> tuple[Any, ...]:
    """``a``'s fields in declaration order (see the module docstring).

    Examples
    --------
    >>> a = StepAssignment("wf", "r1", "s", {"workflow_inputs": {}, "results": {}, "winners": {}}, 0.0, 60.0)
    >>> assignments_from([assignment_wire(a)]) == [a]
    True
    >>> b = StepAssignment("wf", "r1", "t", {"workflow_inputs": {"x": Value.of(2)}, "results": {"s": Value.of([1])},
    ...                                     "winners": {"g": "s"}}, 0.0, 60.0)
    >>> back = assignments_from([assignment_wire(b)])[0]
    >>> back == b, back.inputs, back.results, back.winners
    (True, {'x': 2}, {'s': [1]}, {'g': 's'})
    >>> c = StepAssignment("wf", "r1", "u", {"workflow_inputs": {}, "results": {"n": None, "cached": [3]},
    ...                                     "winners": {}}, 0.0, 60.0)
    >>> assignments_from([assignment_wire(c)])[0].payload["results"]  # nothing, and an object from the cache
    {'n': None, 'cached': [3]}
    """
    p = a.payload
    if p.__class__ is dict and len(p) == 3 and "workflow_inputs" in p and "results" in p and "winners" in p:
        inputs, results = p["workflow_inputs"], p["results"]
        ins, ins_other = _values_wire(inputs) if inputs else (_EMPTY, None)
        res, res_other = _values_wire(results) if results else (_EMPTY, None)
        payload: Any = (ins, ins_other, res, res_other, p["winners"])  # what a broker hands out
    else:
        payload = p  # another shape: as it is (its values pickle as themselves)
    return (a.workflow_id, a.instance_id, a.step_name, payload, a.assigned_at, a.expires_at, a.attempt,
            a.version, a.timeout)


def _values_wire(values: dict[str, Any]) -> tuple[dict[str, tuple[Any, ...] | None], dict[str, Any] | None]:
    """``values``' Values as their fields' tuples (``None`` as itself), and the other entries (``None``: none)."""
    out: dict[str, tuple[Any, ...] | None] = {}
    other: dict[str, Any] | None = None
    for k, v in values.items():
        if v.__class__ is Value:
            out[k] = (v.data, v.fingerprint, v.preview, v.type_name, v.rich, v.json)
        elif v is None:  # a step that returned nothing (made no value)
            out[k] = None
        else:  # a result served from the cache may be the object
            if other is None:
                other = {}
            other[k] = v
    return out, other


def _values_from(out: dict[str, Any], other: dict[str, Any] | None) -> dict[str, Any]:
    """``out`` (the message's own dict, fresh from the pipe) with its values' fields made :class:`Value` s again,
    in place, and ``other``'s entries added: no second dict per step."""
    for k, v in out.items():
        if v is not None:
            out[k] = Value(*v)
    if other:
        out.update(other)
    return out


def assignments_from(batch: list[Any]) -> list[StepAssignment]:
    """The :class:`StepAssignment` s of a list of :func:`assignment_wire` tuples (or of assignments).

    Examples
    --------
    >>> assignments_from([])
    []
    """
    return [assignment_from(x) for x in batch]


def assignment_from(x: Any) -> StepAssignment:
    """The :class:`StepAssignment` of one :func:`assignment_wire` tuple (an assignment is returned as it is).

    Examples
    --------
    >>> a = StepAssignment("wf", "r1", "s", {"workflow_inputs": {}, "results": {"p": None}, "winners": {}}, 0.0, 1.0)
    >>> assignment_from(assignment_wire(a)) == a, assignment_from(a) is a
    (True, True)
    """
    if x.__class__ is StepAssignment:
        return x  # type: ignore[no-any-return]
    p = x[3]
    if p.__class__ is tuple:  # assignment_wire's form of a broker's payload
        ins, ins_other, res, res_other, winners = p
        p = {"workflow_inputs": _values_from(ins, ins_other) if ins or ins_other else {},
             "results": _values_from(res, res_other) if res or res_other else {}, "winners": winners}
    if len(x) == 9:  # (all of assignment_wire's fields: no slice, no star-call)
        return StepAssignment(x[0], x[1], x[2], p, x[4], x[5], x[6], x[7], x[8])
    return StepAssignment(x[0], x[1], x[2], p, *x[4:])
