"""Worker processes: Session(workers=2) against a raw multiprocessing floor, side by side.

Three workloads, each timed in this one process:

* a 200-step chain of no-op steps (one step at a time: pure round-trip cost),
* a 1 -> 1000 -> 1 fan-out of no-op steps (both workers busy: throughput),
* 1,000 independent steps that each sleep 10 ms (parallel speed-up).

The floor is the least any design can do: the parent process plays the
broker and feeds 2 worker processes over pipes (no readiness rules, no
events, no history), waiting on both pipes as a broker must. The strict
lower bound of one worker ping-ponged with a blocking receive is printed
too. Then ``Session(workers=2)`` with history in memory and
in a DuckDB file runs the same shapes as workflows. Each figure is the best
of several turns (``--repeat`` scales them) after a warm-up turn; the three take turns, so a
busy machine slows them alike.

Targets (issue 12): per-step time <= 1.30x the floor on the chain and
<= 1.41x on the fan-out; DuckDB history <= 1.08x the memory figure;
speed-up >= 1.9x on the sleeps with 2 workers.

The pool spins briefly for quick replies (see
``fuseline_nb.worker.latency``); ``--no-spin`` measures it with
that turned off (``FUSELINE_NB_SPIN_US=0``), which shows the cost of the two
process wake-ups per round trip; ``--prefetch 1`` hands out one assignment
per round trip (no batches, no one-way reports).

Wall-clock figures move with the machine's load; the CPU time the kernel
process and the worker processes spend per step (process CPU clock, and
``/proc/<pid>/task/*/schedstat`` for the workers) is printed too, from the
same turns: it moves much less. So are the wake-ups per step of each side
(voluntary context switches): it shows whether the spins caught their
replies (a chain step is one round trip, so at most one sleep on each side).

``--fresh`` builds each workflow afresh for every Session run, inside the
timing, as a notebook does when its cell is run again (targets: fan-out
<= 2x the floor, chain <= 1.5x, in the same run).

Run: ``.venv/bin/python benchmarks/bench_workers.py`` (add ``--quick`` for a
smaller, faster pass, ``--no-spin`` to turn spinning off, ``--prefetch N``,
``--fresh`` for end-to-end figures with building).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fuseline_nb as fl
from fuseline_nb.worker.latency import PREFETCH_DEFAULT, spin_seconds


def noop() -> None:
    return None


def nap() -> None:
    time.sleep(0.01)


# -- the floor: the parent is the broker, two workers, pipes -----------------------------------
def _floor_worker(conn: Any) -> None:
    while True:
        task = conn.recv()
        if task is None:
            return
        key, sleep = task
        if sleep:
            time.sleep(sleep)
        conn.send((key, None))


class Floor:
    """Two worker processes fed over pipes by this process."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conns = []
        self.procs = []
        for _ in range(2):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_floor_worker, args=(child,), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)

    def chain(self, n: int) -> float:
        """One task at a time, handed to the two workers in turn; the parent waits on both pipes."""
        t0 = time.perf_counter()
        for i in range(n):
            self.conns[i % 2].send((i, 0.0))
            for ready in mp.connection.wait(self.conns):
                conn: Any = ready
                conn.recv()
        return time.perf_counter() - t0

    def pingpong(self, n: int) -> float:
        """The strict lower bound: one worker, blocking receive, nothing else."""
        t0 = time.perf_counter()
        conn = self.conns[0]
        for i in range(n):
            conn.send((i, 0.0))
            conn.recv()
        return time.perf_counter() - t0

    def spread(self, n: int, sleep: float, root_and_sink: bool) -> float:
        """``n`` independent tasks over both workers (plus a root before and a sink after)."""
        t0 = time.perf_counter()
        if root_and_sink:
            self.conns[0].send(("root", 0.0))
            self.conns[0].recv()
        todo = list(range(n))
        busy = 0
        for c in self.conns:
            if todo:
                c.send((todo.pop(), sleep))
                busy += 1
        while busy:
            for ready in mp.connection.wait(self.conns):
                conn: Any = ready
                conn.recv()
                busy -= 1
                if todo:
                    conn.send((todo.pop(), sleep))
                    busy += 1
        if root_and_sink:
            self.conns[0].send(("sink", 0.0))
            self.conns[0].recv()
        return time.perf_counter() - t0

    def close(self) -> None:
        for c in self.conns:
            c.send(None)
        for p in self.procs:
            p.join(5)


# -- the workflows -------------------------------------------------------------------------------
def chain_wf(n: int) -> fl.Workflow:
    steps = [fl.FunctionStep(noop, name=f"c{i}") for i in range(n)]
    for a, b in itertools.pairwise(steps):
        a >> b
    return fl.Workflow(outputs=[steps[-1]], workflow_id=f"bench-chain-{n}")


def fan_wf(n: int) -> fl.Workflow:
    root, sink = fl.FunctionStep(noop, name="root"), fl.FunctionStep(noop, name="sink")
    for i in range(n):
        mid = fl.FunctionStep(noop, name=f"m{i}")
        root >> mid
        mid >> sink
    return fl.Workflow(outputs=[sink], workflow_id=f"bench-fan-{n}")


