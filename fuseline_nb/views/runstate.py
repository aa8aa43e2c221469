"""What a view knows about a run, rebuilt from lifecycle events.

:class:`RunState` starts from a ``RunInfo`` snapshot (or from nothing) and
applies :class:`~fuseline_nb.workflow.events.Event` records in ``seq``
order. Each event sets fields to absolute values, so applying, in order,
events that the snapshot already reflects ends in the same state: a live
view can subscribe first, take the snapshot, then apply everything it
buffered. The replay view applies a stored run's events one by one.

Examples
--------
>>> from fuseline_nb.workflow.events import Event
>>> from fuseline_nb import Status
>>> rs = RunState(["load", "save"])
>>> rs.apply(Event("step_queued", "r", 1, 10.0, step="load", state=Status.PENDING))
>>> rs.apply(Event("step_started", "r", 2, 10.5, step="load", state=Status.RUNNING, worker="w1", attempt=1))
>>> rs.states()
{'load': 'RUNNING', 'save': 'PENDING'}
>>> rs.apply(Event("step_finished", "r", 3, 11.0, step="load", state=Status.SUCCEEDED, attempt=1))
>>> rs.steps["load"].duration_s, rs.finished_count
(0.5, 1)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..workflow.events import Event
from .palette import FINAL_STATES, count_states, view_state


@dataclass(slots=True)
class StepView:
    """The facts a view shows for one step.

    Examples
    --------
    >>> StepView().state
    'PENDING'
    """

    state: str = "PENDING"
    attempts: int = 0
    worker: str | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    action: str | None = None
    skip_reason: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class RunState:
    """Step name → :class:`StepView`, plus the run's own state and times.

    Parameters
    ----------
    names:
        Every step of the run's workflow, in the order views list them.

    Examples
    --------
    >>> rs = RunState(["a", "b"])
    >>> rs.done, rs.counts()["PENDING"]
    (False, 2)
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.steps: dict[str, StepView] = {n: StepView() for n in names}
        self.run_state = "RUNNING"
        self.created_at: float | None = None
        self.finished_at: float | None = None
        self.seq = 0
        self.last: Event | None = None

    @classmethod
    def from_info(cls, info: Any, names: Iterable[str]) -> RunState:
        """Start from a :class:`~fuseline_nb.RunInfo` snapshot.

        Examples
        --------
        >>> from fuseline_nb import RunInfo, StepInfo, Status
        >>> info = RunInfo("r", "w", Status.FAILED, {"a": StepInfo(Status.FAILED, attempts=2)})
        >>> rs = RunState.from_info(info, ["a"])
        >>> rs.run_state, rs.steps["a"].attempts, rs.done
        ('FAILED', 2, True)
        """
        rs = cls(names)
        rs.run_state = str(info.state.value)
        rs.created_at = info.created_at
        rs.finished_at = info.finished_at
        for name, s in info.steps.items():
            rs.steps[name] = StepView(
                view_state(s), s.attempts, s.worker, s.queued_at, s.started_at, s.finished_at,
                s.error, s.action, s.skip_reason,
            )
        return rs

    @property
    def done(self) -> bool:
        """Whether the run has ended."""
        return self.run_state in FINAL_STATES

    @property
    def finished_count(self) -> int:
        """How many steps reached a final state."""
        return sum(1 for s in self.steps.values() if s.state in FINAL_STATES)

    def states(self) -> dict[str, str]:
        """Step name → view state."""
        return {n: s.state for n, s in self.steps.items()}

    def counts(self) -> dict[str, int]:
        """View state → number of steps (every state present)."""
        return count_states(s.state for s in self.steps.values())

    def apply(self, event: Event) -> None:
        """Apply one event (events must come in ``seq`` order)."""
        self.seq = max(self.seq, event.seq)
        self.last = event
        kind = event.kind
        if kind == "run_dispatched":
            self.created_at = event.at
            return
        if kind == "run_finished":
            self.run_state = str(event.state.value) if event.state is not None else "SUCCEEDED"
            self.finished_at = event.at
            return
        if event.step is None:
            return
        step = self.steps.get(event.step)
        if step is None:
            step = self.steps[event.step] = StepView()
        detail = event.detail or {}
        if event.attempt:
            step.attempts = max(step.attempts, event.attempt)
        if event.worker is not None:
            step.worker = event.worker
        if kind == "step_queued":
            step.state, step.queued_at, step.finished_at = "QUEUED", event.at, None
            if detail.get("error"):
                step.error = detail["error"]
        elif kind == "step_started":
            step.state, step.started_at, step.finished_at = "RUNNING", event.at, None
        elif kind == "step_finished":
            step.state = view_state(event.state) if event.state is not None else "SUCCEEDED"
            step.finished_at = event.at
            step.action = detail.get("action", step.action)
            step.error = detail.get("error", step.error)
            step.skip_reason = detail.get("skip_reason", step.skip_reason)

    def apply_all(self, events: Iterable[Event]) -> None:
        """Apply events in ``seq`` order."""
        for e in sorted(events, key=lambda e: e.seq):
            self.apply(e)


__all__ = [
    "RunState",
    "StepView",
]
