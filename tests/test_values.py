"""Values made once: the Value type, counted serialisations, one history whatever the transport."""

from __future__ import annotations

import os
import pickle
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import fuseline_nb as fl
from fuseline_nb.broker import DuckDBBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.errors import ValueLoadError
from fuseline_nb.worker import ProcessEngine
from fuseline_nb.workflow.datafingerprint import data_fingerprint as fingerprint
from fuseline_nb.workflow.value import Value, preview
from tests import value_workflows as flows


class TestValue:
    def test_made_once_then_closed_across_a_pickle(self) -> None:
        v = Value.of({"rows": (0, 1, 2), "label": "demo"})
        back = pickle.loads(pickle.dumps(v))
        assert back == v and not back.loaded and back.preview == "{'rows': (0, 1, 2), 'label': 'demo'}"
        assert back.load() == {"rows": (0, 1, 2), "label": "demo"} and back.loaded

    @pytest.mark.parametrize(("obj", "has_json"), [
        (None, True), (True, True), (0, True), (-7, True), (2**53, True), (2**53 + 1, False), (10**30, False),
        (1.5, True), (-0.0, True), (float("nan"), False), (float("inf"), False), ("", True), ("left", True),
        ("é", True), ("\ud800", False), ("x" * 300, True), (b"", False), (b"abc", False), (1j, False),
        ((1, "a"), False), ([1.5, None], True), ({"a": 1}, True), ({1: 2}, False), ({"k": (1,)}, False),
        ({1, 2}, False),
    ])
    def test_a_value_carries_the_data_fingerprint_and_json_only_when_it_round_trips(
            self, obj: Any, has_json: bool) -> None:
        """The fingerprint a value is made with is the one ``data_fingerprint`` gives (the cache's key); its
        JSON text reads back as the same object, and there is none where it would not."""
        import json

        v = Value.of(obj)
        assert v.fingerprint == fingerprint(obj) and v.data == pickle.dumps(obj, protocol=5)
        assert (v.json is not None) == has_json, v.json
        if has_json:
            assert json.loads(v.json) == obj and type(json.loads(v.json)) is type(obj)

    def test_equal_data_has_equal_fingerprints(self) -> None:
        assert Value.of([1, 2]).fingerprint == Value.of([1, 2]).fingerprint != Value.of([2, 1]).fingerprint
        a = np.arange(12).reshape(3, 4)
        assert fingerprint(a.T) == fingerprint(np.ascontiguousarray(a.T)) != fingerprint(a)
        assert fingerprint(a.astype("int32")) != fingerprint(a)  # same numbers, other dtype

    def test_a_frame_is_hashed_from_its_buffers_with_a_rich_preview(self) -> None:
        df = pd.DataFrame({"i": range(8), "x": np.linspace(0, 1, 8)})
        v = Value.of(df)
        assert v.fingerprint == Value.of(df.copy()).fingerprint
        changed = df.copy()
        changed.loc[3, "x"] = 9.0
        assert Value.of(changed).fingerprint != v.fingerprint
        assert Value.of(df.rename(columns={"x": "y"})).fingerprint != v.fingerprint
        assert v.rich is not None and v.rich["shape"] == [8, 2]
        assert v.rich["dtypes"] == {"i": "int64", "x": "float64"}
        assert v.rich["html"].count("</tr>") == 1 + 5  # header and the first five rows

    def test_an_arrow_table_and_an_array_have_rich_previews(self) -> None:
        t = Value.of(pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]}))
        assert t.rich is not None and t.rich["shape"] == [3, 2] and "<td>&#x27;a&#x27;</td>" in t.rich["html"]
        assert t.fingerprint == Value.of(pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]})).fingerprint
        arr = Value.of(np.zeros((10, 3)))
        assert arr.rich is not None and arr.rich["shape"] == [10, 3] and arr.rich["dtypes"] == {"": "float64"}

    def test_a_value_that_cannot_be_opened_names_itself(self) -> None:
        v = Value(b"not a pickle", "0" * 32, "Model()", "Model")
        with pytest.raises(ValueLoadError, match=r"^a value \(a Model: Model\(\)\) cannot be unpickled in this "
                                                 r"process: UnpicklingError"):
            v.load()

    def test_an_unpicklable_object_is_refused_where_it_is_born(self) -> None:
        import threading

        with pytest.raises(TypeError, match=r"cannot pickle '_thread\.lock' object"):
            Value.of(threading.Lock())

    def test_previews_are_short_and_safe(self) -> None:
        assert len(preview("x" * 10_000)) <= 200 and preview(Value.of("abc")) == "'abc'"
        assert Value.of(b"x" * 2_000_000).preview == "<2000009 bytes: not previewed>"


