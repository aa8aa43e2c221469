"""Run one step once and turn what happened into a value.

Both in-process runs and workers call :func:`attempt`; a step that raises
never raises through here — the error comes back as a :class:`StepOutcome`
(type, message, formatted traceback), ready to cross a process boundary.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> def boom():
...     raise ValueError("bad row")
>>> wf = Workflow(outputs=[FunctionStep(boom)])
>>> out = attempt(wf, "boom", {}, {}, {})
>>> out.state, out.error
(<Status.FAILED: 'FAILED'>, 'ValueError: bad row')
"""

from __future__ import annotations

import os
import time
import traceback as tb
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..limits import safe_str, safe_text
from ..workflow.binding import SKIP
from ..workflow.policies import FailureAction, StepPolicy
from ..workflow.status import Status
from ..workflow.steps import step_policies

if TYPE_CHECKING:
    from ..workflow.graph import Workflow


@dataclass(slots=True)
class StepOutcome:
    """What one attempt of a step produced.

    ``state`` is SUCCEEDED, FAILED or SKIPPED (a condition said no).
    """

    state: Status
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    #: The exception itself, in the process that ran the step only.
    exception: BaseException | None = None
    #: Conditions evaluated before running: ``{"dependency", "value", "passed"}``.
    conditions: list[dict[str, Any]] | None = None
    #: The action a str result names, as a plain str, when the result travels as a Value made
    #: elsewhere (a Dask task's): a str subclass (an enum of the notebook) is not "str" there.
    action: str | None = None

    @property
    def error(self) -> str | None:
        """``"Type: message"`` for a failure, else ``None``."""
        if self.error_type is None:
            return None
        return f"{self.error_type}: {self.error_message}"

    @classmethod
    def from_exception(cls, exc: BaseException, started_at: float) -> StepOutcome:
        """A FAILED outcome describing ``exc``."""
        try:
            trace = "".join(tb.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
        except Exception as inner:  # a traceback that cannot be formatted still names the error
            trace = f"{type(exc).__name__} (its traceback could not be formatted: {type(inner).__name__})"
        return cls(
            Status.FAILED,
            None,
            type(exc).__name__,
            safe_str(exc),  # an exception whose __str__ raises is still named, never re-raised
            safe_text(trace),
            started_at,
            time.time(),
            exc,
        )


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_frames(trace: TracebackType | None) -> TracebackType | None:
    """Drop fuseline_nb's own leading frames so a traceback starts at the user's code.

    A traceback with no user frame at all (an error raised by fuseline_nb
    itself, such as a missing input) is kept whole.
    """
    t = trace
    while t is not None and t.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        t = t.tb_next
    return t if t is not None else trace


class Attempt:
    """The core of one attempt, shared by the sync and async shells.

    :meth:`begin` binds the parameters and runs the ``on_start`` hooks (it
    returns the outcome when the attempt is over already: skipped by a
    condition, or failed binding); the shell then calls the step through
    :meth:`wrapped` and ends with :meth:`succeeded` or :meth:`failed`.
    Nothing here raises.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> wf = Workflow(outputs=[FunctionStep(lambda x: x + 1, name="inc")])
    >>> a = Attempt(wf, "inc", {"x": 1}, {}, {})
    >>> a.begin() is None
    True
    >>> a.succeeded(a.wrapped(lambda: a.step._invoke(a.binding, a.kwargs, a.shared), "execute")()).result
    2
    """

    __slots__ = ("_bind", "binding", "checks", "kwargs", "policies", "shared", "started", "step")

    def __init__(self, wf: Workflow, name: str, inputs: Mapping[str, Any], results: Mapping[str, Any],
                 winners: Mapping[str, str], retry: int = 0, started: float | None = None) -> None:
        self.started = time.time() if started is None else started
        step = self.step = wf.steps[name]
        step.cur_retry = retry  # Fuseline's counter, read by run_step: 0 on the first attempt
        binding = self.binding = wf.bindings[name]
        self.checks: list[dict[str, Any]] | None = [] if binding.conditional else None
        policies = step_policies(step)  # most steps have none: no list made then
        self.policies: Sequence[StepPolicy] = [p for p in policies if isinstance(p, StepPolicy)] if policies else ()
        self.kwargs: dict[str, Any] = {}
        self.shared: dict[str, Any] = {}
        self._bind = (inputs, results, winners, wf.steps)

    def begin(self) -> StepOutcome | None:
        """Bind and run ``on_start``; the final outcome when there is nothing to call."""
        inputs, results, winners, steps = self._bind
        try:
            bound = self.binding.kwargs(inputs, results, winners, self.checks, steps)
            if bound is SKIP:
                return StepOutcome(Status.SKIPPED, started_at=self.started, finished_at=time.time(),
                                   conditions=self.checks)
            self.kwargs = bound  # type: ignore[assignment]  # not SKIP: a dict
            self.shared = dict(inputs)
            for p in self.policies:
                p.on_start(self.step)
        except Exception as exc:
            return self.failed(exc)
        return None

    def wrapped(self, call: Callable[[], Any], method: str) -> Callable[[], Any]:
        """``call`` inside each policy's ``execute`` (or ``execute_async``), outermost first."""
        for p in reversed(self.policies):
            call = (lambda c, run: lambda: run(self.step, c))(call, getattr(p, method))
        return call

    def succeeded(self, result: Any) -> StepOutcome:
        """Run ``on_success`` hooks; SUCCEEDED (or FAILED when a hook raises)."""
        try:
            for p in self.policies:
                p.on_success(self.step, result)
        except Exception as exc:
            return self.failed(exc)
        return StepOutcome(Status.SUCCEEDED, result, None, None, None, self.started, time.time(), None,
                           self.checks)

    def failed(self, exc: BaseException) -> StepOutcome:
        """The FAILED outcome of ``exc`` (the step's, a hook's or the binding's)."""
        return _failed(exc, self.started, self.checks)


class StepInterrupt(BaseException):
    """Base of the exceptions an engine raises into a running step to stop it; :func:`attempt` lets
    them through (everything else a step raises is the step's failure).

    Examples
    --------
    >>> issubclass(StepInterrupt, Exception)
    False
    """


def attempt(
    wf: Workflow,
    name: str,
    inputs: Mapping[str, Any],
    results: Mapping[str, Any],
    winners: Mapping[str, str],
    retry: int = 0,
    passthrough: tuple[type[BaseException], ...] = (KeyboardInterrupt,),
) -> StepOutcome:
    """Run step ``name`` of ``wf`` once with its step policies; never raises.

    ``results`` maps finished dependency names to their results and
    ``winners`` OR-group ids to the member whose result the group passes on.
    ``retry`` counts the attempt from 0; the step reads it as ``self.cur_retry``.
    The sync shell of :class:`Attempt`.

    Whatever the step raises is its failure, ``BaseException`` too
    (``SystemExit``, a custom one): one attempt, retried only by its policies.
    Only a :class:`StepInterrupt` and the ``passthrough`` types are raised
    through: ``KeyboardInterrupt`` by default, so Ctrl-C stops an in-process
    run; a worker process passes ``()`` (there it is the step's own doing).
    """
    started = time.time()
    step = wf.steps[name]
    step.cur_retry = retry  # Fuseline's counter, read by run_step: 0 on the first attempt
    binding = wf.bindings[name]
    policies = step_policies(step)
    if policies and any(isinstance(p, StepPolicy) for p in policies):
        return _with_policies(Attempt(wf, name, inputs, results, winners, retry, started), passthrough)
    # A step without policies (most): Attempt's attempt with its calls written out here. Both give the
    # same outcome for the same step (tests/test_attempt_paths.py runs every kind of step both ways).
    checks: list[dict[str, Any]] | None = [] if binding.conditional else None
    try:
        bound = binding.kwargs(inputs, results, winners, checks, wf.steps)
        if bound is SKIP:
            return StepOutcome(Status.SKIPPED, None, None, None, None, started, time.time(), None, checks)
        shared = dict(inputs)
    except Exception as exc:
        return _failed(exc, started, checks)
    try:
        result = step._invoke(binding, bound, shared)  # type: ignore[arg-type]  # not SKIP: a dict
    except StepInterrupt:
        raise
    except BaseException as exc:  # the outcome carries it; a worker never dies of it
        if passthrough and isinstance(exc, passthrough):
            raise
        return _failed(exc, started, checks)
    return StepOutcome(Status.SUCCEEDED, result, None, None, None, started, time.time(), None, checks)


def _with_policies(a: Attempt, passthrough: tuple[type[BaseException], ...]) -> StepOutcome:
    """:func:`attempt` of a step with policies (each wraps the call; their hooks run around it)."""
    done = a.begin()
    if done is not None:
        return done
    try:
        if a.policies:
            result = a.wrapped(lambda: a.step._invoke(a.binding, a.kwargs, a.shared), "execute")()
        else:  # nothing to wrap it in
            result = a.step._invoke(a.binding, a.kwargs, a.shared)
    except StepInterrupt:
        raise
    except BaseException as exc:  # the outcome carries it; a worker never dies of it
        if passthrough and isinstance(exc, passthrough):
            raise
        return a.failed(exc)
    return a.succeeded(result)


def _failed(exc: BaseException, started: float, checks: list[dict[str, Any]] | None) -> StepOutcome:
    out = StepOutcome.from_exception(exc, started)
    out.conditions = checks
    return out


def attempt_with_retries(
    wf: Workflow,
    name: str,
    inputs: Mapping[str, Any],
    results: Mapping[str, Any],
    winners: Mapping[str, str],
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[StepOutcome, int]:
    """Run ``name`` until it succeeds or its policies stop retrying.

    Returns the last outcome and the number of attempts made.
    """
    step = wf.steps[name]
    policies = [p for p in step_policies(step) if isinstance(p, StepPolicy)]
    n = 0
    while True:
        out = attempt(wf, name, inputs, results, winners, n)
        n += 1
        delay = retry_delay(step, policies, out, n)
        if delay is None:
            return out, n
        if delay:
            sleep(delay)


def retry_delay(step: Any, policies: list[StepPolicy], out: StepOutcome, attempts: int) -> float | None:
    """Seconds to wait before retrying after ``attempts`` attempts ending in ``out``; ``None``: stop."""
    if out.state is not Status.FAILED:
        return None
    exc = out.exception or _Reported(out)
    decision = next(
        (d for p in policies if (d := p.on_failure(step, exc, attempts - 1)) is not None), None
    )
    if decision is None or decision.action is not FailureAction.RETRY:
        return None
    return float(decision.delay or 0)


class _Reported(Exception):
    """The failure of an attempt as seen by ``on_failure`` hooks."""

    def __init__(self, outcome: StepOutcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


__all__ = [
    "Attempt",
    "StepInterrupt",
    "StepOutcome",
    "attempt",
    "attempt_with_retries",
    "retry_delay",
]
