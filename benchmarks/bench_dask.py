"""Dask: ``Session(dask=...)`` against plain ``dask.distributed`` on the same LocalCluster, in one run.

Three workloads, each timed in this one process on one
``LocalCluster(n_workers=2, processes=True, threads_per_worker=1)``:

* a 200-step chain of no-op steps (one step at a time: per-step latency),
* a 1 -> 1000 -> 1 fan-out of no-op steps (throughput),
* 1,000 independent steps that each sleep 10 ms (parallel speed-up).

Dask's own figure is the same graph submitted with ``client.submit`` (each
task takes its predecessor's future, so the scheduler alone drives it), from
a client of its own with Dask's defaults; ours is the workflow submitted to
a ``Session(dask=client)`` (a second client on the same cluster), whose
broker in this process decides every step and records it (in memory, and in
a DuckDB file).
Each figure is the best of several turns after a warm-up turn; the kinds
take turns (dask, memory, duckdb, dask, ...), so a busy machine slows them
alike. Besides wall-clock time per step, the CPU time this process spent per
step (``time.process_time``: the Dask client, the scheduler — a LocalCluster
runs it here — and, for the sessions, the broker and the engine) is printed:
it is stable under load, where wall-clock ratios are not. The load average is
printed before and after.

Targets: per-step overhead <= 1.3x Dask's own on the chain and the fan-out;
sleep speed-up >= 0.9x Dask's.

Run: ``.venv/bin/python benchmarks/bench_dask.py`` (``--quick`` for a smaller pass).
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fuseline_nb as fl

#: One turn of a workload: (wall-clock seconds, CPU seconds of this process).
Timing = tuple[float, float]
KINDS = ("dask", "memory", "duckdb")


def noop(*_: Any) -> None:
    return None


def nap(*_: Any) -> None:
    time.sleep(0.01)


def timed(body: Callable[[], None]) -> Timing:
    c0, t0 = time.process_time(), time.perf_counter()
    body()
    return time.perf_counter() - t0, time.process_time() - c0


# -- Dask's own ------------------------------------------------------------------------------------
def dask_jobs(client: Any, chain_n: int, fan_n: int, sleep_n: int) -> dict[str, Callable[[], Timing]]:
    from distributed import wait

    def chain() -> None:
        fut = client.submit(noop, pure=False)
        for _ in range(chain_n - 1):
            fut = client.submit(noop, fut, pure=False)
        fut.result()

    def fan() -> None:
        root = client.submit(noop, pure=False)
        mids = [client.submit(noop, root, pure=False) for _ in range(fan_n)]
        client.submit(noop, *mids, pure=False).result()

    def sleeps() -> None:
        wait(client.map(nap, range(sleep_n), pure=False))

    return {"chain": lambda: timed(chain), "fan-out": lambda: timed(fan), "sleeps": lambda: timed(sleeps)}


# -- the same shapes as workflows -----------------------------------------------------------------
def chain_wf(n: int) -> fl.Workflow:
    steps = [fl.FunctionStep(noop, name=f"c{i}") for i in range(n)]
    for a, b in itertools.pairwise(steps):
        a >> b
    return fl.Workflow(outputs=[steps[-1]], workflow_id=f"bench-dask-chain-{n}")


def fan_wf(n: int) -> fl.Workflow:
    root, sink = fl.FunctionStep(noop, name="root"), fl.FunctionStep(noop, name="sink")
    for i in range(n):
        mid = fl.FunctionStep(noop, name=f"m{i}")
        root >> mid
        mid >> sink
    return fl.Workflow(outputs=[sink], workflow_id=f"bench-dask-fan-{n}")


def sleeps_wf(n: int) -> fl.Workflow:
    return fl.Workflow(outputs=[fl.FunctionStep(nap, name=f"z{i}") for i in range(n)],
                       workflow_id=f"bench-dask-sleeps-{n}")


def session_runner(session: fl.Session, wf: fl.Workflow) -> Callable[[], Timing]:
    def once() -> None:
        run = session.submit(wf)
        run.wait()
        assert run.info().state is fl.Status.SUCCEEDED, run.info().failures()

    return lambda: timed(once)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def measure(chain_n: int, fan_n: int, sleep_n: int, repeat: int) -> dict[str, dict[str, Timing]]:
    """kind -> workload -> (best wall-clock, least CPU) of its turns."""
    from distributed import Client, LocalCluster

    shapes = {"chain": chain_wf(chain_n), "fan-out": fan_wf(fan_n), "sleeps": sleeps_wf(sleep_n)}
    best: dict[str, dict[str, Timing]] = {kind: {} for kind in KINDS}
    with tempfile.TemporaryDirectory() as tmp, \
            LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as plain, Client(cluster) as client:
        own = dask_jobs(plain, chain_n, fan_n, sleep_n)  # its own client: Dask's defaults, untouched
        mem = fl.Session(None, dask=client)
        duck = fl.Session(str(Path(tmp) / "bench.duckdb"), dask=client)
        try:
            for name, wf in shapes.items():
                jobs = {"dask": own[name], "memory": session_runner(mem, wf), "duckdb": session_runner(duck, wf)}
                for job in jobs.values():
                    job()  # warm-up: definitions shipped, code paths hot
                turns = {"chain": 3 * repeat, "fan-out": 2 * repeat}.get(name, max(1, repeat - 1))
                for _ in range(turns):
                    for kind, job in jobs.items():
                        wall, cpu = job()
                        was = best[kind].get(name, (wall, cpu))
                        best[kind][name] = (min(was[0], wall), min(was[1], cpu))
        finally:
            mem.close()
            duck.close()
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller workloads, one repeat")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    chain_n, fan_n, sleep_n = (50, 200, 200) if args.quick else (200, 1000, 1000)
    repeat = 1 if args.quick else args.repeat
    steps = {"chain": chain_n, "fan-out": fan_n + 2, "sleeps": sleep_n}
    t0 = time.perf_counter()
    for _ in range(min(sleep_n, 100)):
        nap()
    serial = (time.perf_counter() - t0) / min(sleep_n, 100) * sleep_n  # measured, not nominal
    print(f"before: {load()} on {os.cpu_count()} cores")
    best = measure(chain_n, fan_n, sleep_n, repeat)
    print(f"after:  {load()}\n")
    print("per step, best turn; CPU = this process (Dask client + scheduler, and the broker for the sessions)")
    print(f"{'workload':<8} {'steps':>5} | {'wall: dask':>10} {'memory':>8} {'duckdb':>8} {'mem/dask':>8} "
          f"{'duck/dask':>9} | {'CPU: dask':>9} {'memory':>8} {'duckdb':>8} {'mem/dask':>8} {'duck/dask':>9}")
    for name, n in steps.items():
        wall = [best[kind][name][0] / n * 1e6 for kind in KINDS]
        cpu = [best[kind][name][1] / n * 1e6 for kind in KINDS]
        print(f"{name:<8} {n:>5} | {wall[0]:>7.0f} us {wall[1]:>5.0f} us {wall[2]:>5.0f} us {wall[1] / wall[0]:>7.2f}x "
              f"{wall[2] / wall[0]:>8.2f}x | {cpu[0]:>6.0f} us {cpu[1]:>5.0f} us {cpu[2]:>5.0f} us "
              f"{cpu[1] / cpu[0]:>7.2f}x {cpu[2] / cpu[0]:>8.2f}x")
    speed = {kind: serial / best[kind]["sleeps"][0] for kind in KINDS}
    print(f"\nsleeps ({sleep_n} x 10 ms, serial {serial:.2f} s) speed-up on 2 Dask workers: "
          f"dask {speed['dask']:.2f}x, memory {speed['memory']:.2f}x ({speed['memory'] / speed['dask']:.2f} of "
          f"Dask's), duckdb {speed['duckdb']:.2f}x ({speed['duckdb'] / speed['dask']:.2f} of Dask's)\n")
    for name in ("chain", "fan-out"):
        worst = max(best[kind][name][0] for kind in ("memory", "duckdb")) / best["dask"][name][0]
        print(f"target: {name} per-step <= 1.30x Dask's own: worst {worst:.2f}x — {'met' if worst <= 1.3 else 'NOT met'}")
    low = min(speed["memory"], speed["duckdb"]) / speed["dask"]
    print(f"target: sleep speed-up >= 0.90x Dask's: worst {low:.2f}x — {'met' if low >= 0.9 else 'NOT met'}")


if __name__ == "__main__":
    main()
