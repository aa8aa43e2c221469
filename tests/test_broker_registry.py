"""Fuseline's broker API besides runs: repositories, listing workers, pruning silent workers,
the assignment lifecycle as ``broker._store`` shows it — on every broker storage, and over HTTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from fuseline_nb import FunctionStep, Status, Workflow
from fuseline_nb.broker import MemoryBroker, RepositoryInfo, StepReport
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.broker.http import create_app
from fuseline_nb.errors import UnknownWorkerError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _wf(wid: str = "reg") -> Workflow:
    return Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id=wid)


# -- repositories ----------------------------------------------------------------------------
def test_repositories_register_replace_and_page(make_broker: Any) -> None:
    broker = make_broker()
    assert broker.list_repositories(page=1) == []
    assert broker.get_repository("etl") is None
    for i in range(5):
        broker.register_repository(RepositoryInfo(f"r{i}", f"https://example.com/r{i}.git", [f"m{i}:wf"], {}))
    newer = RepositoryInfo("r1", "https://example.com/moved.git", ["m1:wf", "m1:other"], {"token": "t"})
    broker.register_repository(newer)  # same name: replaced, keeps its place
    assert broker.get_repository("r1") == newer
    assert [r.name for r in broker.list_repositories(page=1, page_size=2)] == ["r0", "r1"]
    assert [r.name for r in broker.list_repositories(page=3, page_size=2)] == ["r4"]
    assert broker.list_repositories(page=4, page_size=2) == []
    with pytest.raises(ValueError, match="page must be >= 1"):
        broker.list_repositories(page=0)
    with pytest.raises(TypeError, match="expected a RepositoryInfo"):
        broker.register_repository({"name": "r"})


def test_repository_info_refuses_odd_fields() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        RepositoryInfo("", "u", [], {})
    with pytest.raises(TypeError, match="workflows must be a list"):
        RepositoryInfo("r", "u", "pkg:wf", {})  # a bare string would be read as characters


def test_local_client_carries_repositories() -> None:
    client = LocalBrokerClient(MemoryBroker())
    repo = RepositoryInfo("r", "u", ["m:wf"], {"token": "x"})
    client.register_repository(repo)
    assert client.get_repository("r") == repo
    assert client.list_repositories() == [repo]


# -- workers ---------------------------------------------------------------------------------
def test_list_workers_reports_connection_and_last_task(make_broker: Any) -> None:
    clock = Clock()
    broker = make_broker(clock=clock)
    wf = _wf()
    wid = broker.register_worker([wf.to_schema()], "laptop")
    info = broker.list_workers()[0]
    assert (info.worker_id, info.name, info.connected_at, info.last_task) == (wid, "laptop", 1000.0, None)
    run_id = broker.dispatch_workflow(wf.to_schema())
    clock.now = 1005.0
    a = broker.get_step(wid)
    broker.report_step(wid, StepReport(a.workflow_id, run_id, a.step_name, Status.SUCCEEDED, 1, attempt=a.attempt))
    info = broker.list_workers()[0]
    assert info.last_seen == 1005.0 and info.connected_at == 1000.0
    assert (info.last_task.step_name, info.last_task.instance_id, info.last_task.success) == ("one", run_id, True)


def test_silent_idle_worker_is_pruned_busy_one_is_kept(make_broker: Any, caplog: Any) -> None:
    clock = Clock()
    broker = make_broker(clock=clock, worker_ttl=10, lease_seconds=60)
    wf = _wf()
    idle = broker.register_worker([wf.to_schema()], "idle")
    busy = broker.register_worker([wf.to_schema()], "busy")
    broker.dispatch_workflow(wf.to_schema())
    assert broker.get_step(busy) is not None
    clock.now += 5
    broker.keep_alive(idle)
    clock.now += 9  # idle last heard 9 s ago: kept
    assert {w.name for w in broker.list_workers()} == {"idle", "busy"}
    clock.now += 2  # 11 s: pruned; busy holds an assignment (its lease rules it): kept
    with caplog.at_level(logging.WARNING, logger="fuseline_nb.broker.core"):
        assert [w.name for w in broker.list_workers()] == ["busy"]
    assert f"worker {idle} pruned" in caplog.text
    assert broker.get_step(idle) is None  # as in Fuseline: a pruned worker is given nothing
    with pytest.raises(UnknownWorkerError, match=r"was pruned.*register it again"):
        broker.keep_alive(idle)


def test_pruning_is_off_by_default_and_ttl_is_checked(make_broker: Any) -> None:
    clock = Clock()
    broker = make_broker(clock=clock)
    wid = broker.register_worker([])
    clock.now += 10 * 24 * 3600
    assert [w.worker_id for w in broker.list_workers()] == [wid]
    with pytest.raises(ValueError, match="worker_ttl must be > 0"):
        MemoryBroker(worker_ttl=0)


def test_assignment_lifecycle_as_store_shows_it(make_broker: Any) -> None:
    clock = Clock()
    broker = make_broker(clock=clock, lease_seconds=60)
    wf = _wf("life")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema(), {"x": 1})
    store = broker._store
    assert store.get_assignment("life", run_id, "one") is None
    a = broker.get_step(wid)
    assert a.expires_at - a.assigned_at == pytest.approx(60.0)
    assert store.get_assignment("life", run_id, "one") == (wid, a.expires_at)
    assert store.get_state("life", run_id, "one") is Status.RUNNING
    broker.report_step(wid, StepReport("life", run_id, "one", Status.SUCCEEDED, 7, attempt=a.attempt))
    assert store.get_assignment("life", run_id, "one") is None
    assert (store.get_state("life", run_id, "one"), store.get_result("life", run_id, "one")) == (Status.SUCCEEDED, 7)
    assert store.get_inputs("life", run_id) == {"x": 1}
    assert store.get_state("other-workflow", run_id, "one") is None


def test_a_queued_name_the_workflow_lacks_is_dropped_with_a_warning(make_broker: Any, caplog: Any) -> None:
    broker = make_broker()
    wf = _wf("ghost")
    wid = broker.register_worker([wf.to_schema()])
    run_id = broker.dispatch_workflow(wf.to_schema())
    broker._store.enqueue("ghost", run_id, "no-such-step")
    a = broker.get_step(wid)
    assert a.step_name == "one"
    with caplog.at_level(logging.WARNING, logger="fuseline_nb.broker.core"):
        assert broker.get_step(wid) is None
    assert "dropping queue entry 'no-such-step'" in caplog.text and "no such step" in caplog.text
    broker.report_step(wid, StepReport("ghost", run_id, "one", Status.SUCCEEDED, 1, attempt=a.attempt))
    assert broker.get_run(run_id).state is Status.SUCCEEDED


# -- HTTP edge (the app in process; tests/test_http_service.py runs the real server) ---------
def _call(app: Any, method: str, path: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
            return await c.request(method, path, **kw)

    return asyncio.run(go())


def test_http_repository_routes_mask_credentials_and_validate() -> None:
    broker = MemoryBroker()
    app = create_app(broker, token="tok")
    auth = {"Authorization": "Bearer tok"}
    body = {"name": "etl", "url": "https://example.com/etl.git", "workflows": ["etl:wf"],
            "credentials": {"token": "s3cret"}}
    assert _call(app, "POST", "/repository/register", json=body).status_code == 401
    assert _call(app, "POST", "/repository/register", json=body, headers=auth).status_code == 204
    assert broker.get_repository("etl").credentials == {"token": "s3cret"}  # kept in the broker
    got = _call(app, "GET", "/repository", params={"name": "etl"}, headers=auth).json()
    assert got["credentials"] == {"token": "***"} and got["workflows"] == ["etl:wf"]
    missing = _call(app, "GET", "/repository", params={"name": "nope"}, headers=auth)
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_repository"
    assert [r["name"] for r in _call(app, "GET", "/repositories", headers=auth).json()] == ["etl"]
    assert _call(app, "GET", "/repositories", params={"page": 2}, headers=auth).json() == []
    bad = _call(app, "POST", "/repository/register", json={**body, "workflows": "etl:wf"}, headers=auth)
    assert bad.status_code == 422 and "workflows" in bad.json()["detail"]
    assert _call(app, "GET", "/repositories", params={"page": 0}, headers=auth).status_code == 422
