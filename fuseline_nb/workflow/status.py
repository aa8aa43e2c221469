"""Step and run states, and the reasons a step can be skipped.

Values equal the member names, as in Fuseline, so ``Status("FAILED")`` works
and SQL reads ``WHERE state = 'FAILED'``.

Examples
--------
>>> from fuseline_nb import Status
>>> Status.SUCCEEDED.is_final
True
>>> Status("RUNNING")
<Status.RUNNING: 'RUNNING'>
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """The lifecycle of a step (and of a run).

    Examples
    --------
    >>> [s.value for s in Status]
    ['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'SKIPPED']
    >>> Status.PENDING.is_final
    False
    """

    PENDING = "PENDING"  # known, not yet queued or running
    RUNNING = "RUNNING"  # queued for or being run by an engine/worker
    SUCCEEDED = "SUCCEEDED"  # ran and returned a value (its action picks edges)
    FAILED = "FAILED"  # raised, timed out after its retries, or returned an unknown action
    CANCELLED = "CANCELLED"  # could only be reached through a failure, or the user cancelled the run
    SKIPPED = "SKIPPED"  # not reached by routing, or its condition said no

    @property
    def is_final(self) -> bool:
        """Whether a step in this state will never change again."""
        return self in _FINAL

    def __str__(self) -> str:
        return self.value


_FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED})

#: ``skip_reason`` of a step whose condition returned false (its edges stay live).
SKIP_CONDITION = "condition"
#: ``skip_reason`` of a step no active edge reached (its edges go inactive).
SKIP_NOT_REACHED = "not_reached"


__all__ = [
    "Status",
]
