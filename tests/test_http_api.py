"""The HTTP broker app in-process (ASGI transport): auth, validation, errors, the step protocol."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pickle
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from fuseline_nb import FunctionStep, Status, Workflow
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.http import create_app
from fuseline_nb.broker.wire import WIRE_VERSION
from fuseline_nb.workflow.value import Value

VALUE = TypeAdapter(Value)


def encode_value(obj: Any) -> dict[str, Any]:
    """The JSON form of a value, as a worker sends it."""
    return VALUE.dump_python(Value.of(obj), mode="json")


def decode_value(wire: dict[str, Any]) -> Value:
    return VALUE.validate_json(json.dumps(wire))

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    """A synchronous face on the ASGI app (one event loop per request)."""

    def __init__(self, broker: MemoryBroker, **kw: Any) -> None:
        self.broker = broker
        self.app = create_app(broker, token=TOKEN, **kw)

    def __call__(self, method: str, path: str, *, auth: bool = True, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                headers = {**(AUTH if auth else {}), **kw.pop("headers", {})}
                return await c.request(method, path, headers=headers, **kw)

        return asyncio.run(go())


def _wf() -> Workflow:
    a = FunctionStep(lambda: "left", name="a")
    left = FunctionStep(lambda: 1, name="left")
    right = FunctionStep(lambda: 2, name="right")
    (a - "left") >> left
    (a - "right") >> right
    return Workflow(outputs=[left, right], workflow_id="api-wf")


@pytest.fixture
def api() -> Api:
    broker = MemoryBroker()
    yield Api(broker)
    broker.close()


def _register(api: Api, wf: Workflow) -> str:
    r = api("POST", "/worker/register", json={"workflows": [wf.to_schema().to_dict()], "name": "t"})
    assert r.status_code == 200, r.text
    return r.json()["worker_id"]


class TestAuth:
    def test_status_needs_no_token(self, api: Api) -> None:
        r = api("GET", "/status", auth=False)
        assert r.status_code == 200 and r.json()["api_version"] == WIRE_VERSION == 2

    @pytest.mark.parametrize("path", ["/workers", "/runs", "/workflows", "/runs/x"])
    def test_data_endpoints_need_the_token(self, api: Api, path: str) -> None:
        r = api("GET", path, auth=False)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] == "unauthorized" and "Authorization" in r.json()["detail"]

    def test_wrong_token_is_refused(self, api: Api) -> None:
        r = api("POST", "/worker/register", auth=False, headers={"Authorization": "Bearer nope"}, json={})
        assert r.status_code == 401 and "wrong token" in r.json()["detail"]

    def test_each_route_has_one_implementation_and_all_are_described(self, api: Api) -> None:
        """POST /workflow/step is served by the front alone, and the API description still has it."""
        routes = [(r.path, m) for r in api.app.routes for m in sorted(getattr(r, "methods", None) or ())]
        assert ("/workflow/step", "GET") in routes and ("/workflow/step", "POST") not in routes
        assert len(routes) == len(set(routes))
        doc = api("GET", "/openapi.json", auth=False).json()
        step = doc["paths"]["/workflow/step"]["post"]
        assert step["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ReportRequest"}
        report = doc["components"]["schemas"]["StepReport"]
        assert {"workflow_id", "instance_id", "step_name", "state", "result", "conditions"} <= set(report["properties"])
        assert report["properties"]["step_name"]["maxLength"] == 512  # the bound written in the dataclass

    def test_api_description_is_public_and_declares_bearer(self, api: Api) -> None:
        doc = api("GET", "/openapi.json", auth=False).json()
        assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert doc["paths"]["/workers"]["get"]["security"] == [{"bearer": []}]
        assert api("GET", "/docs", auth=False).status_code == 200


class TestBadInput:
    def test_malformed_json_is_400(self, api: Api) -> None:
        r = api("POST", "/worker/register", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_json"

    def test_wrong_field_is_422_naming_it(self, api: Api) -> None:
        wid = _register(api, _wf())
        body = {"worker_id": wid, "report": {"workflow_id": "api-wf", "instance_id": "r", "step_name": "a",
                                             "state": "DONE"}}
        r = api("POST", "/workflow/step", json=body)
        assert r.status_code == 422
        assert r.json()["detail"].startswith("report.state:")

    def test_missing_field_is_422_naming_it(self, api: Api) -> None:
        r = api("POST", "/worker/keep-alive", json={})
        assert r.status_code == 422 and "worker_id" in r.json()["detail"]

    def test_another_wire_version_is_422(self, api: Api) -> None:
        r = api("POST", "/worker/keep-alive", json={"v": 1, "worker_id": "w"})
        assert r.status_code == 422 and r.json()["detail"].startswith("v:")

    def test_unknown_field_is_422(self, api: Api) -> None:
        r = api("POST", "/worker/keep-alive", json={"worker_id": "w", "color": "red"})
        assert r.status_code == 422 and "color" in r.json()["detail"]

    def test_bad_base64_is_422(self, api: Api) -> None:
        body = {"workflow": _wf().to_schema().to_dict(), "inputs": {"x": {"kind": "pickle", "data": "@@@"}}}
        r = api("POST", "/workflow/dispatch", json=body)
        assert r.status_code == 422 and "inputs.x" in r.json()["detail"] and "base64" in r.json()["detail"]

    def test_nan_time_is_422(self, api: Api) -> None:
        wid = _register(api, _wf())
        body = json.dumps({"worker_id": wid, "report": {"workflow_id": "api-wf", "instance_id": "r", "step_name": "a",
                                                        "state": "FAILED", "started_at": 0}})
        body = body.replace('"started_at": 0', '"started_at": NaN')
        r = api("POST", "/workflow/step", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "report.started_at" in r.json()["detail"]

    def test_body_over_the_bound_is_413(self) -> None:
        broker = MemoryBroker()
        api = Api(broker, max_body=1000)
        said = "the request body is over 1000 bytes (the service's --max-body)"
        r = api("POST", "/worker/register", json={"workflows": [], "name": "x" * 2000})
        assert r.status_code == 413 and r.json()["detail"] == said

        async def chunks() -> Any:  # no Content-Length: the bound is met while the body arrives
            yield b'{"workflows": [], "name": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}'

        for path in ("/worker/register", "/workflow/step"):
            r = api("POST", path, content=chunks(), headers={"Content-Type": "application/json"})
            assert r.status_code == 413 and r.json() == {"error": "payload_too_large", "detail": said,
                                                         "errors": []}, (path, r.text)
        broker.close()

    def test_a_report_of_a_state_no_worker_reports_is_422(self, api: Api) -> None:
        wid = _register(api, _wf())
        body = {"worker_id": wid, "report": {"workflow_id": "api-wf", "instance_id": "r", "step_name": "a",
                                             "state": "RUNNING"}}
        r = api("POST", "/workflow/step", json=body)
        assert r.status_code == 422
        assert r.json()["detail"] == "report.state: a report says SUCCEEDED, FAILED or SKIPPED, not 'RUNNING'"

    @pytest.mark.parametrize(("mutate", "field"), [
        (lambda d: d["edges"].append({"source": "a", "target": "ghost"}), "workflow.edges[2].target"),
        (lambda d: d["edges"].append({"source": "left", "target": "a"}), "cycle"),
        (lambda d: d["steps"].append(dict(d["steps"][0])), "appears twice"),
        (lambda d: d["outputs"].append("ghost"), "workflow.outputs[2]"),
        (lambda d: d["steps"][0]["policies"].append({"name": "retry", "config": {"wait": "soon"}}),
         "workflow.steps[0].policies[0].config.wait"),
    ])
    def test_a_schema_the_broker_cannot_run_is_422(self, api: Api, mutate: Any, field: str) -> None:
        schema = _wf().to_schema().to_dict()
        mutate(schema)
        r = api("POST", "/workflow/dispatch", json={"workflow": schema})
        assert r.status_code == 422, r.text
        assert field in r.json()["detail"]

    def test_unknown_worker_is_404(self, api: Api) -> None:
        r = api("POST", "/worker/keep-alive", json={"worker_id": "ghost"})
        assert r.status_code == 404 and r.json()["error"] == "unknown_worker"
        assert api("GET", "/workflow/step", params={"worker_id": "ghost"}).status_code == 404

    def test_unknown_run_is_404(self, api: Api) -> None:
        r = api("GET", "/runs/ghost")
        assert r.status_code == 404 and r.json()["error"] == "unknown_run" and "'ghost'" in r.json()["detail"]

    def test_schema_mismatch_is_409(self, api: Api) -> None:
        _register(api, _wf())
        other = Workflow(outputs=[FunctionStep(lambda: 1, name="z")], workflow_id="api-wf").to_schema()
        r = api("POST", "/workflow/dispatch", json={"workflow": other.to_dict()})
        assert r.status_code == 409 and r.json()["error"] == "schema_mismatch"


class TestStepProtocol:
    def test_run_through_report_and_next(self, api: Api) -> None:
        wf = _wf()
        wid = _register(api, wf)
        assert api("GET", "/workflow/step", params={"worker_id": wid}).status_code == 204
        run_id = api("POST", "/workflow/dispatch",
                     json={"workflow": wf.to_schema().to_dict(), "inputs": {"k": encode_value((1, 2))}}).json()["run_id"]
        a = api("GET", "/workflow/step", params={"worker_id": wid}).json()["next"]
        assert (a["step_name"], a["attempt"], a["payload"]["workflow_inputs"]["k"]["kind"]) == ("a", 1, "pickle")
        report = {"workflow_id": "api-wf", "instance_id": run_id, "step_name": "a", "state": "SUCCEEDED", "attempt": 1,
                  "result": encode_value("left"), "action": "left"}
        nxt = api("POST", "/workflow/step", json={"worker_id": wid, "report": report, "next": True}).json()["next"]
        assert nxt["step_name"] == "left" and decode_value(nxt["payload"]["results"]["a"]).load() == "left"
        report = {"workflow_id": "api-wf", "instance_id": run_id, "step_name": "left", "state": "SUCCEEDED", "attempt": 1,
                  "result": encode_value({"n": 1})}
        assert api("POST", "/workflow/step", json={"worker_id": wid, "report": report, "next": True}).json() == {
            "v": 2, "next": None}
        run = api("GET", f"/runs/{run_id}").json()
        assert run["state"] == "SUCCEEDED"
        assert {n: s["state"] for n, s in run["steps"].items()} == {
            "a": "SUCCEEDED", "left": "SUCCEEDED", "right": "SKIPPED"}
        assert run["steps"]["left"]["result"] == encode_value({"n": 1})  # as the worker sent it
        assert api("GET", f"/runs/{run_id}", params={"steps": "false"}).json()["steps"] == {}
        assert [r["run_id"] for r in api("GET", "/runs").json()] == [run_id]
        assert api("GET", "/workflows").json()[0]["workflow_id"] == "api-wf"
        assert api("GET", "/workers").json()[0]["last_task"]["step_name"] == "left"

    def test_stale_report_is_409(self, api: Api) -> None:
        wf = _wf()
        wid = _register(api, wf)
        run_id = api("POST", "/workflow/dispatch", json={"workflow": wf.to_schema().to_dict()}).json()["run_id"]
        api("GET", "/workflow/step", params={"worker_id": wid})
        report = {"workflow_id": "api-wf", "instance_id": run_id, "step_name": "a", "state": "FAILED", "attempt": 7}
        r = api("POST", "/workflow/step", json={"worker_id": wid, "report": report})
        assert r.status_code == 409 and r.json()["error"] == "stale_report" and "attempt 7" in r.json()["detail"]

    def test_long_poll_answers_204_after_wait(self, api: Api) -> None:
        wid = _register(api, _wf())
        r = api("GET", "/workflow/step", params={"worker_id": wid, "wait": 0.3})
        assert r.status_code == 204

    def test_long_poll_wakes_when_a_step_is_queued(self) -> None:
        broker = MemoryBroker()
        app = create_app(broker, token=TOKEN)
        wf = _wf()
        wid = broker.register_worker([wf.to_schema()])

        async def go() -> tuple[int, float]:
            loop = asyncio.get_running_loop()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t",
                                         headers=AUTH) as c:
                t0 = loop.time()
                poll = asyncio.ensure_future(c.get("/workflow/step", params={"worker_id": wid, "wait": 10}))
                await asyncio.sleep(0.2)
                await loop.run_in_executor(None, broker.dispatch_workflow, wf.to_schema(), {})
                r = await poll
                return r.status_code, loop.time() - t0

        status, took = asyncio.run(go())
        broker.close()
        assert status == 200 and took < 2.0

    def test_dispatch_retried_with_its_request_id_starts_one_run(self, api: Api) -> None:
        body = {"workflow": _wf().to_schema().to_dict(), "request_id": "req-1"}
        first = api("POST", "/workflow/dispatch", json=body).json()["run_id"]
        assert api("POST", "/workflow/dispatch", json=body).json()["run_id"] == first
        assert len(api("GET", "/runs").json()) == 1


class TestPickles:
    def test_the_service_never_unpickles(self, api: Api, tmp_path: Any) -> None:
        canary = tmp_path / "unpickled"

        class Boom:
            def __reduce__(self) -> Any:
                return (os.system, (f"touch {canary}",))

        data = base64.b64encode(pickle.dumps(Boom())).decode()
        wf = _wf()
        body = {"workflow": wf.to_schema().to_dict(), "inputs": {"x": {"kind": "pickle", "data": data}}}
        run_id = api("POST", "/workflow/dispatch", json=body).json()["run_id"]
        held = api.broker.get_run(run_id).input_values["x"]
        assert isinstance(held, Value) and not held.loaded and not canary.exists()
        assert api("GET", f"/runs/{run_id}").json()["inputs"]["x"]["data"] == data
        wid = _register(api, wf)
        handed = api("GET", "/workflow/step", params={"worker_id": wid}).json()["next"]  # the assignment too
        assert handed["payload"]["workflow_inputs"]["x"]["data"] == data
        assert not canary.exists()

    def test_values_round_trip(self) -> None:
        for v in [None, 3, "s", [1, {"a": 2.5}], (1, 2), {1: "int key"}, 2**80, float("nan"), Status.FAILED]:
            w = json.loads(json.dumps(encode_value(v)))
            back = decode_value(w).load()
            assert (back == v) or (v != v and back != back), v
            assert type(back) is type(v)


class TestClientLogic:
    """HttpBrokerClient against httpx.MockTransport: retries, re-registration, prefetch."""

    def test_connection_failures_are_retried_then_raised(self) -> None:
        from fuseline_nb.broker.clients import HttpBrokerClient
        from fuseline_nb.errors import BrokerUnavailableError

        calls = []

        def refuse(request: httpx.Request) -> httpx.Response:
            calls.append(request.url.path)
            raise httpx.ConnectError("connection refused", request=request)

        client = HttpBrokerClient("http://b", retries=2, backoff=0.001, transport=httpx.MockTransport(refuse))
        with pytest.raises(BrokerUnavailableError, match=r"unreachable \(GET /status, 3 attempt\(s\)\)"):
            client.status()
        assert calls == ["/status"] * 3

    def test_a_forgotten_worker_registers_again_under_the_same_id(self) -> None:
        from fuseline_nb.broker.clients import HttpBrokerClient

        known: set[str] = set()
        seen: list[str] = []
        registrations = iter(range(1, 100))

        def service(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            if path == "/worker/register":
                wid = f"w{next(registrations)}"
                known.add(wid)
                return httpx.Response(200, json={"v": 2, "worker_id": wid})
            wid = json.loads(request.content)["worker_id"]
            seen.append(wid)
            if wid not in known:
                return httpx.Response(404, json={"error": "unknown_worker", "detail": f"unknown worker: {wid!r}"})
            return httpx.Response(204)

        client = HttpBrokerClient("http://b", transport=httpx.MockTransport(service))
        wid = client.register_worker([_wf().to_schema()])
        client.keep_alive(wid)
        known.clear()  # the broker restarted
        client.keep_alive(wid)
        client.keep_alive(wid)
        assert seen == ["w1", "w1", "w2", "w2"]

    def test_a_report_prefetches_the_next_step(self) -> None:
        from fuseline_nb.broker.base import StepAssignment, StepReport
        from fuseline_nb.broker.clients import HttpBrokerClient
        from fuseline_nb.broker.wire import StepAnswer

        nxt = StepAssignment("wf", "r", "b", {"workflow_inputs": {"x": (1, 2)}, "results": {"a": "left"},
                                              "winners": {}}, 0.0, 60.0, 1, "1")
        paths: list[str] = []

        def service(request: httpx.Request) -> httpx.Response:
            paths.append(f"{request.method} {request.url.path}")
            body = json.loads(request.content)
            assert body["next"] is True and body["report"]["action"] == "left"
            return httpx.Response(200, content=StepAnswer.model_construct(next=nxt).model_dump_json())

        client = HttpBrokerClient("http://b", transport=httpx.MockTransport(service))
        client.report_step("w1", StepReport("wf", "r", "a", Status.SUCCEEDED, "left", attempt=1))
        got = client.get_step("w1")  # no request: the report's answer carried it
        assert paths == ["POST /workflow/step"]
        assert (got.step_name, got.inputs, got.results) == ("b", {"x": (1, 2)}, {"a": "left"})


def test_cancel_route(api: Api):
    wf = _wf()
    wid = _register(api, wf)
    r = api("POST", "/workflow/dispatch", json={"workflow": wf.to_schema().to_dict()})
    run_id = r.json()["run_id"]
    assert api("GET", "/workflow/step", params={"worker_id": wid}).status_code == 200  # "a" runs
    r = api("POST", f"/runs/{run_id}/cancel", json={"reason": "stop"})
    assert r.status_code == 200, r.text
    assert r.json() == {"v": 2, "run_id": run_id, "cancelled": True, "state": "CANCELLED",
                        "message": f"run {run_id!r} cancelled"}
    r = api("POST", "/worker/keep-alive", json={"worker_id": wid})
    assert r.status_code == 200 and r.json() == {"v": 2, "cancelled": [[run_id, "a"]]}
    r = api("POST", f"/runs/{run_id}/cancel")  # no body; an ended run: a no-op that says so
    assert r.status_code == 200 and r.json()["cancelled"] is False
    assert "had already ended (CANCELLED): nothing to cancel" in r.json()["message"]
    r = api("POST", "/runs/nope/cancel", json={})
    assert r.status_code == 404 and r.json()["error"] == "unknown_run"
    r = api("POST", f"/runs/{run_id}/cancel", json={"reason": 5})
    assert r.status_code == 422
    assert api("POST", f"/runs/{run_id}/cancel", auth=False).status_code == 401


def test_an_impossible_and_join_is_refused_at_dispatch(api: Api):
    schema = {"workflow_id": "bad-join", "version": "1",
              "steps": [{"name": n} for n in ("g", "x", "y", "j")],
              "edges": [{"source": "g", "target": "x", "action": "a"}, {"source": "g", "target": "y", "action": "b"},
                        {"source": "x", "target": "j"}, {"source": "y", "target": "j"}]}
    r = api("POST", "/workflow/dispatch", json={"workflow": schema})
    assert r.status_code == 422, r.text
    assert "step 'j' can never run" in r.json()["detail"] and "(x | y) >> j" in r.json()["detail"]
