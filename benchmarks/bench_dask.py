"""Dask: ``Session(dask=...)`` against plain ``dask.distributed`` on the same LocalCluster, in one run.

Three workloads, each timed in this one process on one
``LocalCluster(n_workers=2, processes=True, threads_per_worker=1)``:

* a 200-step chain of no-op steps (one step at a time: per-step cost),
* a 1 -> 1000 -> 1 fan-out of no-op steps (throughput),
* 1,000 independent steps that each sleep 10 ms (parallel speed-up).

Dask's own figure is the same graph submitted with ``client.submit`` (each
task takes its predecessor's future, so the scheduler alone drives it); ours
is the workflow submitted to a ``Session(dask=client)``, whose broker in this
process decides every step and records it (in memory, and in a DuckDB file).
Each figure is the best of several turns after a warm-up turn; the kinds
take turns, so a busy machine slows them alike.

Targets: per-step overhead <= 1.3x Dask's own on the chain and the fan-out;
sleep speed-up >= 0.9x Dask's.

Run: ``.venv/bin/python benchmarks/bench_dask.py`` (``--quick`` for a smaller pass).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fuseline_nb as fl


def noop(*_: Any) -> None:
    return None


def nap(*_: Any) -> None:
    time.sleep(0.01)


# -- Dask's own ------------------------------------------------------------------------------------
def dask_jobs(client: Any, chain_n: int, fan_n: int, sleep_n: int) -> dict[str, Callable[[], float]]:
    from distributed import wait

    def chain() -> float:
        t0 = time.perf_counter()
        fut = client.submit(noop, pure=False)
        for _ in range(chain_n - 1):
            fut = client.submit(noop, fut, pure=False)
        fut.result()
        return time.perf_counter() - t0

    def fan() -> float:
        t0 = time.perf_counter()
        root = client.submit(noop, pure=False)
        mids = [client.submit(noop, root, pure=False) for _ in range(fan_n)]
        client.submit(noop, *mids, pure=False).result()
        return time.perf_counter() - t0

    def sleeps() -> float:
        t0 = time.perf_counter()
        wait(client.map(nap, range(sleep_n), pure=False))
        return time.perf_counter() - t0

    return {"chain": chain, "fan-out": fan, "sleeps": sleeps}


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


def session_runner(session: fl.Session, wf: fl.Workflow) -> Callable[[], float]:
    def once() -> float:
        t0 = time.perf_counter()
        run = session.submit(wf)
        run.wait()
        took = time.perf_counter() - t0
        assert run.info().state is fl.Status.SUCCEEDED, run.info().failures()
        return took

    return once


def main() -> None:
    from distributed import Client, LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller workloads, one repeat")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    chain_n, fan_n, sleep_n = (50, 200, 200) if args.quick else (200, 1000, 1000)
    repeat = 1 if args.quick else args.repeat
    shapes = {"chain": (chain_wf(chain_n), chain_n), "fan-out": (fan_wf(fan_n), fan_n + 2),
              "sleeps": (sleeps_wf(sleep_n), sleep_n)}
    t0 = time.perf_counter()
    for _ in range(min(sleep_n, 100)):
        nap()
    serial = (time.perf_counter() - t0) / min(sleep_n, 100) * sleep_n  # measured, not nominal

    tmp = tempfile.TemporaryDirectory()
    best: dict[str, dict[str, float]] = {"dask": {}, "memory": {}, "duckdb": {}}
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        own = dask_jobs(client, chain_n, fan_n, sleep_n)
        mem = fl.Session(None, dask=client)
        duck = fl.Session(str(Path(tmp.name) / "bench.duckdb"), dask=client)
        try:
            for name, (wf, _) in shapes.items():
                jobs = {"dask": own[name], "memory": session_runner(mem, wf), "duckdb": session_runner(duck, wf)}
                for job in jobs.values():
                    job()  # warm-up: definitions shipped, code paths hot
                turns = {"chain": 3 * repeat, "fan-out": 2 * repeat}.get(name, max(1, repeat - 1))
                for _ in range(turns):
                    for kind, job in jobs.items():
                        took = job()
                        best[kind][name] = min(best[kind].get(name, took), took)
        finally:
            mem.close()
            duck.close()
            tmp.cleanup()
    d_t, m_t, k_t = best["dask"], best["memory"], best["duckdb"]
    print(f"{'workload':<10} {'steps':>6} {'dask':>12} {'memory':>12} {'duckdb':>12} "
          f"{'mem/dask':>9} {'duck/dask':>10}")
    for name, (_, n) in shapes.items():
        d, m, k = (x[name] / n * 1e6 for x in (d_t, m_t, k_t))
        print(f"{name:<10} {n:>6} {d:>9.0f} us {m:>9.0f} us {k:>9.0f} us {m / d:>8.2f}x {k / d:>9.2f}x")
    speed = {kind: serial / best[kind]["sleeps"] for kind in best}
    print(f"\nsleeps ({sleep_n} x 10 ms, serial {serial:.2f} s) speed-up on 2 Dask workers: "
          f"dask {speed['dask']:.2f}x, memory {speed['memory']:.2f}x ({speed['memory'] / speed['dask']:.2f} of "
          f"Dask's), duckdb {speed['duckdb']:.2f}x ({speed['duckdb'] / speed['dask']:.2f} of Dask's)")
    print("targets: chain and fan-out per-step <= 1.3x Dask's own; sleep speed-up >= 0.9x Dask's")


if __name__ == "__main__":
    main()
