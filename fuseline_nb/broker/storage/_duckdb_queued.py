"""Which steps of a live run are on its queue, without a set of names: the DuckDB storage's queue members.

A storage's queue holds a step once (``enqueue`` of a queued step adds
nothing). A set of names costs ~40 bytes a step, and a fan-out's root queues
all its steps at once (a million: ~40 MB at the kernel's peak). A run created
with its plan's :class:`~fuseline_nb.workflow.plan.StepOrder` (what the broker
passes to ``create_run``) has each name's position already: :class:`Queued`
keeps each step's place in the queue's order instead (8 bytes a step), and a
set only for a name the plan does not have (none, from a broker). It answers
``in``, ``add``, ``discard`` and ``difference_update`` as the storage used the
set (each ``add`` an append, each ``discard`` a pop), and a fetch costs one
addition, not a set removal per step.

Examples
--------
>>> from fuseline_nb.workflow.plan import StepOrder
>>> q = members_for(StepOrder(["a", "b", "c"]))
>>> q.add("b"); q.add("zz"); "b" in q, "a" in q, "zz" in q, len(q)   # queue: b, zz
(True, False, True, 2)
>>> q.mark_new(["a", "b", "a"])          # not queued yet: the caller appends them (queue: b, zz, a)
['a']
>>> q.difference_update(["b", "zz"]); "b" in q, "zz" in q, "a" in q, len(q)   # two popped
(False, False, True, 1)
>>> type(members_for(("a", "b"))).__name__   # names without positions: a plain set
'set'
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from ...workflow.plan import StepOrder


class Queued:
    """A run's queued steps, told by each step's place in the queue's order (for the steps of its plan).

    The queue is first in, first out, and these methods follow its appends and
    pops exactly: :meth:`add` / :meth:`mark_new` for each step appended,
    :meth:`discard` / :meth:`difference_update` for each step popped. So a
    step of the plan is queued when it was appended after the last step
    popped: a fetch only counts what it took, however many steps that is.
    A name the plan lacks is kept in a set.
    """

    __slots__ = ("_added", "_at", "_other", "_positions", "_taken")

    def __init__(self, positions: dict[str, int]) -> None:
        self._positions = positions
        self._at = array("Q", bytes(8 * len(positions)))  # each step's last place in the queue (0: never)
        self._added = 0  # steps appended to the queue so far
        self._taken = 0  # steps popped from it so far
        self._other: set[str] = set()

    def __contains__(self, step: object) -> bool:
        i = self._positions.get(step)  # type: ignore[call-overload]
        return step in self._other if i is None else self._at[i] > self._taken

    def __len__(self) -> int:
        return self._added - self._taken

    def add(self, step: str) -> None:
        """``step`` was appended to the queue (it was not on it)."""
        self._added += 1
        i = self._positions.get(step)
        if i is None:
            self._other.add(step)
        else:
            self._at[i] = self._added

    def discard(self, step: str) -> None:
        """``step`` was popped from the front of the queue."""
        self._taken += 1
        if self._other:
            self._other.discard(step)

    def difference_update(self, steps: list[str]) -> None:
        """``steps`` were popped from the front of the queue, in order."""
        self._taken += len(steps)
        if self._other:
            self._other.difference_update(steps)

    def mark_new(self, steps: Iterable[str]) -> list[str]:
        """Those of ``steps`` not queued yet, in order (each once): the caller appends them."""
        positions, at, taken, k = self._positions, self._at, self._taken, self._added
        out: list[str] = []
        append, other = out.append, self._other
        for step in steps:
            i = positions.get(step)
            if i is None:
                if step in other:
                    continue
                other.add(step)
            elif at[i] > taken:
                continue
            else:
                at[i] = k + 1
            k += 1
            append(step)
        self._added = k
        return out


def members_for(names: Sequence[str]) -> Any:
    """The queue members of a new run of ``names``: :class:`Queued` when they come with their
    positions (a plan's :class:`StepOrder`), else a plain set."""
    return Queued(names.positions) if isinstance(names, StepOrder) else set()


__all__ = ["Queued", "members_for"]
