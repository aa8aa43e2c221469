"""What a run looks like from outside: :class:`RunInfo` and :class:`StepInfo`.

The same records describe an in-process run (``wf.last_run``) and a run held
by a broker (``broker.get_run(run_id)``).

Examples
--------
>>> from fuseline_nb import Status
>>> info = RunInfo("r1", "wf", Status.FAILED,
...                {"load": StepInfo(Status.FAILED, attempts=1, error="ValueError: bad")})
>>> info.failures()
{'load': 'ValueError: bad'}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import StepFailedError
from .status import Status
from .value import MaybeValue, MaybeValues, Value, opened_all


class _Opened:
    """A field holding a :class:`~fuseline_nb.workflow.value.Value` that reads as the object.

    The value stays closed (its bytes) until someone reads the field; then it
    is unpickled once (:meth:`Value.load` keeps the object). Any other object
    is stored and read as it is. The held value lives under the field's own
    name in the instance ``__dict__`` (where pydantic, building the record
    from JSON, puts it too).
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None  # the dataclass default
        v = obj.__dict__.get(self._name)
        return v.load() if v.__class__ is Value else v

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._name] = value


class _OpenedMap(_Opened):
    """A field holding a dict whose :class:`Value` entries read as their objects (``None`` stays)."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None
        d = obj.__dict__.get(self._name)
        return None if d is None else opened_all(d)


def _held_schema(source: Any, handler: Any) -> Any:
    """The pydantic schema of a record with :class:`_Opened` fields: it is written as held (values closed).

    pydantic reads fields with ``getattr``, which would open (unpickle) the
    values; the record is written from its ``__dict__`` instead, so the
    HTTP service never unpickles what it sends.
    """
    from pydantic_core import core_schema as cs

    schema = handler(source)
    record = handler.resolve_ref_schema(schema)
    fields = record["schema"]["fields"]
    held = cs.typed_dict_schema({f["name"]: cs.typed_dict_field(f["schema"]) for f in fields})
    record["serialization"] = cs.plain_serializer_function_ser_schema(vars, return_schema=held)
    return schema


@dataclass
class StepInfo:
    """The state and facts of one step of one run.

    Examples
    --------
    >>> StepInfo(Status.SUCCEEDED, attempts=1, result=42).duration_s is None
    True

    A broker keeps results as :class:`~fuseline_nb.workflow.value.Value` s:
    ``result`` opens one when read, ``value`` gives it closed.

    >>> info = StepInfo(Status.SUCCEEDED, result=Value.of([1, 2]))
    >>> info.value.preview, info.result
    ('[1, 2]', [1, 2])
    """

    state: Status = Status.PENDING
    attempts: int = 0
    worker: str | None = None
    result: MaybeValue = _Opened()
    error: str | None = None  # "Type: message"
    traceback: str | None = None
    action: str | None = None  # the edge label a SUCCEEDED step chose
    skip_reason: str | None = None  # "condition" or "not_reached"
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cached: bool = False  # SUCCEEDED from the result cache, without running
    cached_from: str | None = None  # the run whose result a cached step reused
    recovered: bool = False  # FAILED, but an OR-group fallback got its consumers their value

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """Written as held (values closed) where pydantic writes it (the HTTP edge)."""
        return _held_schema(source, handler)

    @property
    def value(self) -> Any:
        """The result as held: a closed :class:`~fuseline_nb.workflow.value.Value` where a broker keeps it."""
        return self.__dict__.get("result")

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass
class RunInfo:
    """One run: its id, workflow, state (RUNNING until it ends) and steps by name.

    Examples
    --------
    >>> RunInfo("r1", "wf", Status.RUNNING, {}).done
    False
    """

    run_id: str
    workflow_id: str
    state: Status
    steps: dict[str, StepInfo] = field(default_factory=dict)
    version: str = "1"
    inputs: MaybeValues = _OpenedMap()  # type: ignore[assignment]
    created_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """Written as held (values closed) where pydantic writes it (the HTTP edge)."""
        return _held_schema(source, handler)

    @property
    def input_values(self) -> dict[str, Any] | None:
        """The inputs as held: closed :class:`~fuseline_nb.workflow.value.Value` s where a broker keeps them.

        Examples
        --------
        >>> RunInfo("r1", "wf", Status.RUNNING, inputs={"x": Value.of(2)}).input_values["x"].preview
        '2'
        """
        return self.__dict__.get("inputs")

    @property
    def done(self) -> bool:
        """Whether the run has ended."""
        return self.state.is_final

    def failures(self) -> dict[str, str]:
        """Error text of each FAILED step whose failure was not recovered, by name."""
        return {n: s.error or "failed" for n, s in self.steps.items()
                if s.state is Status.FAILED and not s.recovered}

    def recovered_failures(self) -> dict[str, str]:
        """Error text of each FAILED step an OR-group fallback recovered, by name."""
        return {n: s.error or "failed" for n, s in self.steps.items() if s.state is Status.FAILED and s.recovered}

    def counts(self) -> dict[Status, int]:
        """How many steps are in each state."""
        counted = getattr(self.steps, "counts", None)  # steps read from compact records count themselves
        if counted is not None:
            return counted()  # type: ignore[no-any-return]
        out = dict.fromkeys(Status, 0)
        for s in self.steps.values():
            out[s.state] += 1
        return out

    def raise_for_failure(self) -> None:
        """Raise :class:`~fuseline_nb.errors.StepFailedError` when the run FAILED."""
        if self.state is Status.FAILED:
            tracebacks = {n: i.traceback for n, i in self.steps.items() if i.traceback}
            raise StepFailedError(self.run_id, self.failures(), tracebacks)


@dataclass
class RunResult(RunInfo):
    """A finished in-process run: :class:`RunInfo` plus the outputs ``wf.run`` returned.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> wf = Workflow(outputs=[FunctionStep(lambda: 3, name="three")])
    >>> wf.run()
    3
    >>> wf.last_run.outputs, wf.last_run.steps["three"].attempts
    (3, 1)
    """

    outputs: Any = None


__all__ = [
    "RunInfo",
    "RunResult",
    "StepInfo",
]
