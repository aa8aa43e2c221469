"""RunView and ReplayView, checked on what they send through a recording comm.

The comm is the only stand-in: the broker, the engine and the view's thread
are real. What a frontend would receive is what the comm recorded.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import comm
import pytest

import fuseline_nb as fl
from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.errors import UnknownRunError
from fuseline_nb.views.palette import FILL
from fuseline_nb.worker import ProcessEngine

pytestmark = pytest.mark.needs_dot  # the views are checked on the SVG that dot lays out


class RecordingComm:
    """Records every message a widget sends, with the time it was sent."""

    kernel = "recording"

    def __init__(self, **kwargs: Any) -> None:
        self.comm_id = kwargs.get("comm_id") or uuid.uuid4().hex
        self.opened_with = kwargs.get("data")
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self._handler: Any = None

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, callback: Any) -> None:
        self._handler = callback

    def send(self, data: Any = None, buffers: Any = None, **kwargs: Any) -> None:
        self.sent.append((time.monotonic(), data))

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def receive(self, state: dict[str, Any]) -> None:
        """Deliver a frontend update (as when the user picks a value)."""
        self._handler({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                       "buffers": []})

    def updates(self, key: str | None = None) -> list[tuple[float, dict[str, Any]]]:
        return [(t, d["state"]) for t, d in self.sent
                if d and d.get("method") == "update" and (key is None or key in d["state"])]

    def last(self, key: str) -> Any:
        found = self.updates(key)
        return found[-1][1][key] if found else self.opened_with["state"][key]


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    made: list[RecordingComm] = []

    def create_comm(**kwargs: Any) -> RecordingComm:
        c = RecordingComm(**kwargs)
        made.append(c)
        return c

    monkeypatch.setattr(comm, "create_comm", create_comm)
    return made


def boom() -> int:
    raise ValueError("boom: bad input")


def four_outcomes() -> Workflow:
    """A workflow whose run has SUCCEEDED, SKIPPED, FAILED and CANCELLED steps."""
    start = FunctionStep(lambda: "ok", name="start")
    good = FunctionStep(lambda: 42, name="good")
    never = FunctionStep(lambda: 0, name="never")
    bad = FunctionStep(boom)
    after = FunctionStep(lambda: 1, name="after_boom")
    _ = (start - "ok") >> good
    _ = (start - "other") >> never
    _ = bad >> after
    return Workflow(outputs=[good, after], workflow_id="four")


def run_in_thread(broker: MemoryBroker, wf: Workflow) -> threading.Thread:
    engine = ProcessEngine(LocalBrokerClient(broker), [wf])
    t = threading.Thread(target=engine.work, daemon=True)
    t.start()
    return t


def sent_html(view: Any) -> str:
    """Everything the view's HTML widgets last sent."""
    p = view.panel
    return "".join(w.comm.last("value") for w in (p.header, p.counts, p.graph, p.table, view.detail))


