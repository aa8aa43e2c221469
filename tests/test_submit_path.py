"""The submit path: what ``Session.submit`` pickles, ships and keeps (issue 13: a 1M-step workflow)."""

from __future__ import annotations

import fuseline_nb as fl
from fuseline_nb.worker import pool as pool_module


def _counting_ship(monkeypatch) -> list[tuple[str, str]]:
    """Record each workflow the pool pickles (the real ``ship`` still runs)."""
    shipped: list[tuple[str, str]] = []
    real = pool_module.ship

    def ship(wf):
        shipped.append((wf.workflow_id, wf.version))
        return real(wf)

    monkeypatch.setattr(pool_module, "ship", ship)
    return shipped


def test_a_workflow_is_pickled_once_however_often_it_or_an_unchanged_rebuild_is_submitted(monkeypatch):
    shipped = _counting_ship(monkeypatch)

    def build(k: int) -> fl.Workflow:
        def add(x: int) -> int:
            return x + k

        return fl.workflow_from_functions([add], workflow_id="once")

    with fl.Session(None, workers=1) as session:
        first = build(1)
        assert session.submit(first, {"x": 1}).wait(timeout=60) == 2
        again = build(1)  # the cell run again: nothing changed
        assert session.submit(again, {"x": 2}).wait(timeout=60) == 3
        assert session.submit(again, {"x": 3}).wait(timeout=60) == 4  # the same object again
        assert session.submit(first, {"x": 4}).wait(timeout=60) == 5  # the earlier object, unchanged too
        assert shipped == [("once", first.version)]
        changed = build(5)
        assert session.submit(changed, {"x": 1}).wait(timeout=60) == 6  # its closure changed: shipped
        assert session.submit(changed, {"x": 2}).wait(timeout=60) == 7
        assert len(shipped) == 2
