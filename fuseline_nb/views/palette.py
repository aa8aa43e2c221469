"""The states a view shows, their colours, and how a step's facts map to one.

A view distinguishes a step that waits in the queue (``QUEUED``) from one
that is not ready yet (``PENDING``); the model's :class:`Status` calls both
``PENDING`` or ``RUNNING``. Every colour is light, so black labels stay
readable on it and on a printed page.

Examples
--------
>>> from fuseline_nb import Status, StepInfo
>>> view_state(StepInfo(Status.PENDING, queued_at=1.0))
'QUEUED'
>>> FILL["FAILED"]
'#ffa8a8'
>>> VIEW_STATES
('PENDING', 'QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'SKIPPED')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..workflow.status import Status

#: The model's states (:class:`~fuseline_nb.Status`), with QUEUED between PENDING and RUNNING.
VIEW_STATES: Final = (Status.PENDING.value, "QUEUED",
                      *(s.value for s in Status if s is not Status.PENDING))

#: One letter per view state: what the live view sends for each node.
CODE: Final[Mapping[str, str]] = {
    "PENDING": "P", "QUEUED": "Q", "RUNNING": "R", "SUCCEEDED": "S", "FAILED": "F", "CANCELLED": "C",
    "SKIPPED": "K",
}

#: Node fill per view state.
FILL: Final[Mapping[str, str]] = {
    "PENDING": "#f8f9fa",  # white-grey: not ready yet
    "QUEUED": "#ffec99",  # yellow: ready, waiting for a worker
    "RUNNING": "#74c0fc",  # blue: a worker runs it
    "SUCCEEDED": "#8ce99a",  # green
    "FAILED": "#ffa8a8",  # red
    "CANCELLED": "#ffc078",  # orange: could only be reached through a failure
    "SKIPPED": "#dee2e6",  # grey: not reached, or its condition said no
}

#: Fill of a node drawn without any state.
NEUTRAL_FILL: Final = "#ffffff"

#: States in which a step will not change again.
FINAL_STATES: Final = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"})


def view_state(info: Any) -> str:
    """The view state of a step given a ``Status``, a state string or a ``StepInfo``.

    A ``StepInfo`` that is PENDING but was queued shows as ``QUEUED``.

    Examples
    --------
    >>> view_state("SKIPPED"), view_state(None)
    ('SKIPPED', 'PENDING')
    """
    if info is None:
        return "PENDING"
    state = getattr(info, "state", info)
    text = str(getattr(state, "value", state)).upper()
    if text not in FILL:
        raise ValueError(f"unknown state: {state!r} (must be one of {list(VIEW_STATES)})")
    if text == "PENDING" and getattr(info, "queued_at", None) is not None:
        return "QUEUED"
    return text


def normalize_states(states: Any) -> dict[str, str]:
    """Step name → view state, from a ``RunInfo``, a mapping or ``None``.

    Mapping values may be ``Status`` members, strings or ``StepInfo`` records.

    Examples
    --------
    >>> from fuseline_nb import Status
    >>> normalize_states({"a": Status.FAILED, "b": "running"})
    {'a': 'FAILED', 'b': 'RUNNING'}
    """
    if states is None:
        return {}
    steps = getattr(states, "steps", states)
    if not isinstance(steps, Mapping):
        raise TypeError(f"states must be a RunInfo or a mapping of step name to state, not {states!r}")
    return {str(name): view_state(value) for name, value in steps.items()}


def count_states(states: Iterable[str]) -> dict[str, int]:
    """How many steps are in each view state (every state present, in order).

    Examples
    --------
    >>> count_states(["FAILED", "SUCCEEDED", "FAILED"])["FAILED"]
    2
    """
    out = dict.fromkeys(VIEW_STATES, 0)
    for s in states:
        out[s] += 1
    return out


def aggregate_state(states: Iterable[str]) -> str:
    """One state that summarises several (for a collapsed group of nodes).

    Activity wins (RUNNING, then QUEUED), then work still to do (PENDING),
    then the worst outcome.

    Examples
    --------
    >>> aggregate_state(["SUCCEEDED", "RUNNING", "PENDING"])
    'RUNNING'
    >>> aggregate_state(["SUCCEEDED", "SKIPPED"])
    'SUCCEEDED'
    """
    present = set(states)
    for s in ("RUNNING", "QUEUED", "PENDING", "FAILED", "CANCELLED", "SUCCEEDED", "SKIPPED"):
        if s in present:
            return s
    return "PENDING"


__all__ = [
    "aggregate_state",
    "count_states",
    "normalize_states",
    "view_state",
]
