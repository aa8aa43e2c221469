"""The broker service end to end: a real uvicorn server and real worker processes, both started
through the CLI on 127.0.0.1, talked to with HttpBrokerClient."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fuseline_nb import Status
from fuseline_nb.broker.clients import HttpBrokerClient
from fuseline_nb.errors import (
    BrokerAuthError,
    BrokerRequestError,
    BrokerUnavailableError,
    UnknownRunError,
    UnknownWorkerError,
)
from fuseline_nb.workflow.runinfo import RunInfo
from tests import http_workflows as flows
from tests.helpers import local_states

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "service-test-token-0123456789"
CLI = [sys.executable, "-m", "fuseline_nb.cli.service"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "FUSELINE_NB_TOKEN": TOKEN}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """Starts and stops ``fuseline-nb broker`` and ``fuseline-nb worker`` subprocesses."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.broker: subprocess.Popen[bytes] | None = None

    def _spawn(self, *args: str, log: str, cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "ab")  # the child keeps its copy of the descriptor
        p = subprocess.Popen([*CLI, *args], env=_env(), stdout=out, stderr=out, cwd=cwd,
                             start_new_session=True)
        out.close()
        self.procs.append(p)
        return p

    def start_broker(self, *extra: str) -> HttpBrokerClient:
        self.broker = self._spawn("broker", "--port", str(self.port), *extra, log="broker.log")
        client = HttpBrokerClient(self.url, TOKEN, retries=0, timeout=5)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.status()
                return client
            except BrokerUnavailableError:
                if self.broker.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("broker did not start:\n" + self.log("broker.log")) from None
                time.sleep(0.1)

    def start_workers(self, spec: str, processes: int = 1) -> subprocess.Popen[bytes]:
        return self._spawn("worker", spec, "--broker", self.url, "--processes", str(processes),
                           "--poll-wait", "1", "--grace", "10", log="worker.log")

    def stop(self, p: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if p.poll() is None:
            p.send_signal(sig)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise AssertionError(f"process {p.args} did not stop on {sig!r}") from None

    def log(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    s = Service(tmp_path)
    yield s
    s.close()


def wait_run(client: HttpBrokerClient, run_id: str, timeout: float = 60, until: Any = None) -> RunInfo:
    deadline = time.monotonic() + timeout
    while True:
        info = client.get_run(run_id)
        if (until(info) if until else info.done):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {info.state}: "
                                 f"{ {n: s.state.value for n, s in info.steps.items()} }")
        time.sleep(0.05)


def wait_workers(client: HttpBrokerClient, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(client.list_workers()) < n:
        assert time.monotonic() < deadline, f"only {len(client.list_workers())} of {n} workers registered"
        time.sleep(0.1)


pytestmark = pytest.mark.slow


def test_branch_and_failure_end_as_in_process(service: Service) -> None:
    client = service.start_broker()
    workers = service.start_workers("tests.http_workflows:branchy", processes=2)
    wait_workers(client, 2)
    run_id = client.dispatch_workflow(flows.branchy.to_schema(), {"n": 50})
    info = wait_run(client, run_id)
    assert info.state is Status.FAILED
    assert {n: s.state for n, s in info.steps.items()} == local_states(flows.branchy, {"n": 50})
    assert info.steps["Big"].result == 5000
    assert info.steps["Independent"].result == (50, "tuple results travel pickled")
    assert info.steps["Explode"].error == "ValueError: cannot handle 5000"
    assert "raise ValueError" in (info.steps["Explode"].traceback or "")
    assert info.inputs == {"n": 50}
    # the other branch, on the same service and workers
    small = wait_run(client, client.dispatch_workflow(flows.branchy.to_schema(), {"n": 5}))
    assert {n: s.state for n, s in small.steps.items()} == local_states(flows.branchy, {"n": 5})
    assert [r.run_id for r in client.list_runs()] == [run_id, small.run_id]
    # SIGTERM: the worker processes leave the broker and exit 0
    assert service.stop(workers) == 0
    assert client.list_workers() == []
    assert service.stop(service.broker) == 0


def test_worker_killed_mid_step_loses_nothing(service: Service, tmp_path: Path) -> None:
    client = service.start_broker("--lease-seconds", "1")
    service.start_workers("tests.http_workflows:slow", processes=1)
    wait_workers(client, 1)
    marker = tmp_path / "slow.pid"
    run_id = client.dispatch_workflow(flows.slow.to_schema(), {"marker": str(marker), "seconds": 60})
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "the slow step never started"
        time.sleep(0.05)
    victim = int(marker.read_text())
    os.kill(victim, signal.SIGKILL)  # the worker process, mid-step; its supervisor starts another
    info = wait_run(client, run_id, timeout=60)
    assert info.state is Status.SUCCEEDED
    assert info.steps["Slow"].attempts == 2
    assert info.steps["Slow"].result != victim
    assert info.steps["AfterSlow"].result == f"after {info.steps['Slow'].result}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_restarted_service_resumes_the_run(service: Service, tmp_path: Path, sig: int) -> None:
    pytest.importorskip("duckdb")
    db = str(tmp_path / "runs.duckdb")
    client = service.start_broker("--db", db, "--lease-seconds", "3")
    service.start_workers("tests.http_workflows:chain", processes=1)
    wait_workers(client, 1)
    run_id = client.dispatch_workflow(flows.chain.to_schema(), {"delay": 0.2, "tag": ("kept", 1)})
    wait_run(client, run_id, until=lambda i: i.counts()[Status.SUCCEEDED] >= 3)
    assert service.broker is not None
    code = service.stop(service.broker, sig)  # SIGTERM flushes and closes the file; SIGKILL does not
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    time.sleep(1.0)  # the worker sees connection errors meanwhile
    client = service.start_broker("--db", db, "--lease-seconds", "3")
    info = wait_run(client, run_id, timeout=60)
    assert info.state is Status.SUCCEEDED
    assert all(s.state is Status.SUCCEEDED for s in info.steps.values())
    assert info.steps["tick11"].result == 11
    assert info.inputs == {"delay": 0.2, "tag": ("kept", 1)}
    assert len(client.list_workers()) == 1  # the worker registered again by itself
    assert "registered again" in service.log("worker.log")


def test_client_errors_name_the_problem(service: Service) -> None:
    client = service.start_broker()
    with pytest.raises(UnknownRunError, match="unknown run: 'nope'"):
        client.get_run("nope")
    with pytest.raises(UnknownWorkerError, match="unknown worker: 'ghost'"):
        client.keep_alive("ghost")
    anonymous = HttpBrokerClient(service.url, retries=0)
    with pytest.raises(BrokerAuthError, match="missing Authorization header"):
        anonymous.list_runs()
    assert anonymous.status()["status"] == "ok"
    wid = client.register_worker([flows.chain.to_schema()])
    with pytest.raises(BrokerRequestError, match="v: Input should be 2") as refused:
        client._send("POST", "/worker/keep-alive", {"worker_id": wid, "v": 9})
    assert refused.value.status_code == 422 and refused.value.code == "invalid_request"
    with pytest.raises(BrokerRequestError, match=r"workflow\.edges"):
        bad = flows.chain.to_schema().to_dict()
        bad["edges"].append({"source": "tick0", "target": "nowhere"})
        client._send("POST", "/workflow/dispatch", {"workflow": bad})
    assert service.stop(service.broker) == 0
    t0 = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match="unreachable"):
        HttpBrokerClient(service.url, TOKEN, retries=2, backoff=0.05).status()
    assert time.monotonic() - t0 < 5


def test_repositories_and_workers_over_the_real_service(service: Service) -> None:
    from fuseline_nb.broker import RepositoryInfo

    client = service.start_broker()
    assert client.list_repositories() == [] and client.get_repository("etl") is None
    client.register_repository(RepositoryInfo("etl", "https://example.com/etl.git", ["etl:wf"], {"token": "s"}))
    client.register_repository(RepositoryInfo("ml", "https://example.com/ml.git", [], {}))
    got = client.get_repository("etl")
    assert (got.url, list(got.workflows), dict(got.credentials)) == (
        "https://example.com/etl.git", ["etl:wf"], {"token": "***"})  # tokens never leave the service
    assert [r.name for r in client.list_repositories(page=2, page_size=1)] == ["ml"]
    wid = client.register_worker([flows.chain.to_schema()], "remote-1")
    (info,) = client.list_workers()
    assert (info.worker_id, info.name) == (wid, "remote-1") and info.connected_at > 0


def test_a_report_over_the_body_bound_fails_the_step_with_the_reason(service: Service) -> None:
    from fuseline_nb.worker import ProcessEngine

    client = service.start_broker("--max-body", "100000")
    run_id = client.dispatch_workflow(flows.big.to_schema())
    engine = ProcessEngine(HttpBrokerClient(service.url, TOKEN), [flows.big])
    engine.work()
    info = client.get_run(run_id)
    assert info.state is Status.FAILED
    assert "the broker refused the step's report" in (info.steps["huge"].error or "")
    assert "over 100000 bytes" in (info.steps["huge"].error or "")
    engine.client.close()


def test_the_fuseline_nb_command_has_broker_and_worker() -> None:
    from fuseline_nb.cli import build_parser
    from fuseline_nb.cli.service import broker_main, worker_main

    parser = build_parser()
    assert parser.parse_args(["broker", "--db", "x.duckdb"]).handler is broker_main
    assert parser.parse_args(["worker", "m:wf", "--broker", "http://127.0.0.1:1"]).handler is worker_main


def test_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in _env().items() if k != "FUSELINE_NB_TOKEN"}
    r = subprocess.run([*CLI, "broker", "--host", "0.0.0.0", "--port", str(free_port())], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "refusing to listen on '0.0.0.0' without a token" in r.stderr


def test_worker_names_a_workflow_it_cannot_import(tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "worker", "tests.http_workflows:nothing", "--broker", "http://127.0.0.1:9"],
                       env=_env(), capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 2
    assert "module 'tests.http_workflows' has no attribute 'nothing'" in r.stderr


def test_docs_quick_start_runs(service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    import io
    import re
    import shlex

    from fuseline_nb.cli.service import main as service_main

    page = (ROOT / "docs" / "service.md").read_text()
    flows_py, notebook = re.findall(r"^```python\n(.*?)^```", page, re.M | re.S)
    (tmp_path / "flows.py").write_text(flows_py)
    commands = re.findall(r"^```bash\n(.*?)^```", page, re.M | re.S)[0].splitlines()
    for line in commands[1:]:  # the broker and worker commands parse as written
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == "fuseline-nb"
        with pytest.raises(SystemExit), contextlib.redirect_stdout(io.StringIO()):
            service_main([*argv[1:], "--help"])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FUSELINE_NB_TOKEN", TOKEN)
    client = service.start_broker()
    # started in the directory of flows.py, as the page says
    service._spawn("worker", "flows:daily", "--broker", service.url, "--processes", "2", log="worker.log",
                   cwd=tmp_path)
    wait_workers(client, 2)
    code = notebook.replace("http://127.0.0.1:8000", service.url)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "service.md", "exec"), {"__name__": "docs_service"})
    expected = re.findall(r"^# prints: ?(.*)$", notebook, re.M)
    assert out.getvalue().splitlines() == expected, service.log("worker.log") + service.log("broker.log")


