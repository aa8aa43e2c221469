"""Per-step overhead of the HTTP broker service, beside the in-kernel broker, on a 1→1000→1 fan-out.

Run from the repository root::

    .venv/bin/python benchmarks/bench_http.py [--width 1000] [--repeat 3]

In-kernel: a MemoryBroker and two ProcessEngine threads over LocalBrokerClient
(both keep asking until the run has ended; the steps each ran are printed,
so a thread that gave up early shows). HTTP: ``fuseline-nb broker`` (memory)
and ``fuseline-nb worker --processes 2`` started as subprocesses on
127.0.0.1, the run dispatched with HttpBrokerClient. Steps do nothing, so
wall time / steps is the per-step overhead. Besides wall time, the CPU
seconds the service process and the worker processes spent per step are
printed (read from /proc on Linux), and the CPU the app and the client
spend per step in process without sockets: they are stable on a loaded
machine, where wall time is not. The figure for Fuseline's own HTTP path on this
machine is 1.2–1.5 ms per step.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from fuseline_nb import FunctionStep, Status, Workflow  # noqa: E402
from fuseline_nb.broker import MemoryBroker  # noqa: E402
from fuseline_nb.broker.clients import HttpBrokerClient, LocalBrokerClient  # noqa: E402
from fuseline_nb.errors import BrokerUnavailableError  # noqa: E402
from fuseline_nb.worker import ProcessEngine  # noqa: E402

WIDTH = int(os.environ.get("BENCH_HTTP_WIDTH", "1000"))


def _nothing() -> None:
    return None


def fan_out(width: int = WIDTH) -> Workflow:
    """root → ``width`` parallel steps → join."""
    root = FunctionStep(_nothing, name="root")
    join = FunctionStep(_nothing, name="join")
    for i in range(width):
        root >> FunctionStep(_nothing, name=f"mid{i}") >> join
    return Workflow(outputs=[join], workflow_id=f"bench-fanout-{width}")


fanout = fan_out()


def in_kernel(wf: Workflow, workers: int = 2) -> tuple[float, list[int]]:
    """Seconds for one run on a MemoryBroker drained by ``workers`` ProcessEngine threads, and each one's steps."""
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    engines = [ProcessEngine(client, [wf]) for _ in range(workers)]
    t0 = time.perf_counter()
    run_id = client.dispatch_workflow(wf.to_schema(), {})

    def on_event(e: Any) -> None:
        if e.kind == "run_finished" and e.run_id == run_id:
            for engine in engines:
                engine.stop()

    unsubscribe = broker.subscribe(on_event)
    # block=True: an engine that finds nothing ready (its sibling runs the root) waits instead of leaving
    threads = [threading.Thread(target=e.work, kwargs={"block": True, "poll_interval": 0.001}) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    unsubscribe()
    assert broker.get_run(run_id).state is Status.SUCCEEDED
    steps = [e.steps_run for e in engines]
    assert sum(steps) == len(wf), steps  # every step ran once, in one of the engines
    for e in engines:
        e.close()
    broker.close()
    return took, steps


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0.0 where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def over_http(wf: Workflow, workers: int, repeat: int) -> tuple[list[float], float, float]:
    """Seconds per run through the CLI broker service and ``workers`` CLI worker processes, and the CPU
    seconds per step of the service and of the worker processes (all runs)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent)])}
    cli = [sys.executable, "-m", "fuseline_nb.cli.service"]
    procs = [subprocess.Popen([*cli, "broker", "--port", str(port)], env=env, start_new_session=True,
                              stderr=subprocess.DEVNULL)]
    try:
        client = HttpBrokerClient(url, retries=0)
        for _ in range(200):
            try:
                client.status()
                break
            except BrokerUnavailableError:
                time.sleep(0.05)
        procs.append(subprocess.Popen([*cli, "worker", "bench_http:fanout", "--broker", url,
                                       "--processes", str(workers)], env=env, start_new_session=True))
        while len(client.list_workers()) < workers:
            time.sleep(0.05)
        pids = [procs[0].pid, *_children(procs[1].pid)]
        cpu0 = [_cpu(p) for p in pids]
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run_id = client.dispatch_workflow(wf.to_schema(), {})
            while not (info := client.get_run(run_id, steps=False, wait=30)).done:
                pass
            times.append(time.perf_counter() - t0)
            assert info.state is Status.SUCCEEDED, info.state
        cpu = [_cpu(p) - c for p, c in zip(pids, cpu0, strict=True)]
        steps = len(wf) * repeat
        return times, cpu[0] / steps, sum(cpu[1:]) / steps
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def edge_cpu(wf: Workflow, runs: int = 3) -> float:
    """CPU seconds the service's app spends per ``POST /workflow/step`` (report + next), in process, no sockets.

    The ASGI app is called directly with each report; what is left of a
    step's service CPU in :func:`over_http` is uvicorn, asyncio and the sockets.
    """
    import asyncio
    import json

    from fuseline_nb.broker.http import create_app

    broker = MemoryBroker()
    app = create_app(broker)
    schema = wf.to_schema()
    wid = broker.register_worker([schema])
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def report(body: bytes) -> Any:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Any:
            return messages.pop(0)

        scope = {"type": "http", "method": "POST", "path": "/workflow/step", "query_string": b"",
                 "headers": [(b"content-length", str(len(body)).encode())], "root_path": "", "app": app}
        sent.clear()
        await app(scope, receive, send)
        return json.loads(sent[-1]["body"])["next"]

    async def drain() -> float:
        spent = 0.0
        for _ in range(runs):
            run_id = broker.dispatch_workflow(schema, {})
            a: Any = broker.get_step(wid)
            t0 = time.process_time()
            while a is not None:
                name, attempt = (a.step_name, a.attempt) if not isinstance(a, dict) else (a["step_name"], a["attempt"])
                body = json.dumps({"v": 2, "worker_id": wid, "next": True, "report": {
                    "workflow_id": schema.workflow_id, "instance_id": run_id, "step_name": name,
                    "state": "SUCCEEDED", "attempt": attempt, "started_at": 1.7e9, "finished_at": 1.7e9}})
                a = await report(body.encode())
            spent += time.process_time() - t0
            assert broker.get_run(run_id).state is Status.SUCCEEDED
        return spent / (runs * len(wf))

    try:
        return asyncio.run(drain())
    finally:
        broker.close()


def client_cpu(n: int = 5000) -> float:
    """CPU seconds HttpBrokerClient spends per step (a report with its next step, then get_step), no sockets."""
    import httpx

    from fuseline_nb.broker._http_front import answer
    from fuseline_nb.broker.base import StepAssignment, StepReport
    from fuseline_nb.workflow.value import Value

    nxt = StepAssignment("wf", "r", "mid7", {"workflow_inputs": {}, "results": {"root": Value.of(None)},
                                             "winners": {}}, 1.7e9, 1.7e9 + 60, 1, "1", None)
    canned = answer(nxt)
    client = HttpBrokerClient("http://b", transport=httpx.MockTransport(lambda _: httpx.Response(200, content=canned)))
    report = StepReport("wf", "r", "mid6", Status.SUCCEEDED, None, 1, None, None, None, 1.7e9, 1.7e9, None)
    for _ in range(200):
        client.report_step("w", report)
        client.get_step("w")
    t0 = time.process_time()
    for _ in range(n):
        client.report_step("w", report)
        got = client.get_step("w")
    spent = time.process_time() - t0
    assert got is not None and got.step_name == "mid7"
    return spent / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    wf = fanout
    steps = len(wf)
    local = [in_kernel(wf, args.workers) for _ in range(args.repeat)]
    http, service_cpu, workers_cpu = over_http(wf, args.workers, args.repeat)
    ms_local = min(t for t, _ in local) / steps * 1e3
    ms_http = min(http) / steps * 1e3
    print(f"1→{WIDTH}→1 fan-out ({steps} steps), {args.workers} workers, best of {args.repeat}")
    print(f"  in-kernel (MemoryBroker, {args.workers} ProcessEngine threads, LocalBrokerClient): "
          f"{ms_local:.3f} ms/step  (runs: {', '.join(f'{t:.2f}s' for t, _ in local)}; steps per thread: "
          f"{', '.join('/'.join(map(str, n)) for _, n in local)})")
    print(f"  HTTP service (uvicorn, {args.workers} worker processes, HttpBrokerClient): "
          f"{ms_http:.3f} ms/step  (runs: {', '.join(f'{t:.2f}s' for t in http)}; "
          f"median {statistics.median(http) / steps * 1e3:.3f} ms/step)")
    print(f"  CPU per step: service {service_cpu * 1e3:.3f} ms, worker processes {workers_cpu * 1e3:.3f} ms "
          f"(all {args.workers} together)")
    print(f"  of which in process, without sockets: the app {edge_cpu(wf) * 1e6:.1f} µs per POST /workflow/step; "
          f"HttpBrokerClient {client_cpu() * 1e6:.1f} µs per step (report + next)")
    print(f"  HTTP / in-kernel: {ms_http / ms_local:.1f}x; Fuseline's HTTP path here: 1.2–1.5 ms/step "
          f"→ {1.2 / ms_http:.1f}–{1.5 / ms_http:.1f}x faster")


if __name__ == "__main__":
    main()
