"""RunView, ReplayView and GroupView, checked on what they send through a recording comm.

The comm is the only stand-in: the broker, the engine and the view's thread
are real. What a frontend would receive is what the comm recorded.
"""

from __future__ import annotations

import json
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


def sent_state(view: Any) -> dict[str, Any]:
    """The widget state a frontend holds now: what it was opened with, then every update."""
    c = view.comm
    state = dict(c.opened_with["state"])
    for _, update in c.updates():
        state.update(update)
    return state


def update_sizes(view: Any) -> list[int]:
    """Bytes of each update message after the widget was opened (the layout goes with the open)."""
    return [len(json.dumps(d, separators=(",", ":"))) for _, d in view.comm.sent
            if d and d.get("method") == "update"]


def busiest_second(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


class TestLiveView:
    def test_a_run_with_four_outcomes_reaches_the_frontend(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        view = fl.RunView(broker, run_id)
        run_in_thread(broker, wf).join(10)
        assert view.join(timeout=10)
        state = sent_state(view)
        steps = state["node_steps"]
        codes = dict(zip(steps, state["codes"], strict=True))
        assert codes == {"start": "S", "good": "S", "never": "K", "boom": "F", "after_boom": "C"}
        assert state["counts"] == {"S": 2, "K": 1, "F": 1, "C": 1}
        assert state["done"] == 5 and state["total"] == 5 and state["run_state"] == "FAILED"
        assert {r[0]: r[1] for r in state["rows"]} == codes
        assert all(r[3] == "w1" for r in state["rows"] if r[1] in "SF")  # the worker's name
        # the layout went once, with the open: no update carries SVG
        assert "<svg" in view.comm.opened_with["state"]["svg"]
        assert not view.comm.updates("svg") and not view.comm.updates("node_ids")
        for node_id in state["node_ids"]:
            assert f'id="{node_id}"' in state["svg"]  # the browser finds each node by id
        view.close()

    def test_a_failed_step_is_selected_and_shows_error_and_traceback(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        view = fl.RunView(broker, run_id)
        run_in_thread(broker, wf).join(10)
        view.join(timeout=10)
        state = sent_state(view)
        assert state["selected"] == "boom"
        assert "ValueError: boom: bad input" in state["detail"]
        assert "Traceback (most recent call last)" in state["detail"] and "in boom" in state["detail"]
        view.close()

    def test_clicking_a_node_shows_its_inputs_result_worker_and_times(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema(), {"size": [1, 2, 3]})
        run_in_thread(broker, wf).join(10)
        view = fl.RunView(broker, run_id)  # the run has ended: no thread needed
        view.comm.receive({"selected": "good"})  # what the browser sends on a click
        detail = sent_state(view)["detail"]
        assert "<b>result</b> <code>42</code>" in detail
        assert "input size</code> = <code>[1, 2, 3]</code>" in detail
        assert "from start</code> = <code>&#x27;ok&#x27;</code>" in detail
        assert "on <code>w1</code>" in detail and "started " in detail and "finished " in detail
        assert "Traceback" not in detail
        view.close()

    def test_a_dataframe_result_shows_shape_dtypes_and_first_rows(self, comms):
        pd = pytest.importorskip("pandas")

        def table() -> Any:
            return pd.DataFrame({"a": range(1000), "b": [x / 2 for x in range(1000)]})

        wf = Workflow(outputs=[FunctionStep(table)], workflow_id="df")
        broker = MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        run_in_thread(broker, wf).join(10)
        view = fl.RunView(broker, run_id)
        view.comm.receive({"selected": "table"})
        detail = sent_state(view)["detail"]
        assert "DataFrame 1,000 × 2 (first 5 rows)" in detail
        assert "<code>a</code> int64" in detail and "<code>b</code> float64" in detail
        assert detail.count("<tr") == 6  # header and five rows
        view.close()

    def test_a_running_step_shows_when_it_started_for_the_browser_to_tick(self, comms):
        started, release = threading.Event(), threading.Event()

        def slow() -> int:
            started.set()
            release.wait(10)
            return 1

        wf = Workflow(outputs=[FunctionStep(slow)], workflow_id="slow")
        broker = MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        view = fl.RunView(broker, run_id)
        worker = run_in_thread(broker, wf)
        assert started.wait(10)
        view.comm.receive({"selected": "slow"})
        since = broker.get_run(run_id).steps["slow"].started_at
        deadline = time.monotonic() + 5
        while sent_state(view)["rows"][0][5] is None and time.monotonic() < deadline:
            view._wake.wait(0.05)
        state = sent_state(view)
        assert state["rows"][0][1] == "R" and state["rows"][0][5] == since
        assert f'data-since="{since!r}"' in state["detail"] and abs(state["clock"] - time.time()) < 5
        release.set()
        worker.join(10)
        assert view.join(timeout=10)
        view.close()

    def test_2000_step_run_sends_few_small_updates(self, comms, tmp_path, monkeypatch):
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
        times = [t for t, _ in view.comm.updates()]
        assert len(times) >= 3  # it did follow the run
        assert busiest_second(times) <= 12
        sizes = update_sizes(view)
        assert max(sizes) <= 4096, max(sizes)
        state = sent_state(view)
        assert len(state["codes"]) == 151 and set(state["codes"]) == {"S"}  # 150 steps + the fold
        assert "… 1,850 more steps" in state["svg"]
        assert state["done"] == 2000 and state["counts"] == {"S": 2000}
        view.close()

    def test_8_step_run_updates_are_under_1_kb(self, comms):
        from fuseline_nb.examples import tour

        broker = MemoryBroker()
        run_id = broker.dispatch_workflow(tour.to_schema(), {"n": 5, "delay": 0.01})
        view = fl.RunView(broker, run_id, interval=0.02)
        run_in_thread(broker, tour).join(30)
        assert view.join(timeout=10)
        sizes = update_sizes(view)
        assert len(sizes) >= 2 and max(sizes) <= 1024, sizes
        view.close()

    def test_the_cancel_button_ends_the_run_cancelled(self, comms):
        started, release = threading.Event(), threading.Event()

        def slow() -> int:
            started.set()
            release.wait(10)
            return 1

        first = FunctionStep(slow)
        later = FunctionStep(lambda: 2, name="later")
        _ = first >> later
        wf = Workflow(outputs=[later], workflow_id="long")
        broker = MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        view = fl.RunView(broker, run_id)
        assert sent_state(view)["can_cancel"] is True
        worker = run_in_thread(broker, wf)
        assert started.wait(10)
        # what the browser sends when Cancel is pressed
        view.comm._handler({"content": {"data": {"method": "custom", "content": {"kind": "cancel"}}},
                            "buffers": []})
        assert view.join(timeout=10)
        release.set()
        worker.join(10)
        state = sent_state(view)
        assert state["run_state"] == "CANCELLED" and state["cancelling"] is False
        assert dict(zip(state["node_steps"], state["codes"], strict=True))["later"] == "C"
        assert state["notice"] == ""
        view.close()

    def test_the_timeline_tab_draws_a_bar_per_attempt(self, comms):
        pytest.importorskip("vl_convert")
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        run_in_thread(broker, wf).join(10)
        view = fl.RunView(broker, run_id)
        assert sent_state(view)["timeline"] == ""  # drawn only when asked for
        view.comm.receive({"tab": "timeline"})
        svg = sent_state(view)["timeline"]
        assert svg.startswith("<svg") and "seconds since the run started" in svg and "w1" in svg
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
        html = bundle["text/html"]
        assert "<svg" in html and "ValueError: boom: bad input" in html
        assert html.count(f'fill="{FILL["SUCCEEDED"]}"') == 2
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
        state = sent_state(view)
        assert "apt-get install graphviz" in state["svg"] and "digraph four {" in state["svg"]
        assert state["counts"]["F"] == 1
        view.close()


class TestReplay:
    def test_slider_scrubs_through_the_events(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        run_in_thread(broker, wf).join(10)
        replay = fl.ReplayView(broker, run_id)
        n = len(broker.events(run_id))
        state = sent_state(replay)
        assert state["positions"] == n and state["position"] == n
        assert replay.state.counts()["FAILED"] == 1
        replay.comm.receive({"position": 0})
        assert replay.state.counts()["PENDING"] == 5
        state = sent_state(replay)
        assert set(state["codes"]) == {"P"} and "before the run" in state["moment"]
        replay.comm.receive({"position": n})
        state = sent_state(replay)
        assert "F" in state["codes"] and f"event {n}/{n}" in state["moment"]
        assert "run finished" in state["moment"]
        replay.close()

    def test_every_position_matches_the_events_so_far(self, comms):
        wf, broker = four_outcomes(), MemoryBroker()
        run_id = broker.dispatch_workflow(wf.to_schema())
        run_in_thread(broker, wf).join(10)
        events = broker.events(run_id)
        replay = fl.ReplayView(broker, run_id)
        for k in (3, 7, 2, len(events)):  # forward, forward, back, end
            replay.position = k
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
            assert sent_state(replay)["counts"]["F"] == 1
            assert {r[3] for r in sent_state(replay)["rows"] if r[1] in "SF"} == {"w1"}  # names, not ids
            replay.comm.receive({"position": 1})
            assert replay.state.counts()["PENDING"] == 5
            view = fl.RunView(reopened, run_id)
            assert view.state.counts()["CANCELLED"] == 1 and view._thread is None
            view.close()
            replay.close()
        finally:
            reopened.close()


class TestGroup:
    def test_a_row_per_run_and_a_click_opens_that_runs_view(self, comms):
        from fuseline_nb.rungroup import RunGroup
        from fuseline_nb.views.group import GroupView

        wf, broker = four_outcomes(), MemoryBroker()

        class Held:  # what a Run gives a group view: id, info(), view()
            def __init__(self, run_id: str) -> None:
                self.id = run_id

            def info(self) -> Any:
                return broker.get_run(self.id)

            def view(self) -> Any:
                return fl.RunView(broker, self.id)

        ids = [broker.dispatch_workflow(wf.to_schema(), {"k": k}) for k in range(3)]
        run_in_thread(broker, wf).join(20)
        view = GroupView(RunGroup([Held(i) for i in ids]))  # type: ignore[list-item]
        rows = view.table.comm.last("rows") if view.table.comm.updates("rows") else view.table.rows
        assert [r[0] for r in rows] == ids and {r[1] for r in rows} == {"FAILED"}
        assert all(r[2] == r[3] == 5 and r[4] is not None for r in rows)
        assert rows[1][5] == "k=1"  # the input's own preview, not a Value's repr
        assert view.table.summary == "3 runs: failed 3"
        bundle = view._repr_mimebundle_()  # what a saved notebook shows where widgets do not render
        assert bundle["text/plain"].splitlines()[0] == "3 runs: failed 3"
        assert f"{ids[1][:8]}  failed     5/5" in bundle["text/plain"] and "k=1" in bundle["text/plain"]
        assert "GroupView(" not in bundle["text/plain"] and "<td>k=2</td>" in bundle["text/html"]
        view.table.comm.receive({"selected": 1})  # a click on the second row
        assert isinstance(view.run_view, fl.RunView) and view.run_view.run_id == ids[1]
        assert view.children == (view.table, view.run_view)
        view.close()
