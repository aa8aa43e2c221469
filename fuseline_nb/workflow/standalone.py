"""``step.run(shared)``: one step on its own, with Fuseline's lifecycle.

``before_all`` → (``setup`` → ``run_step`` → ``teardown``, retried as the
step's policies say) → ``after_all``; the result is returned and a failure
raises. No workflow, no broker, no events: the way to try a step in a cell.

Examples
--------
>>> from fuseline_nb import Step
>>> class Greet(Step):
...     def run_step(self, who: str) -> str:
...         return f"hello {who}"
>>> run_alone(Greet(), {"who": "you"})
'hello you'
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, cast

from .binding import Binding
from .policies import FailureAction, StepPolicy
from .steps import Step, step_policies


def run_alone(step: Step, shared: Any = None) -> Any:
    """Run ``step`` once through its lifecycle and return its result.

    Parameters
    ----------
    step:
        The step. Its named ``run_step`` parameters are read from ``shared``
        (the untyped ``run_step(self, setup_res)`` gets what ``setup``
        returned).
    shared:
        The inputs (a mapping), passed to every hook as ``shared``.

    Raises
    ------
    TypeError
        The step has ``Depends(...)`` parameters: only a workflow can run
        what it depends on.
    MissingInputError
        A parameter without a default is not in ``shared``.
    """
    deps = [name for name, _ in step.dependencies()]
    if deps:
        raise TypeError(
            f"{step!r} takes the results of other steps ({', '.join(deps)} = Depends(...)): "
            "run it in a Workflow, which runs what it depends on first"
        )
    if step.edges:
        warnings.warn(f"{step!r}.run() runs this step alone: the steps after it do not run (use a Workflow)",
                      stacklevel=3)
    name = step.name or type(step).__name__
    binding = Binding.for_step(name, step, {}, {})
    inputs = shared if isinstance(shared, Mapping) else {}
    kwargs = cast(dict[str, Any], binding.kwargs(inputs, {}, {}))  # no dependency: no condition, no SKIP
    policies = [p for p in step_policies(step) if isinstance(p, StepPolicy)]
    step.before_all(shared)
    try:
        return _attempts(step, policies, lambda: step._invoke(binding, kwargs, shared))
    finally:
        step.after_all(shared)


def _attempts(step: Step, policies: list[StepPolicy], invoke: Callable[[], Any]) -> Any:
    retry = 0
    while True:
        step.cur_retry = retry
        call = invoke
        for p in reversed(policies):
            call = (lambda c, pol: lambda: pol.execute(step, c))(call, p)
        for p in policies:
            p.on_start(step)
        try:
            result = call()
        except Exception as exc:
            decision = next((d for p in policies if (d := p.on_failure(step, exc, retry)) is not None), None)
            if decision is None or decision.action is not FailureAction.RETRY:
                raise
            if decision.delay:
                time.sleep(decision.delay)
            retry += 1
            continue
        for p in policies:
            p.on_success(step, result)
        return result


__all__ = ["run_alone"]
