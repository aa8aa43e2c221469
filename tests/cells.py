"""Notebook cells in a test: code run in ``__main__`` as a kernel runs a cell (shared by the edit-loop tests)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import __main__


class Cells:
    """Runs code in ``__main__`` like notebook cells; forgets the names it bound afterwards."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.ns = vars(__main__)

    def run(self, source: str) -> None:
        before = set(self.ns)
        exec(compile(textwrap.dedent(source), "<cell>", "exec"), self.ns)
        self.bound |= set(self.ns) - before

    def __getitem__(self, name: str) -> Any:
        return self.ns[name]

    def close(self) -> None:
        for name in self.bound:
            self.ns.pop(name, None)


@contextmanager
def notebook(first_cell: str) -> Iterator[Cells]:
    """Cells whose first cell is ``first_cell`` (imports); the names they bound are forgotten at the end."""
    c = Cells()
    c.run(first_cell)
    try:
        yield c
    finally:
        c.close()
