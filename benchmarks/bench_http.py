"""Per-step overhead of the HTTP broker service, beside the in-kernel broker, on a 1→1000→1 fan-out.

Run from the repository root::

    .venv/bin/python benchmarks/bench_http.py [--width 1000] [--repeat 3]

In-kernel: a MemoryBroker and two ProcessEngine threads over LocalBrokerClient.
HTTP: ``fuseline-nb broker`` (memory) and ``fuseline-nb worker --processes 2``
started as subprocesses on 127.0.0.1, the run dispatched with HttpBrokerClient.
Steps do nothing, so wall time / steps is the per-step overhead. The figure
for Fuseline's own HTTP path on this machine is 1.2–1.5 ms per step.
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


def in_kernel(wf: Workflow, workers: int = 2) -> float:
    """Seconds for one run on a MemoryBroker drained by ``workers`` ProcessEngine threads."""
    broker = MemoryBroker()
    client = LocalBrokerClient(broker)
    engines = [ProcessEngine(client, [wf]) for _ in range(workers)]
    t0 = time.perf_counter()
    run_id = client.dispatch_workflow(wf.to_schema(), {})
    threads = [threading.Thread(target=e.work) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    assert broker.get_run(run_id).state is Status.SUCCEEDED
    broker.close()
    return took


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def over_http(wf: Workflow, workers: int, repeat: int) -> list[float]:
    """Seconds per run through the CLI broker service and ``workers`` CLI worker processes."""
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
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run_id = client.dispatch_workflow(wf.to_schema(), {})
            while not (info := client.get_run(run_id, steps=False, wait=30)).done:
                pass
            times.append(time.perf_counter() - t0)
            assert info.state is Status.SUCCEEDED, info.state
        return times
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    wf = fanout
    steps = WIDTH + 2
    local = [in_kernel(wf, args.workers) for _ in range(args.repeat)]
    http = over_http(wf, args.workers, args.repeat)
    ms_local = min(local) / steps * 1e3
    ms_http = min(http) / steps * 1e3
    print(f"1→{WIDTH}→1 fan-out ({steps} steps), {args.workers} workers, best of {args.repeat}")
    print(f"  in-kernel (MemoryBroker, ProcessEngine threads, LocalBrokerClient): "
          f"{ms_local:.3f} ms/step  (runs: {', '.join(f'{t:.2f}s' for t in local)})")
    print(f"  HTTP service (uvicorn, {args.workers} worker processes, HttpBrokerClient): "
          f"{ms_http:.3f} ms/step  (runs: {', '.join(f'{t:.2f}s' for t in http)}; "
          f"median {statistics.median(http) / steps * 1e3:.3f} ms/step)")
    print(f"  HTTP / in-kernel: {ms_http / ms_local:.1f}x; Fuseline's HTTP path here: 1.2–1.5 ms/step "
          f"→ {1.2 / ms_http:.1f}–{1.5 / ms_http:.1f}x faster")


if __name__ == "__main__":
    main()
