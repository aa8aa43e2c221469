"""A run's end by the rules: whether a failure was recovered, and the run's final state.

:class:`~fuseline_nb.workflow.readiness.Readiness` asks these once a run's
steps all have outcomes, and :mod:`fuseline_nb.workflow.rules` when it
evaluates a run from scratch (:mod:`fuseline_nb.workflow.readiness`
re-exports them). They read outcomes only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .plan import Outcome, Plan
from .status import Status


def is_recovered(plan: Plan, outcomes: Mapping[str, Outcome], winners: Mapping[str, Mapping[str, str]],
                 step: str, made_ready: Any = None) -> bool:
    """Whether FAILED ``step`` is recovered: every slot it feeds is an OR group that got another member's value.

    ``winners`` maps each step to its OR groups' winners; ``made_ready(v)``
    says whether ``v`` was made ready (default: every step with a winner was).
    A failing step that feeds nothing is not recovered.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> p = Plan.from_schema(WorkflowSchema("w", steps=tuple(StepSchema(n) for n in "abc"),
    ...     edges=(EdgeSchema("a", "c", group="g"), EdgeSchema("b", "c", group="g"))))
    >>> outs = {"a": Outcome.failed(), "b": Outcome.succeeded()}
    >>> is_recovered(p, outs, {"c": {"g": "b"}}, "a"), is_recovered(p, outs, {}, "a")
    (True, False)
    """
    out = outcomes.get(step)
    succ = plan.successors[step]
    if out is None or out.state is not Status.FAILED or not succ:
        return False
    lab = plan.labels.get(step)
    for i, v in enumerate(succ):
        group = None if lab is None else lab[i][1]
        if group is None or group not in winners.get(v, {}):
            return False
        if made_ready is not None and not made_ready(v):
            return False
    return True


def final_run_state(outcomes: Mapping[str, Outcome], recovered: Iterable[str] = (),
                    cancelled: bool = False) -> Status:
    """The state of a finished run from its steps' ``outcomes``.

    FAILED when some failure is not ``recovered`` (a step cancelled by a
    failure always has one upstream); otherwise CANCELLED when the user
    ``cancelled`` the run, else SUCCEEDED.

    Examples
    --------
    >>> outs = {"a": Outcome.failed(), "b": Outcome.succeeded()}
    >>> final_run_state(outs), final_run_state(outs, {"a"}), final_run_state(outs, {"a"}, True)
    (<Status.FAILED: 'FAILED'>, <Status.SUCCEEDED: 'SUCCEEDED'>, <Status.CANCELLED: 'CANCELLED'>)
    """
    ok = set(recovered)
    if any(o.state is Status.FAILED and n not in ok for n, o in outcomes.items()):
        return Status.FAILED
    return Status.CANCELLED if cancelled else Status.SUCCEEDED


__all__ = ["final_run_state", "is_recovered"]
