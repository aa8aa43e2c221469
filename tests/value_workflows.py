"""Workflows the value tests import by module path (``tests.value_workflows:NAME``).

:class:`Counted` writes one line to the file named by ``$FUSELINE_NB_COUNT_FILE``
each time it is pickled (``dump <pid>``) or unpickled (``load <pid>``), in
whichever process that happens, so a test can count serialisations across
worker processes and the kernel.
"""

from __future__ import annotations

import os
from typing import Any

from fuseline_nb import Depends, Step, Workflow

COUNT_ENV = "FUSELINE_NB_COUNT_FILE"


def _note(what: str) -> None:
    path = os.environ.get(COUNT_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"{what} {os.getpid()}\n")


def _rebuild(rows: tuple[int, ...]) -> Counted:
    _note("load")
    return Counted(rows)


class Counted:
    """A result that records where it is pickled and unpickled."""

    def __init__(self, rows: tuple[int, ...]) -> None:
        self.rows = rows

    def __reduce__(self) -> tuple[Any, ...]:
        _note("dump")
        return (_rebuild, (self.rows,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Counted) and other.rows == self.rows

    def __repr__(self) -> str:
        return f"Counted({self.rows})"


class Root(Step):
    """Makes the counted value."""

    def run_step(self) -> Counted:
        return Counted((0, 1, 2))


class Reader(Step):
    """Reads the root's value (three of these: a 1 -> 3 fan-out)."""

    def run_step(self, c: Counted = Depends(Root)) -> int:
        return sum(c.rows)


def fan_out() -> Workflow:
    """Root -> three readers."""
    root = Root()
    readers = [Reader(name=f"reader{i}") for i in range(3)]
    for r in readers:
        root >> r
    return Workflow(outputs=readers)


class Frame(Step):
    """A pandas DataFrame result."""

    def run_step(self, n: int) -> Any:
        import pandas as pd

        return pd.DataFrame({"i": list(range(n)), "label": [f"r{i}" for i in range(n)]})


class Describe(Step):
    """A dict result with a tuple inside, read from the frame."""

    def run_step(self, frame: Any = Depends(Frame), label: str = "demo") -> dict[str, Any]:
        return {"rows": tuple(frame["i"]), "label": label}


class Route(Step):
    """Returns an action string."""

    def run_step(self, d: dict[str, Any] = Depends(Describe)) -> str:
        return "many" if len(d["rows"]) > 2 else "few"


class Many(Step):
    """Taken on "many"."""

    def run_step(self) -> list[int]:
        return [1, 2, 3]


class Few(Step):
    """Taken on "few" (skipped here)."""

    def run_step(self) -> None:
        return None


def history() -> Workflow:
    """Frame -> Describe -> Route -"many"-> Many, -"few"-> Few: DataFrame, dict, action, skip."""
    frame, describe, route, many, few = Frame(), Describe(), Route(), Many(), Few()
    frame >> describe >> route
    route - "many" >> many
    route - "few" >> few
    return Workflow(outputs=[many, few], workflow_id="value-history")


FAN_OUT = fan_out()
HISTORY = history()
