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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ..limits import safe_str, safe_text
from ..workflow.binding import SKIP
from ..workflow.policies import FailureAction, StepPolicy
from ..workflow.status import Status

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


def _invoke(step: Any, binding: Any, kwargs: dict[str, Any], shared: dict[str, Any]) -> Any:
    return step._invoke(binding, kwargs, shared)


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
    passthrough: tuple[type[BaseException], ...] = (KeyboardInterrupt,),
) -> StepOutcome:
    """Run step ``name`` of ``wf`` once with its step policies; never raises.

    ``results`` maps finished dependency names to their results and
    ``winners`` OR-group ids to the member whose result the group passes on.

    Whatever the step raises is its failure, ``BaseException`` too
    (``SystemExit``, a custom one): one attempt, retried only by its policies.
    Only a :class:`StepInterrupt` and the ``passthrough`` types are raised
    through: ``KeyboardInterrupt`` by default, so Ctrl-C stops an in-process
    run; a worker process passes ``()`` (there it is the step's own doing).
    """
    started = time.time()
    step = wf.steps[name]
    binding = wf.bindings[name]
    checks: list[dict[str, Any]] | None = [] if binding.conditional else None
    try:
        bound = binding.kwargs(inputs, results, winners, checks)
        if bound is SKIP:
            return StepOutcome(Status.SKIPPED, started_at=started, finished_at=time.time(),
                               conditions=checks)
        kwargs = cast(dict[str, Any], bound)
        shared = dict(inputs)
        policies = [p for p in step.policies if isinstance(p, StepPolicy)]
        call: Callable[[], Any] = lambda: _invoke(step, binding, kwargs, shared)  # noqa: E731
        for p in reversed(policies):
            call = (lambda c, pol: lambda: pol.execute(step, c))(call, p)
        for p in policies:
            p.on_start(step)
        result = call()
        for p in policies:
            p.on_success(step, result)
    except StepInterrupt:
        raise
    except BaseException as exc:  # the outcome carries it; a worker never dies of it
        if passthrough and isinstance(exc, passthrough):
            raise
        out = StepOutcome.from_exception(exc, started)
        out.conditions = checks
        return out
    return StepOutcome(Status.SUCCEEDED, result, started_at=started, finished_at=time.time(),
                       conditions=checks)


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
    policies = [p for p in step.policies if isinstance(p, StepPolicy)]
    n = 0
    while True:
        out = attempt(wf, name, inputs, results, winners)
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
