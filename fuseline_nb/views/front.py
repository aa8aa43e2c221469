"""The browser side of run views: one ``anywidget`` whose JavaScript recolours nodes by id.

:class:`RunWidget` sends the laid-out SVG once. Afterwards :meth:`RunWidget.show`
sets only small traits — ``codes`` (one letter per node: its state), counts,
progress, the rows of the steps table — all inside one ``hold_sync``, so one
update is one message of a few hundred bytes (a 2,000-step run: under 4 KB).
The JavaScript (``static/runview.js``, shipped as package data) recolours the
nodes, ticks the elapsed time of running steps and reports clicks: a click on
a node or a row sets ``selected``, and the kernel answers with ``detail``.

The widget's state is saved in the notebook, so a saved notebook shows the
final colours; :class:`~fuseline_nb.views.widgets.RunView` also puts a static
HTML snapshot beside it for frontends without widgets.

Examples
--------
>>> from fuseline_nb.examples import tour
>>> from fuseline_nb.broker import MemoryBroker
>>> broker = MemoryBroker()
>>> run_id = broker.dispatch_workflow(tour.to_schema(), {"n": 5, "delay": 0})
>>> w = RunWidget(broker, run_id)
>>> w.codes, w.counts
('QQQPPPPP', {'Q': 3, 'P': 5})
>>> w.close()
"""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Mapping
from typing import Any, Final

import anywidget
import traitlets as T

from .draw import DEFAULT_MAX_NODES
from .palette import CODE, FILL, aggregate_state
from .panel import Layout, broker_of, schema_for
from .render import _ROW_PRIORITY, detail_html
from .runstate import RunState

log = logging.getLogger(__name__)

_STATIC: Final = pathlib.Path(__file__).parent / "static"
#: Letter → fill, as the browser receives it.
PALETTE: Final = {CODE[s]: FILL[s] for s in CODE}
TABS: Final = ("graph", "steps", "timeline")