def _counts(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(what, int(pid)) for what, pid in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.slow
def test_a_result_is_pickled_once_in_its_worker_and_never_in_the_kernel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = tmp_path / "counts"
    monkeypatch.setenv(flows.COUNT_ENV, str(counts))  # spawned workers inherit it
    with fl.Session(tmp_path / "h.duckdb", workers=2) as session:
        run = session.submit(flows.FAN_OUT)
        assert run.wait(timeout=60) == [3, 3, 3]
        session.broker.storage.flush()  # the history has the bytes: no pickling on the way
        seen = _counts(counts)
        kernel = os.getpid()
        dumps = [pid for what, pid in seen if what == "dump"]
        assert len(dumps) == 1 and dumps[0] != kernel, seen  # once, in the worker that ran Root
        loads = [pid for what, pid in seen if what == "load"]
        assert kernel not in loads and 1 <= len(loads) <= 3, seen  # only the readers' workers open it
        assert session.sql("SELECT result_preview FROM steps WHERE step = 'Root'").fetchall() == \
            [("Counted((0, 1, 2))",)]
        assert run.info().steps["Root"].result == flows.Counted((0, 1, 2))  # asked for: opened here
        after = _counts(counts)[len(seen):]
        assert after == [("load", kernel)], after


def _rows(broker: DuckDBBroker, run_id: str) -> dict[str, tuple[Any, ...]]:
    rows = broker.sql(
        """SELECT s.step, s.state, s.skip_reason, s.action, s.attempts, s.result_preview, s.error_type,
                  s.error_message, f.result_type, f.result_fingerprint, f.result_bytes
           FROM steps s JOIN fl_steps f USING (run_id, step) WHERE run_id = ? ORDER BY step""",
        [run_id]).fetchall()
    return {r[0]: r[1:] for r in rows}


def _story(broker: DuckDBBroker, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Each step's events in order, after checking the run's events: numbered 1..n once each, in causal order."""
    events = broker.events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), [(e.seq, e.kind) for e in events]
    at = {(e.kind, e.step): i for i, e in reversed(list(enumerate(events)))}  # the first of each
    for edge in flows.HISTORY.to_schema().edges:  # a step is queued after its source finished
        if ("step_queued", edge.target) in at:
            assert at[("step_finished", edge.source)] < at[("step_queued", edge.target)], edge
    assert events[0].kind == "run_dispatched" and events[-1].kind == "run_finished"
    story: dict[str, list[tuple[Any, ...]]] = {}
    for e in events:
        story.setdefault(e.step or "", []).append((e.kind, e.state, e.attempt))
    return story


def _results(broker: DuckDBBroker, run_id: str) -> dict[str, Any]:
    return {n: s.result for n, s in broker.get_run(run_id).steps.items()}


def _local(tmp: Path) -> tuple[Path, str]:
    path = tmp / "local.duckdb"
    with DuckDBBroker(path) as broker:
        client = LocalBrokerClient(broker)
        run_id = client.dispatch_workflow(flows.HISTORY.to_schema(), {"n": 4})
        ProcessEngine(client, [flows.HISTORY]).work()
    return path, run_id


def _pipe(tmp: Path) -> tuple[Path, str]:
    path = tmp / "pipe.duckdb"
    with fl.Session(path, workers=2) as session:
        run = session.submit(flows.HISTORY, {"n": 4})
        run.wait(timeout=60)
        return path, run.id


def _http(tmp: Path) -> tuple[Path, str]:
    from tests.test_http_service import Service, wait_run, wait_workers

    path = tmp / "http.duckdb"
    service = Service(tmp)
    try:
        client = service.start_broker("--db", str(path))
        service.start_workers("tests.value_workflows:HISTORY", processes=2)
        wait_workers(client, 1)
        run_id = client.dispatch_workflow(flows.HISTORY.to_schema(), {"n": 4})
        info = wait_run(client, run_id)
        assert info.state is fl.Status.SUCCEEDED, info
        over_http = {n: s.result for n, s in info.steps.items()}  # opened in this process, on request
        assert service.broker is not None
        assert service.stop(service.broker, signal.SIGTERM) == 0
    finally:
        service.close()
    with DuckDBBroker(path) as broker:
        _check_results(_results(broker, run_id))
    _check_results(over_http)
    return path, run_id


def _check_results(results: dict[str, Any]) -> None:
    frame = results["Frame"]
    assert isinstance(frame, pd.DataFrame) and frame.equals(
        pd.DataFrame({"i": list(range(4)), "label": [f"r{i}" for i in range(4)]}))
    assert results["Describe"] == {"rows": (0, 1, 2, 3), "label": "demo"}
    assert results["Route"] == "many" and results["Many"] == [1, 2, 3] and results["Few"] is None


@pytest.mark.slow
def test_the_history_is_the_same_whichever_transport_carried_the_values(tmp_path: Path) -> None:
    started = time.monotonic()
    runs = {"local": _local(tmp_path), "pipe": _pipe(tmp_path), "http": _http(tmp_path)}
    rows, results, stories = {}, {}, {}
    for name, (path, run_id) in runs.items():
        with DuckDBBroker(path) as broker:
            rows[name] = _rows(broker, run_id)
            stories[name] = _story(broker, run_id)
            results[name] = _results(broker, run_id)
            inputs = broker.sql("SELECT inputs_json FROM runs").fetchall()
            assert inputs == [('{"n": 4}',)], (name, inputs)
        _check_results(results[name])
    assert rows["local"]["Describe"][4] == "{'rows': (0, 1, 2, 3), 'label': 'demo'}"
    assert rows["local"]["Frame"][7] == "DataFrame" and rows["local"]["Few"][1] == "not_reached"
    assert rows["pipe"] == rows["local"] and rows["http"] == rows["local"], rows
    assert stories["pipe"] == stories["local"] and stories["http"] == stories["local"], stories
    assert time.monotonic() - started < 120


def test_condition_checks_travel_on_every_transport() -> None:
    """Every field of the messages (conditions included) crosses HTTP and the pipe unchanged."""
    from dataclasses import fields

    from fuseline_nb.broker import StepAssignment, StepReport
    from fuseline_nb.broker.wire import ReportRequest, StepAnswer
    from fuseline_nb.worker.channel import decode, encode

    checks = [{"dependency": "load", "value": 3, "passed": False}]
    report = StepReport("wf", "r1", "s", fl.Status.SKIPPED, Value.of({"a": (1, 2)}), 2, "E: x", "tb", "go",
                        1.5e9, 1.6e9, checks)
    assert all(getattr(report, f.name) != f.default for f in fields(report))  # no field left at its default
    sent = ReportRequest.model_construct(worker_id="w1", report=report).model_dump_json()
    over_http = ReportRequest.model_validate_json(sent).report
    over_pipe = decode(encode(("report", report)))[1]
    assert over_http == over_pipe == report and over_http.conditions == checks
    assert over_http.result.load() == {"a": (1, 2)} and not over_pipe.result.loaded

    a = StepAssignment("wf", "r1", "s", {"workflow_inputs": {"x": Value.of(1)}, "results": {"p": Value.of("v")},
                                         "winners": {"g": "p"}}, 1.0, 2.0, 3, "7", 9.5)
    assert all(getattr(a, f.name) != f.default for f in fields(a))
    over_http_a = StepAnswer.model_validate_json(StepAnswer.model_construct(next=a).model_dump_json()).next
    assert over_http_a == decode(encode(("step", a)))[1] == a
    assert (over_http_a.inputs, over_http_a.results, over_http_a.winners) == ({"x": 1}, {"p": "v"}, {"g": "p"})
