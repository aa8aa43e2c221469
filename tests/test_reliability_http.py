"""Issue 18, the HTTP edge and the CLI: bad requests are refused at the edge (422/409 naming the
field), and the service keeps answering and writing its history (real uvicorn on 127.0.0.1, a real
DuckDB file, the real ``fuseline-nb`` commands)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.test_http_service import CLI, ROOT, TOKEN, Service, _env

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _deep(n: int) -> object:
    v: object = 1
    for _ in range(n):
        v = {"a": v}
    return v


def _wf(wid: str = "edge", policies: list | None = None) -> dict:
    return {"workflow_id": wid, "steps": [{"name": "a", "policies": policies or []}]}


@pytest.fixture
def served(tmp_path: Path):
    s = Service(tmp_path)
    s.start_broker("--db", str(tmp_path / "h.duckdb"))
    yield s
    s.close()


def _post(s: Service, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(s.url + path, json=body, headers=headers or AUTH, timeout=10)


def _get(s: Service, path: str, **params: object) -> httpx.Response:
    return httpx.get(s.url + path, params=params, headers=AUTH, timeout=10)


def test_a_policy_config_nested_500_deep_is_refused_at_dispatch_and_registration(served: Service) -> None:
    policies = [{"name": "retry", "config": _deep(500)}]
    r = _post(served, "/workflow/dispatch", {"workflow": _wf(policies=policies)})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("workflow.steps[0].policies[0].config.a.a")
    assert r.json()["detail"].endswith("nested deeper than 64 levels")
    r = _post(served, "/worker/register", {"workflows": [_wf(policies=policies)]})
    assert r.status_code == 422 and r.json()["detail"].startswith("workflows[0].steps[0].policies[0]")
    a = _post(served, "/workflow/dispatch", {"workflow": _wf("after")})
    assert a.status_code == 200
    assert [w["workflow_id"] for w in _get(served, "/workflows").json()] == ["after"]


def test_an_input_nested_500_deep_is_refused_and_reads_keep_answering(served: Service) -> None:
    r = _post(served, "/workflow/dispatch",
              {"workflow": _wf(), "inputs": {"x": {"kind": "json", "value": _deep(500)}}})
    assert r.status_code == 422 and r.json()["detail"].startswith("inputs.x: value.a.a"), r.text
    ok = _post(served, "/workflow/dispatch", {"workflow": _wf(), "inputs": {"x": {"kind": "json",
                                                                                  "value": _deep(60)}}})
    assert ok.status_code == 200
    run_id = ok.json()["run_id"]
    wid = _post(served, "/worker/register", {"workflows": [_wf()]}).json()["worker_id"]
    assert _get(served, "/runs").status_code == 200
    assert _get(served, f"/runs/{run_id}").status_code == 200
    step = _get(served, "/workflow/step", worker_id=wid)
    assert step.status_code == 200 and step.json()["next"]["payload"]["workflow_inputs"]["x"]["kind"] == "pickle"


def test_a_report_with_a_time_out_of_range_is_422_and_the_history_stays_readable(served: Service,
                                                                                tmp_path: Path) -> None:
    run_id = _post(served, "/workflow/dispatch", {"workflow": _wf()}).json()["run_id"]
    wid = _post(served, "/worker/register", {"workflows": [_wf()]}).json()["worker_id"]
    a = _get(served, "/workflow/step", worker_id=wid).json()["next"]
    report = {"workflow_id": "w", "instance_id": run_id, "step_name": "a", "state": "SUCCEEDED", "attempt": a["attempt"],
              "result": {"kind": "json", "value": 1}, "started_at": -1e18, "finished_at": 1.7e9}
    r = _post(served, "/workflow/step", {"worker_id": wid, "report": report})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("report.started_at: -1e+18 is not a time between 0 and")
    r = _post(served, "/workflow/step", {"worker_id": wid, "report": {**report, "started_at": 1.7e9}})
    assert r.status_code == 200, r.text
    assert served.broker is not None
    assert served.stop(served.broker) == 0
    con = duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT step, state, started_at IS NOT NULL FROM steps").fetchall() == [
            ("a", "SUCCEEDED", True)]
    finally:
        con.close()


def test_a_reused_request_id_with_another_dispatch_is_409(served: Service) -> None:
    first = _post(served, "/workflow/dispatch", {"workflow": _wf(), "request_id": "q1"})
    again = _post(served, "/workflow/dispatch", {"workflow": _wf(), "request_id": "q1"})
    assert first.status_code == again.status_code == 200
    assert first.json()["run_id"] == again.json()["run_id"]  # a retry: the same run
    other = _post(served, "/workflow/dispatch", {"workflow": _wf(), "request_id": "q1",
                                                 "inputs": {"y": {"kind": "json", "value": 1}}})
    assert other.status_code == 409 and other.json()["error"] == "request_id_reused"
    assert f"already started run {first.json()['run_id']}" in other.json()["detail"]
    assert len(_get(served, "/runs").json()) == 1


def test_the_bearer_scheme_is_case_insensitive(served: Service) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        r = httpx.get(served.url + "/workers", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert r.status_code == 200, scheme
    r = httpx.get(served.url + "/workers", headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env={**_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


@pytest.mark.parametrize(("args", "env", "says"), [
    (("broker", "--port", "99999999"), {}, "fuseline-nb broker: --port must be between 0 and 65535"),
    (("broker", "--port", "0"), {"FUSELINE_NB_TOKEN": "   "}, "is only whitespace"),
    (("worker", "tests.http_workflows:branchy", "--broker", "ftp://x"), {},
     "fuseline-nb worker: --broker must be an http:// or https:// URL"),
])
def test_service_argument_errors_exit_2_with_one_line(args, env, says) -> None:
    done = _cli(*args, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and says in done.stderr, done.stderr


def test_run_with_negative_workers_exits_2_with_one_line() -> None:
    code = "import sys; from fuseline_nb.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "run", "tests.http_workflows:branchy",
                           "--workers", "-1"], env=_env(), capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "fuseline-nb run: --workers must be >= 1 (the worker processes that run the steps), not -1")
