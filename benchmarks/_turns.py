"""The timed turns of ``bench_workers.py``: one run of a kind on a workload, and what the scheduler did."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from _procstat import Placement, cpu_seconds, sleeps

import fuseline_nb as fl


class Turns:
    """The timed runs of one kind (floor, memory, duckdb) on one workload, with what the scheduler did."""

    def __init__(self) -> None:
        self.took: list[float] = []  # seconds per run
        self.cpu: list[tuple[float, float, int, int]] = []  # kernel CPU s, workers' CPU s, kernel / workers' sleeps
        self.before: list[tuple[float, float]] = []  # main thread's CPU s building / submitting (--fresh)
        self.where: list[str] = []  # Placement of the chain's two busy threads, per run

    def clear(self) -> None:
        for part in (self.took, self.cpu, self.before, self.where):
            part.clear()


def session_runner(session: fl.Session, wf: fl.Workflow | Callable[[], fl.Workflow], turns: Turns,
                   placed: bool) -> Callable[[], float]:
    """One timed run; ``wf`` may be a builder, called inside the timing (``--fresh``).

    Records in ``turns``: the kernel's and workers' CPU seconds and sleeps of the run, the main thread's CPU
    building and submitting the workflow, and (``placed``) whether the channel thread and the busy worker
    shared a CPU.
    """
    pool = session.pool
    channel = getattr(getattr(getattr(pool, "_server", None), "_thread", None), "native_id", None)
    placement = Placement(lambda: ([channel] if channel else []) + (pool.pids() if pool is not None else []))

    def once() -> float:
        pids = pool.pids() if pool is not None else []
        if placed:
            placement.start()
        k0, w0, ks0, ws0 = time.process_time(), cpu_seconds(pids), sleeps([os.getpid()]), sleeps(pids)
        t0 = time.perf_counter()
        m0 = time.thread_time()
        made = wf if isinstance(wf, fl.Workflow) else wf()
        m1 = time.thread_time()
        run = session.submit(made)
        m2 = time.thread_time()
        run.wait()
        took = time.perf_counter() - t0
        turns.cpu.append((time.process_time() - k0, cpu_seconds(pids) - w0,
                          sleeps([os.getpid()]) - ks0, sleeps(pids) - ws0))
        turns.before.append((m1 - m0, m2 - m1))
        if placed:
            turns.where.append(placement.stop())
        assert run.info().state is fl.Status.SUCCEEDED, run.info().failures()
        turns.took.append(took)
        return took

    return once


def floor_runner(job: Callable[[], float], turns: Turns, tids: list[int], placed: bool) -> Callable[[], float]:
    placement = Placement(lambda: tids)

    def once() -> float:
        if placed:
            placement.start()
        took = job()
        if placed:
            turns.where.append(placement.stop())
        turns.took.append(took)
        return took

    return once


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def modes(turns: Turns, n: int) -> str:
    """How many runs had the chain's two busy threads on one CPU, on two, or moving, with their median."""
    parts = []
    for mode in ("one cpu", "two cpus", "moved", "?"):
        took = [t for t, w in zip(turns.took, turns.where, strict=True) if w == mode]
        if took:
            parts.append(f"{len(took)} on {mode} (median {median(took) / n * 1e6:.0f} us)" if mode != "moved"
                         else f"{len(took)} moved ({median(took) / n * 1e6:.0f} us)")
    return ", ".join(parts)