def sleeps_wf(n: int) -> fl.Workflow:
    return fl.Workflow(outputs=[fl.FunctionStep(nap, name=f"z{i}") for i in range(n)],
                       workflow_id=f"bench-sleeps-{n}")


def _per_thread(pids: list[int], name: str, read: Callable[[Any], int]) -> int:
    """Sum ``read(f)`` over ``/proc/<pid>/task/<tid>/<name>`` of every thread of ``pids`` (0 where missing)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/{name}") as f:
                    total += read(f)
            except (OSError, ValueError, IndexError, StopIteration):
                pass
    return total


def workers_cpu(pids: list[int]) -> float:
    """CPU seconds the processes ``pids`` used so far, all threads (0 where /proc is missing)."""
    return _per_thread(pids, "schedstat", lambda f: int(f.read().split()[0])) / 1e9


def sleeps_of(pids: list[int]) -> int:
    """How often the processes ``pids`` went to sleep (and were woken) so far, all threads (voluntary context
    switches).

    A wait that a spin catches costs none; one that sleeps costs one here and
    a wake-up by the other side.
    """
    return _per_thread(pids, "status",
                       lambda f: next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt")))


def session_runner(session: fl.Session, wf: fl.Workflow | Callable[[], fl.Workflow],
                   cpu: list[tuple[float, float, int, int]],
                   before: list[tuple[float, float]] | None = None) -> Callable[[], float]:
    """One timed run; ``wf`` may be a builder, called inside the timing (``--fresh``).

    Appends (kernel CPU, workers' CPU) seconds and (kernel, workers') sleeps of the run to ``cpu``,
    and the main thread's CPU seconds building and submitting the workflow to ``before``.
    """

    def once() -> float:
        pids = session.pool.pids() if session.pool is not None else []
        k0, w0, ks0, ws0 = time.process_time(), workers_cpu(pids), sleeps_of([os.getpid()]), sleeps_of(pids)
        t0 = time.perf_counter()
        m0 = time.thread_time()
        made = wf if isinstance(wf, fl.Workflow) else wf()
        m1 = time.thread_time()
        run = session.submit(made)
        m2 = time.thread_time()
        run.wait()
        took = time.perf_counter() - t0
        cpu.append((time.process_time() - k0, workers_cpu(pids) - w0,
                    sleeps_of([os.getpid()]) - ks0, sleeps_of(pids) - ws0))
        if before is not None:
            before.append((m1 - m0, m2 - m1))
        assert run.info().state is fl.Status.SUCCEEDED, run.info().failures()
        return took

    return once


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller workloads, one repeat")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-spin", action="store_true", help="pool waits for replies without spinning")
    ap.add_argument("--prefetch", type=int, default=PREFETCH_DEFAULT,
                    help=f"most assignments a worker holds at once (default {PREFETCH_DEFAULT})")
    ap.add_argument("--fresh", action="store_true",
                    help="build each workflow afresh for every run, inside the timing (a notebook re-running "
                         "its cell): end to end = build + submit + run + wait")
    args = ap.parse_args()
    if args.no_spin:
        os.environ["FUSELINE_NB_SPIN_US"] = "0"  # read by the sessions' servers and their workers
    chain_n, fan_n, sleep_n = (50, 200, 200) if args.quick else (200, 1000, 1000)
    repeat = 1 if args.quick else args.repeat
    builders: dict[str, Callable[[], fl.Workflow]] = {
        "chain": lambda: chain_wf(chain_n), "fan-out": lambda: fan_wf(fan_n), "sleeps": lambda: sleeps_wf(sleep_n)}
    shapes = {"chain": (chain_wf(chain_n), chain_n), "fan-out": (fan_wf(fan_n), fan_n + 2),
              "sleeps": (sleeps_wf(sleep_n), sleep_n)}
    t0 = time.perf_counter()
    for _ in range(min(sleep_n, 100)):
        nap()
    serial = (time.perf_counter() - t0) / min(sleep_n, 100) * sleep_n  # measured, not nominal

    # All three stay up side by side (idle workers cost nothing) and take turns
    # on each workload, so a busy machine skews them alike; each figure is the
    # best of `repeat` turns after a warm-up turn.
    tmp = tempfile.TemporaryDirectory()
    floor = Floor()
    mem = fl.Session(None, workers=2, prefetch=args.prefetch)
    duck = fl.Session(str(Path(tmp.name) / "bench.duckdb"), workers=2, prefetch=args.prefetch)
    strict = min(floor.pingpong(chain_n) for _ in range(repeat + 1)) / chain_n * 1e6
    floor_jobs = {
        "chain": lambda: floor.chain(chain_n),
        "fan-out": lambda: floor.spread(fan_n, 0.0, True),
        "sleeps": lambda: floor.spread(sleep_n, 0.01, False),
    }
    best: dict[str, dict[str, float]] = {"floor": {}, "memory": {}, "duckdb": {}}
    cpu: dict[str, dict[str, list[tuple[float, float, int, int]]]] = {"memory": {}, "duckdb": {}}
    before: dict[str, dict[str, list[tuple[float, float]]]] = {"memory": {}, "duckdb": {}}
    try:
        for name, (wf, _) in shapes.items():
            made: fl.Workflow | Callable[[], fl.Workflow] = builders[name] if args.fresh else wf
            jobs = {"floor": floor_jobs[name],
                    "memory": session_runner(mem, made, cpu["memory"].setdefault(name, []),
                                             before["memory"].setdefault(name, [])),
                    "duckdb": session_runner(duck, made, cpu["duckdb"].setdefault(name, []),
                                             before["duckdb"].setdefault(name, []))}
            for job in jobs.values():
                job()  # warm-up: workers started, workflow shipped, code paths hot
            for runs in cpu.values():
                runs[name].clear()
            for parts in before.values():
                parts[name].clear()
            # short workloads are cheap: more turns make the best one a better estimate
            turns = {"chain": 3 * repeat, "fan-out": 2 * repeat}.get(name, max(1, repeat // 2))
            for _ in range(turns):
                for kind, job in jobs.items():
                    took = job()
                    best[kind][name] = min(best[kind].get(name, took), took)
    finally:
        floor.close()
        mem.close()
        duck.close()
        tmp.cleanup()
    floor_t, mem_t, duck_t = best["floor"], best["memory"], best["duckdb"]

    if args.fresh:
        print("each Session run builds its workflow afresh inside the timing (build + submit + run + wait)")
    print(f"{'workload':<10} {'steps':>6} {'floor':>12} {'memory':>12} {'duckdb':>12} "
          f"{'mem/floor':>10} {'duck/mem':>9}")
    for name, (_, n) in shapes.items():
        f, m, d = (x[name] / n * 1e6 for x in (floor_t, mem_t, duck_t))
        print(f"{name:<10} {n:>6} {f:>9.0f} us {m:>9.0f} us {d:>9.0f} us {m / f:>9.2f}x {d / m:>8.2f}x")
    print(f"(the chain's floor hands steps to both workers in turn and waits on both pipes, as a broker "
          f"must;\n one worker ping-ponged with a blocking receive, the strict lower bound, takes {strict:.0f} us)")
    print(f"\nsleeps ({sleep_n} x 10 ms, serial {serial:.2f} s): speed-up with 2 workers — "
          f"floor {serial / floor_t['sleeps']:.2f}x, memory {serial / mem_t['sleeps']:.2f}x, "
          f"duckdb {serial / duck_t['sleeps']:.2f}x")
    print("\nCPU per step (median of the turns): kernel process / the two worker processes")
    for name, (_, n) in shapes.items():
        line = []
        for kind in ("memory", "duckdb"):
            runs = sorted(cpu[kind][name])
            k, w, _, _ = runs[len(runs) // 2] if runs else (0.0, 0.0, 0, 0)
            line.append(f"{kind} {k / n * 1e6:6.0f} / {w / n * 1e6:4.0f} us")
        print(f"{name:<10} {'   '.join(line)}")
    print("\nwake-ups per step (voluntary context switches, median of the turns): kernel process / workers\n"
          "(a wait caught by a spin costs none; a chain step is one round trip: about 1 on each side asleep)")
    for name, (_, n) in shapes.items():
        line = []
        for kind in ("memory", "duckdb"):
            runs = sorted(cpu[kind][name], key=lambda r: r[2])
            ks = runs[len(runs) // 2][2] if runs else 0
            runs = sorted(cpu[kind][name], key=lambda r: r[3])
            ws = runs[len(runs) // 2][3] if runs else 0
            line.append(f"{kind} {ks / n:5.2f} / {ws / n:4.2f}")
        print(f"{name:<10} {'   '.join(line)}")
    print(f"spin: {spin_seconds() * 1e6:.0f} us, prefetch: {args.prefetch}")
    print("targets (issue 12): chain mem/floor <= 1.30x, fan-out mem/floor <= 1.41x, duck/mem <= 1.08x; "
          "speed-up >= 1.9x")
    if args.fresh:
        print("\nmain thread before each run (median of the turns): build + submit, per run")
        for name in shapes:
            line = []
            for kind in ("memory", "duckdb"):
                parts = before[kind][name]
                b = sorted(p[0] for p in parts)[len(parts) // 2] if parts else 0.0
                sub = sorted(p[1] for p in parts)[len(parts) // 2] if parts else 0.0
                line.append(f"{kind} {b * 1e3:5.2f} + {sub * 1e3:5.2f} ms")
            print(f"{name:<10} {'   '.join(line)}   (a run of the floor: {floor_t[name] * 1e3:.2f} ms)")
        fan = mem_t["fan-out"] / floor_t["fan-out"]
        chain = mem_t["chain"] / floor_t["chain"]
        print(f"targets (issue 13, fresh-built end to end): fan-out mem/floor {fan:.2f}x <= 2x -> "
              f"{'OK' if fan <= 2 else 'MISSED'}; chain mem/floor {chain:.2f}x <= 1.5x -> "
              f"{'OK' if chain <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
