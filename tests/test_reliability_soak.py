"""Issue 18 soak: many runs of 50 steps through a Session with a DuckDB file and through the HTTP
service with 2 CLI workers, while a chaos thread kills a worker process every second and one run in
a hundred carries a poison value. Every run ends; every run and step is in the file exactly once;
the broker and the workers are alive at the end.

The size is ``FUSELINE_NB_SOAK_RUNS`` (20 by default, for CI); the issue's figure is 1000::

    FUSELINE_NB_SOAK_RUNS=1000 .venv/bin/python -m pytest tests/test_reliability_soak.py -m slow -s
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import duckdb
import pytest

import fuseline_nb as fl
from fuseline_nb import Status
from tests import http_workflows as flows
from tests.test_http_service import Service, wait_workers
from tests.test_reliability_fleet import _alive, _children

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("FUSELINE_NB_SOAK_RUNS", "20"))
STEPS = len(flows.soak.steps)


def _inputs(i: int) -> dict:
    if i % 100 == 37:
        return {"x": "fail"}  # its source step fails with a surrogate in the error text
    if i % 100 == 71:
        return {"x": flows.ReprRaises(i)}  # an input whose __repr__ raises
    return {"x": i}


def _expected(i: int) -> str:
    return "FAILED" if i % 100 == 37 else "SUCCEEDED"


class Chaos:
    """Kills one of ``pids()`` with SIGKILL every ``every`` seconds until stopped.

    ``pids()`` names the processes that are working (ready, and for CLI workers older than the
    supervisor's 5 s crash-loop guard): killing only fresh ones would test the guards, not the runs.
    """

    def __init__(self, pids, every: float = 1.0) -> None:
        self.pids, self.every, self.kills = pids, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            pids = sorted(self.pids())
            if pids:
                try:
                    os.kill(pids[self.kills % len(pids)], signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass


def _check_file(path: Path, expected: dict[str, str]) -> None:
    con = duckdb.connect(str(path), read_only=True)
    try:
        runs = dict(con.execute("SELECT run_id, state FROM runs").fetchall())
        assert runs == expected
        (n_runs,) = con.execute("SELECT count(*) FROM runs").fetchone()
        assert n_runs == len(expected)
        (n_steps,) = con.execute("SELECT count(*) FROM steps").fetchone()
        assert n_steps == len(expected) * STEPS
        dupes = con.execute("SELECT run_id, step FROM steps GROUP BY ALL HAVING count(*) > 1").fetchall()
        assert dupes == []
        open_steps = con.execute("SELECT count(*) FROM steps WHERE state IN ('PENDING', 'RUNNING')").fetchone()
        assert open_steps == (0,)
    finally:
        con.close()


def test_soak_through_a_session(tmp_path: Path) -> None:
    path = tmp_path / "soak.duckdb"
    started = time.monotonic()
    expected: dict[str, str] = {}
    with fl.Session(path, workers=2, lease_seconds=5) as session:
        server = session.pool._server
        with Chaos(lambda: [ep.process.pid for ep in list(server.endpoints.values()) if ep.worker_id]) as chaos:
            runs = []
            for i in range(RUNS):
                run = session.submit(flows.soak, _inputs(i))
                runs.append(run)
                expected[run.id] = _expected(i)
            for run in runs:
                run.wait(timeout=600)
        elapsed = time.monotonic() - started
        assert {r.id: r.info().state.value for r in runs} == expected
        assert session.submit(flows.soak, {"x": 1}).wait(timeout=120)[0] == 0  # the fleet is alive
        assert len(session.pool.pids()) == 2
    expected.update(dict.fromkeys(set(_run_ids(path)) - set(expected), "SUCCEEDED"))
    _check_file(path, expected)
    print(f"\nsoak/session: {RUNS} runs x {STEPS} steps, {chaos.kills} worker kills, {elapsed:.1f} s")


def _run_ids(path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [r for (r,) in con.execute("SELECT run_id FROM runs").fetchall()]
    finally:
        con.close()


def test_soak_through_the_http_service(tmp_path: Path) -> None:
    service = Service(tmp_path)
    path = tmp_path / "soak.duckdb"
    try:
        client = service.start_broker("--db", str(path), "--lease-seconds", "2")
        supervisor = service.start_workers("tests.http_workflows:soak", processes=2)
        wait_workers(client, 2)
        started = time.monotonic()
        expected: dict[str, str] = {}
        first_seen: dict[int, float] = {}

        def working() -> list[int]:
            now = time.monotonic()
            alive = [p for p in _children(supervisor.pid) if _alive(p)]
            return [p for p in alive if now - first_seen.setdefault(p, now) > 6]

        with Chaos(working) as chaos:
            ids = []
            for i in range(RUNS):
                run_id = client.dispatch_workflow(flows.soak.to_schema(), _inputs(i))
                ids.append(run_id)
                expected[run_id] = _expected(i)
            for run_id in ids:
                deadline = time.monotonic() + 600
                while not (info := client.get_run(run_id, steps=False, wait=30)).done:
                    assert time.monotonic() < deadline, f"run {run_id} still {info.state}"
        elapsed = time.monotonic() - started
        final = client.dispatch_workflow(flows.soak.to_schema(), {"x": 1})
        deadline = time.monotonic() + 120
        while not (info := client.get_run(final, steps=False, wait=30)).done:
            assert time.monotonic() < deadline
        assert info.state is Status.SUCCEEDED  # broker and fleet alive after the chaos
        expected[final] = "SUCCEEDED"
        assert supervisor.poll() is None and client.status()["status"] == "ok"
        assert service.broker is not None and service.stop(service.broker) == 0
        _check_file(path, expected)
        print(f"\nsoak/http: {RUNS} runs x {STEPS} steps, {chaos.kills} worker kills, {elapsed:.1f} s")
    finally:
        service.close()
