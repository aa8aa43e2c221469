"""The notebooks' saved outputs (what GitHub and the docs site show) agree with what the notebooks check.

nbval (``--nbval-lax``) compares only the cells marked ``NBVAL_CHECK_OUTPUT``; a run's
live view is not marked (its durations and worker names vary), so a saved view could
show a state the run no longer ends in. Here each saved run view whose run a later
checked cell describes (``{name: step.state.value for name, step in X.info().steps...}``)
must show the same state for every step.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
ROW = re.compile(r"^(\S+)\s+(pending|queued|running|succeeded|failed|cancelled|skipped)\b", re.M)


def _plain(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("data", {}).get("text/plain", "") for o in cell.get("outputs", ()))


def _pairs(nb: nbformat.NotebookNode) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    code = [c for c in nb.cells if c.cell_type == "code"]
    out = []
    for i, cell in enumerate(code):
        last = cell.source.strip().splitlines()[-1] if cell.source.strip() else ""
        shown = _plain(cell)
        if not re.fullmatch(r"[A-Za-z_]\w*", last) or not re.match(r"run \w+ of \S+: ", shown):
            continue
        for later in code[i + 1:]:
            if "NBVAL_CHECK_OUTPUT" in later.source and f"{last}.info().steps" in later.source:
                checked = ast.literal_eval(_plain(later))
                if isinstance(checked, tuple):  # (run state, {step: state})
                    checked = next(part for part in checked if isinstance(part, dict))
                view = {step: state.upper() for step, state in ROW.findall(shown)}
                out.append((last, view, checked))
                break
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_saved_run_view_shows_the_states_its_checked_cell_says(path: Path) -> None:
    # before: 01-tour's saved view of `rejected` showed Report succeeded; the checked cell (and the
    # text above it) says Report is SKIPPED: an AND join runs only when every input was reached
    for name, view, checked in _pairs(nbformat.read(path, as_version=4)):
        assert view == checked, f"{path.name}: the saved view of {name!r} shows {view}, the checked cell {checked}"


def test_the_tour_has_views_to_compare() -> None:
    tour = next(p for p in NOTEBOOKS if p.stem == "01-tour")
    assert [name for name, _, _ in _pairs(nbformat.read(tour, as_version=4))] == ["rejected", "broken"]