class TestLiveView:
    def test_a_run_with_four_outcomes_reaches_the_frontend(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        view = fl.RunView(broker, run_id)
        run_in_thread(broker, wf).join(10)
        assert view.join(timeout=10)
        html = sent_html(view)
        for state in ("succeeded", "skipped", "failed", "cancelled"):
            assert f">{state} " in view.panel.counts.comm.last("value"), state
            assert f">{state}</span>" in view.panel.table.comm.last("value"), state
        graph = view.panel.graph.comm.last("value")
        assert graph.count(f'fill="{FILL["SUCCEEDED"]}"') == 2  # start, good
        for state in ("SKIPPED", "FAILED", "CANCELLED"):
            assert graph.count(f'fill="{FILL[state]}"') == 1, state
        assert "<?xml" not in graph
        assert "1 failed" not in html  # counts read "failed 1"
        progress = view.panel.progress.comm
        assert progress.last("value") == 5 and progress.last("bar_style") == "danger"
        view.close()

    def test_a_failed_step_is_selected_and_shows_error_and_traceback(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        view = fl.RunView(broker, run_id)
        run_in_thread(broker, wf).join(10)
        view.join(timeout=10)
        assert view.select.options[view.select.comm.last("index")] == "boom"
        detail = view.detail.comm.last("value")
        assert "ValueError: boom: bad input" in detail
        assert "Traceback (most recent call last)" in detail and "in boom" in detail
        view.close()

    def test_choosing_a_step_in_the_frontend_shows_its_inputs_and_result(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema(), {"size": [1, 2, 3]})
        run_in_thread(broker, wf).join(10)
        view = fl.RunView(broker, run_id)  # the run has ended: no thread needed
        view.select.comm.receive({"index": view.select.options.index("good")})
        detail = view.detail.comm.last("value")
        assert "<b>result</b> <code>42</code>" in detail
        assert "input size</code> = <code>[1, 2, 3]</code>" in detail
        assert "from start</code> = <code>&#x27;ok&#x27;</code>" in detail
        assert "Traceback" not in detail
        view.close()

    def test_2000_step_run_sends_at_most_about_12_updates_per_second(self, comms, tmp_path, monkeypatch):
        def tick() -> int:
            time.sleep(0.001)
            return 1

        chains = []
        for c in range(100):
            prev = FunctionStep(tick, name=f"c{c}_0")
            for i in range(1, 20):
                nxt = FunctionStep(tick, name=f"c{c}_{i}")
                _ = prev >> nxt
                prev = nxt
            chains.append(prev)
        wf = Workflow(outputs=chains, workflow_id="wide")
        assert len(wf) == 2000
        broker = MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        view = fl.RunView(broker, run_id)
        monkeypatch.setenv("PATH", str(tmp_path))  # from here on any dot call would fail
        start = time.monotonic()
        run_in_thread(broker, wf).join(120)
        assert view.join(timeout=10)
        elapsed = time.monotonic() - start
        assert elapsed > 1.5  # long enough to measure a rate
        widgets = [view.panel.graph, view.panel.table, view.panel.counts, view.panel.progress, view.panel.header]
        for w in widgets:
            times = [t for t, _ in w.comm.updates()]
            busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
            assert busiest <= 12, (type(w).__name__, busiest)
        graph_updates = len(view.panel.graph.comm.updates("value"))
        assert graph_updates >= 3  # it did follow the run
        assert view.updates <= 12 * elapsed + 2
        final = view.panel.graph.comm.last("value")
        assert "<svg" in final and final.count(f'fill="{FILL["SUCCEEDED"]}"') == 151  # 150 steps + the fold; no dot
        assert "… 1,850 more steps" in final
        assert view.panel.progress.comm.last("value") == 2000
        view.close()

    def test_unknown_run_is_refused_and_nothing_stays_subscribed(self, comms):
        broker = MemoryBroker()
        with pytest.raises(UnknownRunError, match="unknown run: 'nope'"):
            fl.RunView(broker, "nope")
        assert not broker._hub.has_subscribers

    def test_a_session_like_object_is_accepted(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        run_in_thread(broker, wf).join(10)

        class FakeSession:
            def __init__(self, b: MemoryBroker) -> None:
                self.broker = b

        view = fl.RunView(FakeSession(broker), run_id)
        assert view.broker is broker and view.state.run_state == "FAILED"
        view.close()

    def test_fallback_for_frontends_without_widgets(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        run_in_thread(broker, wf).join(10)
        view = fl.RunView(broker, run_id)
        bundle = view._repr_mimebundle_()
        assert set(bundle) == {"application/vnd.jupyter.widget-view+json", "text/plain", "text/html"}
        assert "<svg" in bundle["text/html"] and "ValueError: boom: bad input" in bundle["text/html"]
        text = bundle["text/plain"]
        assert f"run {run_id} of four: failed, 5/5 steps done" in text
        assert "succeeded 2, failed 1, cancelled 1, skipped 1" in text
        assert "after_boom  cancelled" in text
        view.close()

    def test_close_stops_the_thread_and_unsubscribes(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        view = fl.RunView(broker, run_id)
        assert view._thread is not None and view._thread.is_alive()
        view.close()
        assert not view._thread.is_alive() and not broker._hub.has_subscribers

    def test_without_dot_the_graph_shows_dot_text_and_the_rest_still_works(self, comms, tmp_path,
                                                                           monkeypatch):
        monkeypatch.setenv("PATH", str(tmp_path))
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        run_in_thread(broker, wf).join(10)
        view = fl.RunView(broker, run_id)
        graph = view.panel.graph.comm.last("value")
        assert "apt-get install graphviz" in graph and "digraph four {" in graph
        assert "failed 1" in view.panel.counts.comm.last("value")
        view.close()


class TestReplay:
    def test_slider_scrubs_through_the_events(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        run_in_thread(broker, wf).join(10)
        replay = fl.ReplayView(broker, run_id)
        n = len(broker.events(run_id))
        assert replay.slider.max == n and replay.slider.value == n
        assert replay.state.counts()["FAILED"] == 1
        replay.slider.comm.receive({"value": 0})
        assert replay.state.counts()["PENDING"] == 5
        assert f'fill="{FILL["FAILED"]}"' not in replay.panel.graph.comm.last("value")
        assert "before the run" in replay.moment.comm.last("value")
        replay.slider.comm.receive({"value": n})
        assert f'fill="{FILL["FAILED"]}"' in replay.panel.graph.comm.last("value")
        assert f"event {n}/{n}" in replay.moment.comm.last("value")
        assert "run finished" in replay.moment.comm.last("value")
        replay.close()

    def test_every_position_matches_the_events_so_far(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        run_in_thread(broker, wf).join(10)
        events = broker.events(run_id)
        replay = fl.ReplayView(broker, run_id)
        for k in (3, 7, 2, len(events)):  # forward, forward, back, end
            replay.slider.value = k
            started = {e.step for e in events[:k] if e.kind == "step_started"}
            finished = {e.step for e in events[:k] if e.kind == "step_finished"}
            running = {n for n, s in replay.state.steps.items() if s.state == "RUNNING"}
            assert running == started - finished, k
        replay.close()

    def test_a_run_from_an_earlier_session_replays_from_the_duckdb_file(self, comms, tmp_path):
        from fuseline_nb.broker import DuckDBBroker

        path = tmp_path / "history.duckdb"
        wf, first = four_outcomes(), DuckDBBroker(path)
        run_id = first.dispatch_workflow(wf.to_schema())
        run_in_thread(first, wf).join(10)
        n = len(first.events(run_id))
        first.close()
        reopened = DuckDBBroker(path)  # a new broker: everything comes from the file
        try:
            replay = fl.ReplayView(reopened, run_id)
            assert len(replay.events) == n and replay.state.run_state == "FAILED"
            assert "failed 1" in replay.panel.counts.comm.last("value")
            replay.slider.comm.receive({"value": 1})
            assert replay.state.counts()["PENDING"] == 5
            view = fl.RunView(reopened, run_id)
            assert view.state.counts()["CANCELLED"] == 1 and view._thread is None
            view.close()
            replay.close()
        finally:
            reopened.close()
