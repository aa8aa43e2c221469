"""Audit (session 6): odd values through the real HTTP service (CLI broker and worker on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fuseline_nb import Status
from tests import audit6_workflows as flows
from tests.test_http_service import Service, wait_run, wait_workers

pytestmark = pytest.mark.slow


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    s = Service(tmp_path)
    yield s
    s.close()


def test_a_str_result_with_lone_surrogates_reaches_the_broker_over_http(service: Service) -> None:
    # A file name read from undecodable bytes holds lone surrogates. Before: the worker put the str result
    # as the report's action, pydantic could not encode it ('surrogates not allowed'), the worker process
    # died, and its replacement took the step again: a crash loop, the run never ended.
    client = service.start_broker()
    service.start_workers("tests.audit6_workflows:surrogates")
    wait_workers(client, 1)
    run_id = client.dispatch_workflow(flows.surrogates.to_schema(), {"prefix": "d/"})
    info = wait_run(client, run_id, timeout=60)
    assert info.state is Status.SUCCEEDED, {n: (s.state, s.error) for n, s in info.steps.items()}
    assert info.steps["undecodable"].result == "d/caf\udce9.csv"
    assert info.steps["length"].result == len("d/caf\udce9.csv")
    assert "surrogates not allowed" not in service.log("worker.log")


def test_a_condition_checked_on_a_str_with_lone_surrogates_reaches_the_broker_over_http(service: Service) -> None:
    # The report carries the condition checks made before running, with the checked value: a str holding a
    # lone surrogate made the report unsendable, as for the action above.
    client = service.start_broker()
    service.start_workers("tests.audit6_workflows:gated")
    wait_workers(client, 1)
    run_id = client.dispatch_workflow(flows.gated.to_schema(), {"prefix": "d/"})
    info = wait_run(client, run_id, timeout=60)
    assert info.state is Status.SUCCEEDED, {n: (s.state, s.error) for n, s in info.steps.items()}
    assert info.steps["load"].result == "loaded " + str(len("d/caf\udce9.csv"))
    assert "surrogates not allowed" not in service.log("worker.log")
