"""Views: Graphviz drawings of workflows and live ipywidgets views of runs.

- :func:`~fuseline_nb.views.draw.draw` — a workflow as a ``graphviz.Digraph``
  (action labels, OR groups, state colours, a legend).
- :class:`~fuseline_nb.views.widgets.RunView` — a run, live: the graph
  recoloured as steps change, progress, counts, a steps table and details.
- :class:`~fuseline_nb.views.replay.ReplayView` — a slider over a finished
  run's events.
- :mod:`~fuseline_nb.views.display` — the display hooks (SVG, or the DOT text
  and how to install Graphviz).

Graphviz and ipywidgets load when these names are first used.

Examples
--------
>>> import fuseline_nb.views as views
>>> sorted(views.__all__)
['ReplayView', 'RunView', 'draw']
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "draw": ("fuseline_nb.views.draw", "draw"),
    "RunView": ("fuseline_nb.views.widgets", "RunView"),
    "ReplayView": ("fuseline_nb.views.replay", "ReplayView"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    import importlib

    return getattr(importlib.import_module(module), attr)


__all__ = ["ReplayView", "RunView", "draw"]
