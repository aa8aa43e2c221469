"""Scale: a 1→N→1 fan-out of no-op steps through ``Session(file.duckdb, workers=2)``, end to end.

Each phase is timed on its own (wall clock and this process's CPU):
building the workflow (wiring + ``Workflow(...)``), starting the session,
``submit`` (fingerprints, shipping the workflow to the workers, registering
and dispatching the run), ``wait`` (the run itself), the run's final summary
(``run.info()``: every step's record) and closing the session (the history
flushed to the file). Peak resident memory is printed for this process
(the kernel: broker, history writer) and for the worker processes (the
largest of them, ``VmHWM``), and CPU per step of the kernel and of the
workers together (the target needs both under 120 µs/step together: two
cores for 60 s).

Target (issue 13): N = 1,000,000 in under 60 s end to end with peak memory
under 2 GB on a 2-core machine. CI does not run this benchmark; at N =
1,000,000 it needs a few GB of free memory and minutes.

Run: ``.venv/bin/python benchmarks/bench_scale.py --n 20000`` (default
20,000; ``--n 1000000`` for the target; ``--workers`` to change the pool;
``--build-only`` stops after building, without a session).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import fuseline_nb as fl


def noop() -> None:
    return None


class Clock:
    """Wall and CPU time of named phases, printed as they end."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.rows: list[tuple[str, float, float]] = []

    def phase(self, label: str) -> _Phase:
        return _Phase(self, label)


class _Phase:
    def __init__(self, clock: Clock, label: str) -> None:
        self.clock, self.label = clock, label

    def __enter__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        self.clock.rows.append((self.label, wall, cpu))
        print(f"  {self.label:<28}{wall:>9.2f} s wall{cpu:>9.2f} s CPU (kernel)   rss {_rss_mb():>7.0f} MB",
              flush=True)


def _rss_mb() -> float:
    """Peak resident memory of this process in MB (``ru_maxrss`` is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker_peak_mb(pids: list[int]) -> float:
    """The largest peak resident memory (``VmHWM``) among the worker processes still alive."""
    peak = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak


def _workers_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by the worker processes still alive, from ``/proc``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="width of the fan-out (default 20,000)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory", action="store_true", help="history in memory instead of a DuckDB file")
    ap.add_argument("--build-only", action="store_true",
                    help="stop after building the workflow and its schema (no session: the kernel side alone)")
    args = ap.parse_args()
    n = args.n
    print(f"1→{n:,}→1 fan-out of no-op steps, Session({'None' if args.memory else 'file.duckdb'}, "
          f"workers={args.workers}), load average {os.getloadavg()[0]:.1f}")
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        path = None if args.memory else str(Path(tmp) / "history.duckdb")
        with clock.phase("build"):
            head, tail = fl.FunctionStep(noop, name="head"), fl.FunctionStep(noop, name="tail")
            for i in range(n):
                head >> fl.FunctionStep(noop, name=f"m{i}") >> tail
            wf = fl.Workflow(outputs=[tail], name="scale")
            del head, tail
        with clock.phase("schema + fingerprints"):
            wf.to_schema()
        if args.build_only:
            print(f"built {len(wf):,} steps in {time.perf_counter() - clock.start:.1f} s; peak RSS {_rss_mb():.0f} MB")
            return
        with clock.phase("session start"):
            session = fl.Session(path, workers=args.workers)
        pids = session.pool.pids() if session.pool is not None else []
        try:
            with clock.phase("submit"):
                run = session.submit(wf)
            with clock.phase("run + wait"):
                run.wait(raise_on_failure=True)
            with clock.phase("final summary (info)"):
                info = run.info()
                done = sum(1 for s in info.steps.values() if s.state is fl.Status.SUCCEEDED)
            workers_mb = _worker_peak_mb(pids)
            workers_cpu = _workers_cpu(pids)
        finally:
            with clock.phase("close"):
                session.close()
    total = time.perf_counter() - clock.start
    gc.collect()
    print(f"steps succeeded {done:,} of {n + 2:,}")
    kernel_cpu = time.process_time()
    print(f"CPU per step: kernel {kernel_cpu / (n + 2) * 1e6:.0f} µs (whole process), workers "
          f"{workers_cpu / (n + 2) * 1e6:.0f} µs (together); budget for the target on 2 cores: "
          f"both under 120 µs together")
    print(f"end to end {total:.1f} s ({total / (n + 2) * 1e6:.0f} µs/step); peak RSS kernel {_rss_mb():.0f} MB, "
          f"largest worker {workers_mb:.0f} MB")
    ok = total < 60 and _rss_mb() < 2048 and workers_mb < 2048
    print(f"target (N = 1,000,000): under 60 s and 2 GB -> {'OK' if ok and n >= 1_000_000 else 'MISSED' if n >= 1_000_000 else 'n/a at this N'}")
    if done != n + 2:
        sys.exit(f"only {done} of {n + 2} steps succeeded")


if __name__ == "__main__":
    main()
