"""A run dispatched to the HTTP service for a workflow version no registered worker holds says so at once
(before: it waited for ever without a word — e.g. a definition a notebook session had given a version of its
own, ``auto-…``, sent to the service whose workers hold ``"1"``; found by the eighth session's vreview)."""

from __future__ import annotations

import warnings

import pytest

from fuseline_nb import FunctionStep, Workflow
from tests import http_workflows as flows
from tests.test_http_service import Service, service, wait_workers  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def _other_version() -> Workflow:
    return Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="http-branchy", version="auto-0000")


def test_a_version_no_worker_holds_warns_naming_what_they_hold(service: Service) -> None:  # noqa: F811
    client = service.start_broker()
    service.start_workers("tests.http_workflows:branchy")
    wait_workers(client, 1)
    with pytest.warns(UserWarning, match=r"waits: no worker registered with http://127\.0\.0\.1:\d+ holds workflow "
                                         r"'http-branchy' version 'auto-0000' \(its workers hold version\(s\) '1'\)"):
        run_id = client.dispatch_workflow(_other_version(), {})
    assert client.cancel_run(run_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a version a worker holds: nothing to say
        run_id = client.dispatch_workflow(flows.branchy.to_schema(), {"n": 3})
    assert client.cancel_run(run_id) in (True, False)


def test_no_worker_at_all_is_said_too(service: Service) -> None:  # noqa: F811
    client = service.start_broker()
    with pytest.warns(UserWarning, match=r"\(0 worker\(s\) registered, none with this workflow\)"):
        run_id = client.dispatch_workflow(flows.branchy.to_schema(), {"n": 3})
    assert client.cancel_run(run_id)


def test_the_run_id_comes_back_when_the_workers_cannot_be_asked() -> None:
    import httpx

    from fuseline_nb.broker.clients import HttpBrokerClient

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/workflow/dispatch":
            return httpx.Response(200, json={"v": 2, "run_id": "r1"})
        raise httpx.ConnectError("gone", request=request)  # the service went away after the dispatch

    client = HttpBrokerClient("http://broker:8000", retries=0, transport=httpx.MockTransport(answer))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert client.dispatch_workflow(_other_version(), {}) == "r1"
    client.close()
