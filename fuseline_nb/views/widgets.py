"""Live run views: :class:`RunView` (and :class:`ReplayView`, from :mod:`.replay`).

A :class:`RunView` follows a run's events. From a broker in this kernel it
subscribes: the callback runs under the broker's lock, so it only appends
the event to a queue and wakes the view's own thread. From a broker client
without ``subscribe`` (an :class:`~fuseline_nb.broker.HttpBrokerClient`) the
thread long-polls ``events(run_id, after=seq, wait=...)``. The thread applies
what arrived at most ``1 / interval`` times a second (10 by default; the
update that shows the end of the run is not held back) and sends it as one
message (:class:`~fuseline_nb.views.front.RunWidget`). When the run ends the
thread pushes a last update and stops.

A view holds the broker, never the :class:`~fuseline_nb.Session`: a view
kept in IPython's ``Out`` does not keep a rebound session's workers alive.

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

from ..workflow.events import Event
from .draw import DEFAULT_MAX_NODES
from .front import RunWidget
from .replay import ReplayView

log = logging.getLogger(__name__)

#: Longest wait of one long-poll for events from a remote broker.
POLL_WAIT = 1.0


class RunView(RunWidget):
    """A live view of one run: coloured graph, progress, counts, steps table, timeline, step details.

    Click a node or a table row to see that step: inputs, result (tables with
    shape, dtypes and first rows), error with traceback, attempts, worker and
    times. The Cancel button stops the run (``broker.cancel_run``).

    Parameters
    ----------
    broker:
        The broker holding the run, or a client of one (an
        :class:`~fuseline_nb.broker.HttpBrokerClient` watches a run on the
        broker service); a Session, whose ``.broker`` is used, works too.
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
    >>> view.join(timeout=10), view.state.run_state, view.codes
    (True, 'SUCCEEDED', 'S')
    >>> view.close()
    """

    def __init__(self, broker: Any, run_id: str, *, interval: float = 0.1,
                 max_nodes: int = DEFAULT_MAX_NODES, max_rows: int = 50, rankdir: str = "LR") -> None:
        self.interval = float(interval)
        self.updates = 0  # pushes made by the view's thread
        self._buffer: collections.deque[Event] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._hurry = threading.Event()  # set when the run ends or the view closes
        self._thread: threading.Thread | None = None
        self._display_ids: list[str] = []  # outputs to give the final snapshot
        self._run_id = run_id
        from .panel import broker_of

        source = broker_of(broker)
        subscribe = getattr(source, "subscribe", None)
        self._unsubscribe: Callable[[], None] | None = subscribe(self._on_event) if callable(subscribe) else None
        self._polling = self._unsubscribe is None
        try:
            super().__init__(source, run_id, max_nodes=max_nodes, max_rows=max_rows, rankdir=rankdir,
                             can_cancel=callable(getattr(source, "cancel_run", None)))
        except Exception:
            self._drop_subscription()
            raise
        self.on_msg(self._on_message)
        self._drain()
        self._push()
        if self.state.done:
            self._drop_subscription()
        else:
            self._thread = threading.Thread(target=self._loop, daemon=True, name=f"fuseline-runview-{run_id[:8]}")
            self._thread.start()

    # -- the broker side: record and wake, nothing else --------------------------------
    def _on_event(self, event: Event) -> None:
        if event.run_id == self._run_id:
            self._buffer.append(event)
            if not self._wake.is_set():  # setting takes a lock: skip it when already set
                self._wake.set()
            if event.kind == "run_finished":
                self._hurry.set()

    def _drop_subscription(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def _poll(self) -> None:
        """Fetch the run's next events from a broker without ``subscribe`` (long-poll)."""
        try:
            events = self.broker.events(self.run_id, after=self.state.seq, wait=POLL_WAIT)
        except Exception as exc:
            log.warning("run view of %s: could not fetch events: %s", self.run_id, exc)
            self.notice = f"lost contact with the broker: {type(exc).__name__}: {exc}"
            self._stop.wait(POLL_WAIT)
            return
        if self.notice.startswith("lost contact"):
            self.notice = ""
        for e in events:
            self._on_event(e)

    # -- the view's thread -------------------------------------------------------------------
    def _loop(self) -> None:
        next_at = time.monotonic() + self.interval  # the constructor has just shown the run
        try:
            while not self._stop.is_set():
                if self._polling:
                    self._poll()
                elif not self._wake.wait(timeout=0.5):
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
                if self.tab == "timeline" and (self.state.done or time.monotonic() - self._timeline_at > 1.0):
                    self.refresh_timeline()
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
        known = self.workers
        if any(s.worker and s.worker not in known for s in rs.steps.values()):
            for w in self.broker.list_workers():
                known[w.worker_id] = known[w.name or w.worker_id] = w.name or w.worker_id
        self.show(rs)
        self.updates += 1

    # -- the Cancel button ---------------------------------------------------------------------
    def _on_message(self, _: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("kind") == "cancel":
            self.cancel()

    def cancel(self) -> None:
        """Cancel the run (what the Cancel button does); the view shows it end CANCELLED."""
        cancel_run = getattr(self.broker, "cancel_run", None)
        if not callable(cancel_run):
            self.notice = f"this broker ({type(self.broker).__name__}) cannot cancel runs"
            return
        self.cancelling = True
        try:
            cancel_run(self.run_id)
        except Exception as exc:
            self.cancelling = False
            self.notice = f"could not cancel run {self.run_id}: {type(exc).__name__}: {exc}"

    # -- public ----------------------------------------------------------------------------------
    def join(self, timeout: float | None = None) -> bool:
        """Wait until the view has shown the end of the run; return whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.state.done

    def close(self) -> None:
        """Stop following the run and close the widget."""
        self._stop.set()
        self._hurry.set()
        self._wake.set()
        self._drop_subscription()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 + POLL_WAIT)
        super().close()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display_id = uuid.uuid4().hex
        if not self.state.done:  # the end of the run will update this output
            self._display_ids.append(display_id)
        display(self._repr_mimebundle_(), raw=True, display_id=display_id)

    def __repr__(self) -> str:
        return f"<RunView of run {self.run_id!r}: {self.state.run_state.lower()}>"


__all__ = ["ReplayView", "RunView"]
