"""GroupView: the live view of a :class:`~fuseline_nb.rungroup.RunGroup` (a row per run).

A thread polls the runs' states at most ``1 / interval`` times a second and
sends the rows as one message; clicking a row shows that run's
:class:`~fuseline_nb.views.widgets.RunView` below the table.

Examples
--------
>>> import fuseline_nb as fl
>>> wf = fl.Workflow(outputs=[fl.FunctionStep(lambda: 1, name="one")], workflow_id="g")
>>> with fl.Session(workers=0) as session:
...     view = session.map(wf, [{}, {}]).view()
...     [r[1] for r in view.table.rows]
...     view.close()
['RUNNING', 'RUNNING']
"""

from __future__ import annotations

import html
import logging
import pathlib
import threading
from collections.abc import Mapping
from typing import Any, Final

import anywidget
import ipywidgets as W
import traitlets as T

from .palette import FILL
from .render import preview

log = logging.getLogger(__name__)

_STATIC: Final = pathlib.Path(__file__).parent / "static"


def _inputs_text(info: Any, limit: int = 60) -> str:
    """``k=v, ...`` from the inputs' own previews (nothing is unpickled)."""
    held = info.input_values if info.input_values is not None else (info.inputs or {})
    text = ", ".join(f"{k}={preview(v, 30)}" for k, v in held.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class GroupTable(anywidget.AnyWidget):
    """The table of a group view: ``rows`` are ``[run_id, state, done, total, duration_s, inputs]``.

    Examples
    --------
    >>> GroupTable().selected
    -1
    """

    _esm = _STATIC / "group.js"
    _css = _STATIC / "runview.css"
    rows = T.List(T.Any()).tag(sync=True)
    selected = T.Int(-1).tag(sync=True)
    summary = T.Unicode("").tag(sync=True)
    palette = T.Dict(dict(FILL)).tag(sync=True)


class GroupView(W.VBox):
    """A row per run of a group (state, progress, duration, inputs); a click opens that run's view.

    Parameters
    ----------
    group:
        The :class:`~fuseline_nb.rungroup.RunGroup`.
    interval:
        Least time between two updates, in seconds.

    Examples
    --------
    >>> from fuseline_nb.rungroup import RunGroup
    >>> GroupView(RunGroup([])).table.summary
    '0 runs: '
    """

    def __init__(self, group: Any, *, interval: float = 0.25) -> None:
        self.group = group
        self.interval = float(interval)
        self.table = GroupTable()
        self.run_view: Any = None
        super().__init__(children=[self.table])
        self.table.observe(self._on_select, names="selected")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.refresh():
            self._thread = threading.Thread(target=self._loop, daemon=True, name="fuseline-groupview")
            self._thread.start()

    def refresh(self) -> bool:
        """Send the rows as they are now; return whether every run has ended."""
        rows = []
        ended = True
        counts: dict[str, int] = {}
        for run in self.group.runs:
            info = run.info()
            done = sum(n for state, n in info.counts().items() if state.is_final)  # an ended run counts its arrays
            duration = ((info.finished_at or 0.0) - info.created_at) if info.finished_at and info.created_at \
                else None
            rows.append([run.id, info.state.value, done, max(len(info.steps), 1),
                         None if duration is None else round(duration, 3), _inputs_text(info)])
            counts[info.state.value.lower()] = counts.get(info.state.value.lower(), 0) + 1
            ended = ended and info.done
        with self.table.hold_sync():
            self.table.rows = list[Any](rows)
            self.table.summary = f"{len(rows)} runs: " + ", ".join(f"{s} {n}" for s, n in counts.items())
        return ended

    def snapshot_text(self) -> str:
        """The table as plain text, as it is now (what a saved notebook shows without widgets)."""
        lines = [self.table.summary]
        rows: list[Any] = list(self.table.rows or [])
        for run_id, state, done, total, duration, inputs in rows:
            took = "" if duration is None else f"{duration:.2f} s"
            lines.append(f"{run_id[:8]}  {state.lower():<9}  {done}/{total}  {took:>9}  {inputs}")
        return "\n".join(lines)

    def snapshot_html(self) -> str:
        """The table as static HTML, as it is now (for nbconvert, GitHub and the docs site)."""
        rows: list[Any] = list(self.table.rows or [])
        cells = "".join(
            f"<tr><td><code>{html.escape(str(r[0])[:8])}</code></td><td>{html.escape(str(r[1]).lower())}</td>"
            f"<td>{r[2]}/{r[3]}</td><td>{'' if r[4] is None else f'{r[4]:.2f} s'}</td>"
            f"<td>{html.escape(str(r[5]))}</td></tr>" for r in rows)
        return (f"<div><b>{html.escape(self.table.summary)}</b><table><tr><th>run</th><th>state</th>"
                f"<th>steps</th><th>duration</th><th>inputs</th></tr>{cells}</table></div>")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = dict((bundle[0] if isinstance(bundle, tuple) else bundle) or {})
        data["text/plain"] = self.snapshot_text()
        data["text/html"] = self.snapshot_html()
        return data

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                if self.refresh():
                    break
        except Exception:  # a broken view must not take the kernel's threads down with it
            log.exception("group view stopped")

    def _on_select(self, change: Mapping[str, Any]) -> None:
        k = int(change["new"])
        if not 0 <= k < len(self.group.runs):
            return
        if self.run_view is not None:
            self.run_view.close()
        self.run_view = self.group.runs[k].view()
        self.children = [self.table, self.run_view]

    def close(self) -> None:
        """Stop updating and close the widgets (and an opened run view)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        if self.run_view is not None:
            self.run_view.close()
        self.table.close()
        super().close()


__all__ = [
    "GroupTable",
    "GroupView",
]
