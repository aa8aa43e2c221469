"""A live view and a replay of a run on the HTTP broker service (real server and worker on 127.0.0.1).

The view reaches the run only through an ``HttpBrokerClient``: it long-polls
``GET /runs/{id}/events?after=SEQ&wait=S``.
"""

from __future__ import annotations

import time

import pytest

import fuseline_nb as fl
from fuseline_nb import Status
from tests import http_workflows as flows
from tests.test_http_service import Service, wait_run, wait_workers
from tests.test_views_widgets import busiest_second, comms, sent_state  # noqa: F401 - comms is a fixture

pytestmark = [pytest.mark.slow, pytest.mark.needs_dot]


@pytest.fixture
def service(tmp_path):
    s = Service(tmp_path)
    yield s
    s.close()


def test_events_route_long_polls_and_pages(service: Service) -> None:
    client = service.start_broker()
    run_id = client.dispatch_workflow(flows.chain.to_schema(), {"delay": 0.0})
    first = client.events(run_id)
    assert [e.kind for e in first[:2]] == ["run_dispatched", "step_queued"]
    last = first[-1].seq
    started = time.monotonic()
    assert client.events(run_id, after=last, wait=0.5) == []  # no worker: nothing new after the wait
    assert time.monotonic() - started >= 0.4
    with pytest.raises(fl.errors.UnknownRunError, match="unknown run: 'nope'"):
        client.events("nope")


@pytest.mark.usefixtures("comms")
def test_a_run_on_the_service_is_watched_and_replayed_through_the_client(service: Service) -> None:
    client = service.start_broker()
    service.start_workers("tests.http_workflows:chain", processes=1)
    wait_workers(client, 1)
    run_id = client.dispatch_workflow(flows.chain.to_schema(), {"delay": 0.15})
    view = fl.RunView(client, run_id)
    assert view._polling and view._thread is not None
    assert view.join(timeout=60)
    info = wait_run(client, run_id)
    assert info.state is Status.SUCCEEDED
    state = sent_state(view)
    assert state["codes"] == "S" * 12 and state["run_state"] == "SUCCEEDED" and state["done"] == 12
    times = [t for t, _ in view.comm.updates("codes")]
    assert len(times) >= 4  # it followed the run step by step, not only its end
    assert busiest_second(times) <= 12
    assert {r[3] for r in state["rows"]} == {info.steps["tick0"].worker}  # the worker's name
    view.comm.receive({"selected": "tick3"})
    assert "<b>result</b> <code>3</code>" in sent_state(view)["detail"]
    view.close()
    replay = fl.ReplayView(client, run_id)
    assert replay.positions == len(client.events(run_id)) and replay.state.run_state == "SUCCEEDED"
    replay.comm.receive({"position": 2})
    assert sent_state(replay)["codes"][0] == "Q"
    replay.close()
