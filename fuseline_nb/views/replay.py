"""ReplayView: scrub through a finished run's events and see the graph at any moment.

The events come from ``broker.events(run_id)`` — with a DuckDB broker, from
the file, so a run from an earlier session replays too. Position ``k``
shows the run after its first ``k`` events; moving forward applies only the
new events, moving back replays from the start (cheap: a few microseconds
per event).

Examples
--------
>>> from fuseline_nb.examples import tour
>>> from fuseline_nb.broker import MemoryBroker
>>> from fuseline_nb.broker.clients import LocalBrokerClient
>>> from fuseline_nb.worker import ProcessEngine
>>> broker = MemoryBroker()
>>> run_id = broker.dispatch_workflow(tour.to_schema(), {"n": 5, "delay": 0})
>>> ProcessEngine(LocalBrokerClient(broker), [tour]).work()
>>> replay = ReplayView(broker, run_id)
>>> replay.slider.value == replay.slider.max, replay.state.run_state
(True, 'SUCCEEDED')
>>> replay.slider.value = 0
>>> replay.state.counts()["PENDING"]
8
>>> replay.close()
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from .draw import DEFAULT_MAX_NODES
from .panel import Panel, broker_of, schema_for
from .render import badge
from .runstate import RunState


class ReplayView(W.VBox):
    """A slider (with a play button) over one run's events.

    Parameters
    ----------
    session_or_broker:
        A Session (its broker is used) or a broker.
    run_id:
        The run to replay.
    max_nodes, max_rows, rankdir:
        As for :class:`~fuseline_nb.views.widgets.RunView`.

    Raises
    ------
    UnknownRunError
        The broker does not know ``run_id``.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.broker.clients import LocalBrokerClient
    >>> from fuseline_nb.worker import ProcessEngine
    >>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")])
    >>> broker = MemoryBroker()
    >>> run_id = broker.dispatch_workflow(wf.to_schema())
    >>> ProcessEngine(LocalBrokerClient(broker), [wf]).work()
    >>> replay = ReplayView(broker, run_id)
    >>> replay.state.run_state
    'SUCCEEDED'
    >>> replay.close()
    """

    def __init__(self, session_or_broker: Any, run_id: str, *, max_nodes: int = DEFAULT_MAX_NODES,
                 max_rows: int = 50, rankdir: str = "LR") -> None:
        self.run_id = run_id
        broker = broker_of(session_or_broker)
        info = broker.get_run(run_id)
        schema = schema_for(broker, info.workflow_id, info.version)
        self.events = sorted(broker.events(run_id), key=lambda e: e.seq)
        # workers still connected get their names; those gone are shown by id
        self.workers = {w.worker_id: w.name or w.worker_id for w in broker.list_workers()}
        self._names = schema.step_names
        self.state = RunState(self._names)
        self._pos = 0
        self.panel = Panel(schema, run_id=run_id, max_nodes=max_nodes, max_rows=max_rows, rankdir=rankdir)
        n = len(self.events)
        self.slider = W.IntSlider(value=n, min=0, max=n, description="event", layout=W.Layout(width="70%"))
        self.play = W.Play(value=n, min=0, max=n, step=1, interval=150, description="play")
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.moment = W.HTML()
        p = self.panel
        super().__init__(children=[p.header, W.HBox([self.play, self.slider]), self.moment,
                                   W.HBox([p.progress, p.counts]), p.graph, p.table])
        self.slider.observe(self._on_move, names="value")
        self.show(n)

    def _on_move(self, change: dict[str, Any]) -> None:
        self.show(int(change["new"]))

    def state_at(self, k: int) -> RunState:
        """The run after its first ``k`` events (the view's own state, moved there)."""
        k = max(0, min(k, len(self.events)))
        if k < self._pos:
            self.state, self._pos = RunState(self._names), 0
        for event in self.events[self._pos:k]:
            self.state.apply(event)
        self._pos = k
        return self.state

    def show(self, k: int) -> None:
        """Show the run after its first ``k`` events."""
        rs = self.state_at(k)
        self.panel.show(rs, self.workers)
        self.moment.value = self._describe(k)

    def _describe(self, k: int) -> str:
        if k == 0 or not self.events:
            return "<i>before the run (drag the slider or press play)</i>"
        e = self.events[k - 1]
        t0 = self.events[0].at
        what = e.kind.replace("_", " ")
        step = f" <b>{html.escape(e.step)}</b>" if e.step else ""
        state = f" {badge(e.state.value)}" if e.state is not None and e.state.value in _BADGED else ""
        worker = f" on <code>{html.escape(self.workers.get(e.worker, e.worker))}</code>" if e.worker else ""
        return f"<div>event {k}/{len(self.events)} at +{e.at - t0:.3f} s: {what}{step}{state}{worker}</div>"

    def close(self) -> None:
        """Close the view and its widgets."""
        if getattr(self, "panel", None) is None:  # construction failed
            super().close()
            return
        self.panel.close()
        for w in (self.slider, self.play, self.moment, *self.children):
            w.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/html"] = self.panel.snapshot_html(self.state, self.workers)
        bundle["text/plain"] = self.panel.snapshot_text(self.state, self.workers)
        return bundle

    def __repr__(self) -> str:
        return f"<ReplayView of run {self.run_id!r}: event {self._pos}/{len(self.events)}>"


_BADGED = frozenset({"RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"})


__all__ = [
    "ReplayView",
]