class RunWidget(anywidget.AnyWidget):
    """The front end shared by :class:`RunView` and :class:`ReplayView`: graph, table, details, timeline.

    Parameters
    ----------
    broker:
        A broker or broker client (a Session, whose ``.broker`` is used, works too).
    run_id:
        The run to show.
    max_nodes, max_rows, rankdir:
        Steps drawn before the rest fold into one node; rows of the steps
        table (failed and running steps first); Graphviz direction.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> from fuseline_nb.broker import MemoryBroker
    >>> broker = MemoryBroker()
    >>> w = RunWidget(broker, broker.dispatch_workflow(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]).to_schema()))
    >>> w.node_steps, w.rows[0][:2]
    (['one'], ['one', 'Q'])
    >>> w.close()
    """

    _esm = _STATIC / "runview.js"
    _css = _STATIC / "runview.css"

    run_id = T.Unicode("").tag(sync=True)
    title = T.Unicode("").tag(sync=True)
    svg = T.Unicode("").tag(sync=True)  # sent once
    node_ids = T.List(T.Unicode()).tag(sync=True)  # sent once
    node_steps = T.List(T.Unicode()).tag(sync=True)  # sent once ("" for the folded node)
    palette = T.Dict(PALETTE).tag(sync=True)
    codes = T.Unicode("").tag(sync=True)  # one letter per node
    run_state = T.Unicode("RUNNING").tag(sync=True)
    counts = T.Dict().tag(sync=True)  # letter -> steps in that state (only states present)
    done = T.Int(0).tag(sync=True)
    total = T.Int(0).tag(sync=True)
    rows = T.List(T.Any()).tag(sync=True)  # [name, letter, attempts, worker, duration_s, running_since]
    more_rows = T.Int(0).tag(sync=True)
    clock = T.Float(0.0).tag(sync=True)  # the kernel's time.time() at the update
    selected = T.Unicode("").tag(sync=True)
    detail = T.Unicode("").tag(sync=True)
    tab = T.Enum(TABS, "graph").tag(sync=True)
    timeline = T.Unicode("").tag(sync=True)
    can_cancel = T.Bool(False).tag(sync=True)
    cancelling = T.Bool(False).tag(sync=True)
    notice = T.Unicode("").tag(sync=True)
    positions = T.Int(0).tag(sync=True)  # a replay's number of events (0: live view)
    position = T.Int(0).tag(sync=True)
    moment = T.Unicode("").tag(sync=True)

    def __init__(self, broker: Any, run_id: str, *, max_nodes: int = DEFAULT_MAX_NODES,
                 max_rows: int = 50, rankdir: str = "LR", **kwargs: Any) -> None:
        self.broker = broker_of(broker)
        info = self.broker.get_run(run_id)
        schema = schema_for(self.broker, info.workflow_id, info.version)
        self.layout_ = Layout(schema, run_id=run_id, max_nodes=max_nodes, max_rows=max_rows, rankdir=rankdir)
        self.max_rows = max_rows
        self.workers: dict[str, str] = {}
        self._incoming: dict[str, list[str]] = {}
        for e in schema.edges:
            if e.source not in self._incoming.setdefault(e.target, []):
                self._incoming[e.target].append(e.source)
        self.state = RunState.from_info(info, schema.step_names)
        self._shown_state: str | None = None  # state of the step whose details are shown
        self._user_selected = False
        self._timeline_at = 0.0
        d = self.layout_.drawing
        super().__init__(
            run_id=run_id, title=schema.workflow_id, svg=self.layout_.svg, node_ids=list(d.paint_ids),
            node_steps=[*d.shown, *([""] if d.more_id else [])], total=len(schema.steps), **kwargs,
        )
        self.observe(self._on_selected, names="selected")
        self.observe(self._on_tab, names="tab")
        self.show(self.state)

    # -- kernel → browser -----------------------------------------------------------------
    def show(self, rs: RunState) -> None:
        """Send what changed in ``rs``: one message, with only the traits whose value changed."""
        d = self.layout_.drawing
        states = rs.steps
        codes = [CODE[states[n].state] if n in states else "P" for n in d.shown]
        if d.more_id:
            codes.append(CODE[aggregate_state(states[n].state if n in states else "PENDING" for n in d.hidden)])
        counts: dict[str, int] = {}
        for s in states.values():
            c = CODE[s.state]
            counts[c] = counts.get(c, 0) + 1
        rows, more = self._rows(rs)
        with self.hold_sync():
            self.codes = "".join(codes)
            self.counts = counts
            self.done = rs.finished_count
            self.total = len(states)
            self.run_state = rs.run_state
            self.rows = list[Any](rows)
            self.more_rows = more
            self.clock = round(time.time(), 2)
            if rs.done:
                self.cancelling = False
            self._follow_selection(rs)

    def _rows(self, rs: RunState) -> tuple[list[list[Any]], int]:
        items = list(rs.steps.items())
        more = max(len(items) - self.max_rows, 0)
        if more:
            ranked = sorted(range(len(items)), key=lambda i: (_ROW_PRIORITY.get(items[i][1].state, 9), i))
            items = [items[i] for i in sorted(ranked[: self.max_rows])]
        names = self.workers
        out = []
        for n, s in items:
            duration = s.duration_s
            since = s.started_at if s.state == "RUNNING" else None
            worker = names.get(s.worker, s.worker) if s.worker else ""
            out.append([n, CODE[s.state], s.attempts, worker,
                        None if duration is None else round(duration, 3), since])
        return out, more

    def _follow_selection(self, rs: RunState) -> None:
        if not self._user_selected:
            failed = next((n for n, s in rs.steps.items() if s.state == "FAILED"), None)
            if failed is not None and self.selected != failed:
                self.selected = failed  # shows its details through _on_selected
                self._user_selected = False
                return
        name = self.selected
        if name and name in rs.steps and rs.steps[name].state != self._shown_state:
            self._show_detail(name)

    # -- browser → kernel -------------------------------------------------------------------
    def _on_selected(self, change: Mapping[str, Any]) -> None:
        self._user_selected = bool(change["new"])
        self._show_detail(change["new"])

    def _show_detail(self, name: str) -> None:
        try:
            if not name:
                self.detail, self._shown_state = "", None
                return
            info = self.broker.get_run(self.run_id)
            step = info.steps.get(name)
            if step is None:
                self.detail = f"<div>no step named <code>{name}</code> in this run</div>"
                return
            # Values as held (previews made where each was born): nothing is unpickled here.
            upstream = [(u, info.steps[u].value) for u in self._incoming.get(name, ())
                        if u in info.steps and info.steps[u].state.value == "SUCCEEDED"]
            self._shown_state = self.state.steps[name].state if name in self.state.steps else None
            inputs = info.input_values if info.input_values is not None else info.inputs
            self.detail = detail_html(name, step, inputs, upstream, self.workers)
        except Exception as exc:  # a broken preview must not break the view
            log.warning("could not show step %r of run %s", name, self.run_id, exc_info=True)
            self.detail = f"<div>could not show step {name!r}: {type(exc).__name__}: {exc}</div>"

    def _on_tab(self, change: Mapping[str, Any]) -> None:
        if change["new"] == "timeline":
            self.refresh_timeline()

    def refresh_timeline(self) -> None:
        """Draw the run's timeline into the Timeline tab (Altair, rendered to SVG in the kernel)."""
        from .timeline import timeline_html

        self._timeline_at = time.monotonic()
        try:
            self.timeline = timeline_html(self.broker, self.run_id, self.workers)
        except Exception as exc:
            log.warning("could not draw the timeline of run %s", self.run_id, exc_info=True)
            self.timeline = f"<div>could not draw the timeline: {type(exc).__name__}: {exc}</div>"

    # -- static snapshots ----------------------------------------------------------------------
    def snapshot_html(self) -> str:
        """The view as static HTML, as it is now."""
        return self.layout_.snapshot_html(self.state, self.workers) + self.detail

    def snapshot_text(self) -> str:
        """The view as plain text, as it is now."""
        return self.layout_.snapshot_text(self.state, self.workers)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data = dict(data or {})
        data["text/html"] = self.snapshot_html()
        data["text/plain"] = self.snapshot_text()
        return data


__all__ = [
    "RunWidget",
]
