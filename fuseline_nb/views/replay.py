"""ReplayView: scrub through a finished run's events and see the graph at any moment.

The events come from ``broker.events(run_id)`` — with a DuckDB broker, from
the file, so a run from an earlier session replays too; with an
:class:`~fuseline_nb.broker.HttpBrokerClient`, from the broker service. Position ``k``
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
>>> replay.position == replay.positions, replay.state.run_state
(True, 'SUCCEEDED')
>>> replay.position = 0
>>> replay.state.counts()["PENDING"]
8
>>> replay.close()
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from ..workflow.events import Event
from .draw import DEFAULT_MAX_NODES
from .front import RunWidget
from .panel import broker_of
from .render import badge
from .runstate import RunState


def all_events(broker: Any, run_id: str) -> list[Event]:
    """Every event of a run, in ``seq`` order, from a broker or a broker client.

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.examples import tour
    >>> b = MemoryBroker()
    >>> [e.kind for e in all_events(b, b.dispatch_workflow(tour.to_schema()))][:2]
    ['run_dispatched', 'step_queued']
    """
    return sorted(broker.events(run_id), key=lambda e: e.seq)


class ReplayView(RunWidget):
    """A slider over one run's events, with the live view's graph, table, timeline and details.

    Parameters
    ----------
    session_or_broker:
        A Session (its broker is used), a broker, or a broker client.
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
    >>> replay.state.run_state, replay.codes
    ('SUCCEEDED', 'S')
    >>> replay.close()
    """

    def __init__(self, session_or_broker: Any, run_id: str, *, max_nodes: int = DEFAULT_MAX_NODES,
                 max_rows: int = 50, rankdir: str = "LR") -> None:
        broker = broker_of(session_or_broker)
        self.events = all_events(broker, run_id)
        super().__init__(broker, run_id, max_nodes=max_nodes, max_rows=max_rows, rankdir=rankdir)
        # workers still connected get their names; steps record names already
        self.workers.update({w.worker_id: w.name or w.worker_id for w in broker.list_workers()})
        self._names = list(self.state.steps)
        self._pos = 0
        self.state = RunState(self._names)
        n = len(self.events)
        self.observe(self._on_move, names="position")
        with self.hold_sync():
            self.positions = n
            self.position = n
        self.show_at(n)

    def _on_move(self, change: Mapping[str, Any]) -> None:
        self.show_at(int(change["new"]))

    def state_at(self, k: int) -> RunState:
        """The run after its first ``k`` events (the view's own state, moved there)."""
        k = max(0, min(k, len(self.events)))
        if k < self._pos:
            self.state, self._pos = RunState(self._names), 0
        for event in self.events[self._pos:k]:
            self.state.apply(event)
        self._pos = k
        return self.state

    def show_at(self, k: int) -> None:
        """Show the run after its first ``k`` events."""
        rs = self.state_at(k)
        with self.hold_sync():
            self.show(rs)
            self.moment = self._describe(k)
            if self.position != k:
                self.position = k

    def _describe(self, k: int) -> str:
        if k == 0 or not self.events:
            return "<i>before the run (drag the slider)</i>"
        e = self.events[k - 1]
        t0 = self.events[0].at
        what = e.kind.replace("_", " ")
        step = f" <b>{html.escape(e.step)}</b>" if e.step else ""
        state = f" {badge(e.state.value)}" if e.state is not None and e.state.value in _BADGED else ""
        worker = f" on <code>{html.escape(self.workers.get(e.worker, e.worker))}</code>" if e.worker else ""
        return f"<span>event {k}/{len(self.events)} at +{e.at - t0:.3f} s: {what}{step}{state}{worker}</span>"

    def __repr__(self) -> str:
        return f"<ReplayView of run {self.run_id!r}: event {self._pos}/{len(self.events)}>"


_BADGED = frozenset({"RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED"})


__all__ = [
    "ReplayView",
    "all_events",
]
