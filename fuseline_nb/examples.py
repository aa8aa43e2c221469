"""Example workflows used by the README's main job, the docs and the tour notebook.

``tour`` validates its input (a branch: ``"ok"`` or ``"reject"``), computes
three statistics in parallel on the ``"ok"`` branch, joins them into a
report (an AND join: it runs only when every input was reached), and has an
OR group that takes whichever of two mirrors answers first. On the
``"reject"`` branch the statistics are skipped, and so is the report: only
``Reject`` and the mirrors run, and the run returns ``None``.

Examples
--------
>>> from fuseline_nb.examples import tour
>>> report = tour.run({"n": 10, "delay": 0})
>>> report["total"], report["source"]
(45, 'mirror_a')
>>> print(tour.run({"n": -5, "delay": 0}))
None
>>> sorted(n for n, s in tour.last_run.steps.items() if s.state.value == "SUCCEEDED")
['Reject', 'Validate', 'mirror_a', 'mirror_b']
"""

from __future__ import annotations

import time
from typing import Any

from .workflow.graph import Workflow
from .workflow.steps import Computed, Depends, Step


class Validate(Step):
    """Route to ``"ok"`` when ``n`` is a non-negative count, else ``"reject"``."""

    def run_step(self, n: int = 100) -> str:
        return "ok" if int(n) >= 0 else "reject"


class Reject(Step):
    """Runs only on the ``"reject"`` branch."""

    def run_step(self) -> str:
        return "rejected"


class Total(Step):
    """Sum of the numbers (after a small delay, to make the run watchable)."""

    def run_step(self, n: int = 100, delay: float = 0.2) -> int:
        time.sleep(float(delay))
        return sum(range(int(n)))


class Mean(Step):
    """Mean of the numbers."""

    def run_step(self, n: int = 100, delay: float = 0.2) -> float:
        time.sleep(float(delay))
        return sum(range(int(n))) / max(int(n), 1)


class Largest(Step):
    """Largest number."""

    def run_step(self, n: int = 100, delay: float = 0.2) -> int:
        time.sleep(float(delay))
        return max(range(int(n)), default=0)


class MirrorA(Step):
    """One of two sources; the OR group takes whichever finishes first."""

    name = "mirror_a"

    def run_step(self, delay: float = 0.2) -> str:
        time.sleep(float(delay) / 2)
        return "mirror_a"


class MirrorB(Step):
    """The slower source."""

    name = "mirror_b"

    def run_step(self, delay: float = 0.2) -> str:
        time.sleep(float(delay))
        return "mirror_b"


def build_tour() -> Workflow:
    """Build the tour workflow (a fresh set of step objects each call)."""
    validate, reject = Validate(), Reject()
    total, mean, largest = Total(), Mean(), Largest()
    mirror_a, mirror_b = MirrorA(), MirrorB()

    class Report(Step):
        """AND join of the three statistics plus the OR group of mirrors (skipped on "reject")."""

        def run_step(
            self,
            total: Computed[int] = Depends(total),
            mean: Computed[float] = Depends(mean),
            largest: Computed[int] = Depends(largest),
            source: Computed[str] = Depends(mirror_a, mirror_b),
        ) -> dict[str, Any]:
            return {"total": total, "mean": mean, "largest": largest, "source": source}

    Report.__module__ = __name__
    Report.__qualname__ = "Report"
    report = Report()
    (validate - "ok") >> total
    (validate - "ok") >> mean
    (validate - "ok") >> largest
    (validate - "reject") >> reject
    return Workflow(outputs=[report], workflow_id="tour", name="tour")


tour = build_tour()


__all__ = [
    "Largest",
    "Mean",
    "MirrorA",
    "MirrorB",
    "Reject",
    "Total",
    "Validate",
    "build_tour",
]