@pytest.mark.slow
def test_cancel_through_the_service_stops_the_cli_worker_s_step(service: Service, tmp_path: Path) -> None:
    import psutil

    from fuseline_nb.errors import RunNotFoundError

    client = service.start_broker("--db", str(tmp_path / "svc.duckdb"))
    service.start_workers("tests.http_workflows:slow", processes=1)
    wait_workers(client, 1)
    marker = tmp_path / "slow.pid"
    run_id = client.dispatch_workflow(flows.slow.to_schema(), {"marker": str(marker), "seconds": 30})
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the slow step did not start:\n" + service.log("worker.log")
        time.sleep(0.02)
    pid = int(marker.read_text())
    t0 = time.monotonic()
    assert client.cancel_run(run_id, "from the test") is True

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    while not gone():
        assert time.monotonic() - t0 < 2.0, "the cancelled step's worker process still runs after 2 s"
        time.sleep(0.02)
    info = client.get_run(run_id)
    assert info.state is Status.CANCELLED
    assert {n: s.state for n, s in info.steps.items()} == {"Slow": Status.CANCELLED, "AfterSlow": Status.CANCELLED}
    assert info.steps["AfterSlow"].attempts == 0 and info.steps["AfterSlow"].started_at is None  # never started
    assert info.steps["Slow"].attempts == 1
    assert client.cancel_run(run_id) is False  # an ended run: a no-op
    with pytest.raises(RunNotFoundError, match="nope"):
        client.cancel_run("nope")
    # the supervisor started another worker process: the next run works (the marker makes it quick)
    again = client.dispatch_workflow(flows.slow.to_schema(), {"marker": str(marker), "seconds": 30})
    done = wait_run(client, again, timeout=60)
    assert done.state is Status.SUCCEEDED and done.steps["Slow"].result != pid

