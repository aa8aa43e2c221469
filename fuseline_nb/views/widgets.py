"""Live run views: :class:`RunView` (and :class:`ReplayView`, from :mod:`.replay`).

A :class:`RunView` subscribes to the broker's events. The subscription
callback runs under the broker's lock, so it only appends the event to a
queue and wakes the view's own thread. That thread applies what arrived,
at most ``1 / interval`` times a second (10 by default; the update that
shows the end of the run is not held back), and sets widget traits; it never writes to an ``Output`` widget. The graph is laid out once;
updates recolour it. When the run ends the thread pushes a last update and
stops.

Next to the widget, the view's mime bundle carries ``text/html`` and
``text/plain`` snapshots, which frontends without widgets (nbconvert,
GitHub) show instead.

Examples
--------
>>> from fuseline_nb.examples import tour
>>> from fuseline_nb.broker import MemoryBroker
>>> from fuseline_nb.broker.clients import LocalBrokerClient
>>> from fuseline_nb.worker import ProcessEngine
>>> broker = MemoryBroker()
>>> run_id = broker.dispatch_workflow(tour.to_schema(), {"n": 5, "delay": 0})
>>> view = RunView(broker, run_id)
>>> ProcessEngine(LocalBrokerClient(broker), [tour]).work()
>>> view.join(timeout=10)
True
>>> view.state.run_state, view.state.counts()["SKIPPED"]
('SUCCEEDED', 1)
>>> view.close()
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from ..workflow.events import Event
from .draw import DEFAULT_MAX_NODES
from .panel import Panel, broker_of, schema_for
from .render import detail_html
from .replay import ReplayView
from .runstate import RunState

log = logging.getLogger(__name__)

_CHOOSE = "(choose a step)"


class RunView(W.VBox):
    """A live view of one run: coloured graph, progress, counts, table, step details.

    Parameters
    ----------
    broker:
        The broker holding the run (a Session, whose ``.broker`` is used, works too).
    run_id:
        The run to watch.
    interval:
        Least time between two updates, in seconds (0.1: at most 10 per second).
    max_nodes:
        Steps drawn before the rest fold into one node.
    max_rows:
        Rows of the steps table (failed and running steps are listed first).
    rankdir:
        Graphviz direction of the graph.

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
    >>> view = RunView(broker, broker.dispatch_workflow(wf.to_schema()))
    >>> ProcessEngine(LocalBrokerClient(broker), [wf]).work()
    >>> view.join(timeout=10), view.state.run_state
    (True, 'SUCCEEDED')
    >>> view.close()
    """

    def __init__(self, broker: Any, run_id: str, *, interval: float = 0.1,
                 max_nodes: int = DEFAULT_MAX_NODES, max_rows: int = 50, rankdir: str = "LR") -> None:
        self.broker = broker_of(broker)
        self.run_id = run_id
        self.interval = float(interval)
        self.updates = 0  # pushes made by the view's thread
        self._buffer: collections.deque[Event] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._hurry = threading.Event()  # set when the run ends or the view closes
        self._workers: dict[str, str] = {}
        self._user_selected = False
        self._auto = False  # True while the view itself moves the selection
        self._shown_state: str | None = None  # state of the step whose details are shown
        self._thread: threading.Thread | None = None
        self._display_ids: list[str] = []  # outputs to give the final snapshot
        self._unsubscribe: Callable[[], None] | None = self.broker.subscribe(self._on_event)
        try:
            info = self.broker.get_run(run_id)
            schema = schema_for(self.broker, info.workflow_id, info.version)
        except Exception:
            self._drop_subscription()
            raise
        self._incoming: dict[str, list[str]] = {}
        for e in schema.edges:
            if e.source not in self._incoming.setdefault(e.target, []):
                self._incoming[e.target].append(e.source)
        self.state = RunState.from_info(info, schema.step_names)
        self.panel = Panel(schema, run_id=run_id, max_nodes=max_nodes, max_rows=max_rows, rankdir=rankdir)
        self.select = W.Dropdown(options=[_CHOOSE, *schema.step_names], value=_CHOOSE, description="step")
        self.detail = W.HTML(layout=W.Layout(width="100%"))
        p = self.panel
        super().__init__(children=[p.header, W.HBox([p.progress, p.counts]), p.graph, p.table,
                                   self.select, self.detail])
        self.select.observe(self._on_select, names="value")
        self._drain()
        self._push()
        if self.state.done:
            self._drop_subscription()
        else:
            self._thread = threading.Thread(target=self._loop, daemon=True, name=f"fuseline-runview-{run_id[:8]}")
            self._thread.start()

    # -- the broker side: record and wake, nothing else --------------------------------
    def _on_event(self, event: Event) -> None:
        if event.run_id == self.run_id:
            self._buffer.append(event)
            if not self._wake.is_set():  # setting takes a lock: skip it when already set
                self._wake.set()
            if event.kind == "run_finished":
                self._hurry.set()

    def _drop_subscription(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    # -- the view's thread -------------------------------------------------------------------
    def _loop(self) -> None:
        next_at = time.monotonic() + self.interval  # the constructor has just shown the run
        try:
            while not self._stop.is_set():
                if not self._wake.wait(timeout=0.5):
                    continue
                delay = next_at - time.monotonic()
                # Coalesce what arrives meanwhile, but show the end of a run at once
                # (one extra update per run at most); close() hurries too.
                if delay > 0:
                    self._hurry.wait(delay)
                if self._stop.is_set():
                    break
                self._wake.clear()
                if self._drain():
                    self._push()
                    next_at = time.monotonic() + self.interval
                if self.state.done:
                    self._refresh_fallbacks()
                    break
        except Exception:  # a broken view must not take the kernel's threads down with it
            log.exception("run view of %s stopped", self.run_id)
        finally:
            self._drop_subscription()

    def _refresh_fallbacks(self) -> None:
        """Give each place the view was displayed the final static snapshot.

        Frontends without widgets (nbconvert, GitHub) show the ``text/html``
        that was current when the cell ran; once the run has ended, replace it
        so a saved notebook shows how the run ended.
        """
        if not self._display_ids:
            return
        from IPython.display import update_display

        bundle = self._repr_mimebundle_()
        for display_id in self._display_ids:
            update_display(bundle, raw=True, display_id=display_id)

    def _drain(self) -> int:
        events = []
        while self._buffer:
            events.append(self._buffer.popleft())
        self.state.apply_all(events)
        return len(events)

    def _push(self) -> None:
        rs = self.state
        known = self._workers
        if any(s.worker and s.worker not in known for s in rs.steps.values()):
            for w in self.broker.list_workers():
                known[w.worker_id] = w.name or w.worker_id
        self.panel.show(rs, known)
        self.updates += 1
        if not self._user_selected:
            failed = next((n for n, s in rs.steps.items() if s.state == "FAILED"), None)
            if failed is not None and self.select.value != failed:
                self._set_selection(failed)
                return
        name = self.select.value
        if name != _CHOOSE and rs.steps[name].state != self._shown_state:
            self._show_detail(name)

    def _set_selection(self, name: str) -> None:
        self._auto = True
        try:
            self.select.value = name
        finally:
            self._auto = False

    def _on_select(self, change: dict[str, Any]) -> None:
        if not self._auto:
            self._user_selected = change["new"] != _CHOOSE
        self._show_detail(change["new"])

    def _show_detail(self, name: str) -> None:
        if name == _CHOOSE:
            self.detail.value, self._shown_state = "", None
            return
        info = self.broker.get_run(self.run_id)
        step = info.steps.get(name)
        if step is None:
            self.detail.value = ""
            return
        upstream = [(u, info.steps[u].value) for u in self._incoming.get(name, ())
                    if u in info.steps and info.steps[u].state.value == "SUCCEEDED"]
        self._shown_state = self.state.steps[name].state
        self.detail.value = detail_html(name, step, info.input_values, upstream, self._workers)

    # -- public ----------------------------------------------------------------------------------
    def join(self, timeout: float | None = None) -> bool:
        """Wait until the view has shown the end of the run; return whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state.done

    def close(self) -> None:
        """Stop following the run and close the widgets."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        self._drop_subscription()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        if getattr(self, "panel", None) is None:  # construction failed
            super().close()
            return
        self.panel.close()
        for w in (self.select, self.detail):
            w.close()
        for child in self.children:
            if isinstance(child, W.HBox):
                child.close()
        super().close()

    def snapshot_html(self) -> str:
        """The view as static HTML, as it is now."""
        return self.panel.snapshot_html(self.state, self._workers) + self.detail.value

    def snapshot_text(self) -> str:
        """The view as plain text, as it is now."""
        return self.panel.snapshot_text(self.state, self._workers)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/html"] = self.snapshot_html()
        bundle["text/plain"] = self.snapshot_text()
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display_id = uuid.uuid4().hex
        if not self.state.done:  # the end of the run will update this output
            self._display_ids.append(display_id)
        display(self._repr_mimebundle_(), raw=True, display_id=display_id)

    def __repr__(self) -> str:
        return f"<RunView of run {self.run_id!r}: {self.state.run_state.lower()}>"


__all__ = ["ReplayView", "RunView"]
