"""RunGroup: the runs of one sweep (``session.map``), waited on and shown together.

Examples
--------
>>> import fuseline_nb as fl
>>> def square(x: int) -> int:
...     return x * x
>>> wf = fl.Workflow(outputs=[fl.FunctionStep(square)], workflow_id="squares")
>>> with fl.Session(workers=0) as session:
...     group = session.map(wf, [{"x": i} for i in range(3)])
...     len(group), group.states()
(3, ['RUNNING', 'RUNNING', 'RUNNING'])
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .session import Run


class RunGroup:
    """Several :class:`~fuseline_nb.Run` s of one sweep, in the order they were submitted.

    Parameters
    ----------
    runs:
        The runs.

    Examples
    --------
    >>> RunGroup([]).wait()
    []
    """

    def __init__(self, runs: list[Run]) -> None:
        self.runs = list(runs)

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs)

    def __getitem__(self, k: int) -> Run:
        return self.runs[k]

    def states(self) -> list[str]:
        """Each run's state now."""
        return [r.state.value for r in self.runs]

    def wait(self, timeout: float | None = None) -> list[Any]:
        """Wait for every run; their outputs in order (as :meth:`Run.wait` gives them).

        Raises
        ------
        TimeoutError
            Not every run ended within ``timeout`` seconds (they keep running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for r in self.runs:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            out.append(r.wait(timeout=left))
        return out

    def view(self) -> Any:
        """The group's live view: a row per run; clicking a row opens that run's view."""
        from .views.group import GroupView

        return GroupView(self)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view())

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for s in self.states():
            counts[s.lower()] = counts.get(s.lower(), 0) + 1
        text = ", ".join(f"{n} {s}" for s, n in counts.items()) or "empty"
        return f"<RunGroup of {len(self.runs)} runs: {text}>"


__all__ = ["RunGroup"]
