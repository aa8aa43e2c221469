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
in a DuckDB file runs the same shapes as workflows.

The three take turns, many times (``--repeat`` scales the turns: 35 on the
chain, 20 on the fan-out by default), in a rotating order, so a busy machine
slows them alike; each figure is the median of the turns, with the fastest
and the slowest beside it, and the ratios are those of the medians (of the
fastest turns in brackets: how this benchmark reported before). Before each
turn the DuckDB session's last run is written to its file (outside the
timing, and timed: "written ... after wait()"): its flusher thread lives in
this process, and that write would otherwise fall into the next turn,
whichever kind it is (``--no-settle`` runs the turns back to back anyway).

On a 2-core machine a round trip between two processes costs very
different times whether both sides share one CPU or run on two; which one
the scheduler picks varies from run to run (the floor: ~40 µs a step on one
CPU, ~60-75 on two; a spinning pool the other way round). So the chain's
turns say where they ran: the floor's parent and worker, and the pool's
channel thread and running worker (from ``/proc``: one CPU, two, or moved).

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

``--pin one`` keeps this process and every worker on one CPU (each hand-off a
switch on that CPU: a step costs both sides' CPU); ``--pin two`` keeps this
process on one CPU and every worker process on another (each side waits on
its own CPU). Without ``--pin`` the scheduler decides, and says so in the
"where the chain ran" lines; with it, the floor and the sessions run in the
same placement, so their ratio compares like with like.

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

from _procstat import pin
from _turns import Turns, floor_runner, median, modes, session_runner

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller workloads, fewer turns")
    ap.add_argument("--repeat", type=int, default=5, help="scales the number of turns (default 5)")
    ap.add_argument("--no-spin", action="store_true", help="pool waits for replies without spinning")
    ap.add_argument("--prefetch", type=int, default=PREFETCH_DEFAULT,
                    help=f"most assignments a worker holds at once (default {PREFETCH_DEFAULT})")
    ap.add_argument("--fresh", action="store_true",
                    help="build each workflow afresh for every run, inside the timing (a notebook re-running "
                         "its cell): end to end = build + submit + run + wait")
    ap.add_argument("--no-settle", action="store_true",
                    help="start each turn at once, while the DuckDB session may still be writing the history of "
                         "its last run in this process (how this benchmark ran before)")
    ap.add_argument("--pin", choices=("one", "two"),
                    help="one: everything on one CPU; two: this process on one CPU, the workers on another")
    args = ap.parse_args()
    placement = pin_placement(args.pin)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.no_spin:
        os.environ["FUSELINE_NB_SPIN_US"] = "0"  # read by the sessions' servers and their workers
    chain_n, fan_n, sleep_n = (50, 200, 200) if args.quick else (200, 1000, 1000)
    repeat = 1 if args.quick else max(1, args.repeat)
    builders: dict[str, Callable[[], fl.Workflow]] = {
        "chain": lambda: chain_wf(chain_n), "fan-out": lambda: fan_wf(fan_n), "sleeps": lambda: sleeps_wf(sleep_n)}
    shapes = {"chain": (chain_wf(chain_n), chain_n), "fan-out": (fan_wf(fan_n), fan_n + 2),
              "sleeps": (sleeps_wf(sleep_n), sleep_n)}
    # short workloads are cheap: more turns make the median and the spread better estimates
    turn_count = {"chain": 7 * repeat, "fan-out": 4 * repeat, "sleeps": max(1, repeat // 2)}
    t0 = time.perf_counter()
    for _ in range(min(sleep_n, 100)):
        nap()
    serial = (time.perf_counter() - t0) / min(sleep_n, 100) * sleep_n  # measured, not nominal

    # All three stay up side by side (idle workers cost nothing) and take turns on each workload, in a
    # rotating order, so a busy machine skews them alike. Before each turn the DuckDB session's history
    # is written (outside the timing, timed on its own): its flusher thread lives in this process, and
    # writing a run's rows right after the run would otherwise land in the next turn, whichever it is.
    tmp = tempfile.TemporaryDirectory()
    floor = Floor()
    mem = fl.Session(None, workers=2, prefetch=args.prefetch)
    duck = fl.Session(str(Path(tmp.name) / "bench.duckdb"), workers=2, prefetch=args.prefetch)
    kinds = ("floor", "memory", "duckdb")
    results: dict[str, dict[str, Turns]] = {name: {k: Turns() for k in kinds} for name in shapes}
    strict = Turns()
    flushed: dict[str, list[float]] = {name: [] for name in shapes}
    floor_tids = [os.getpid()] + [p.pid for p in floor.procs if p.pid is not None]
    placement(floor_tids[1:])
    try:
        strict_job = floor_runner(lambda: floor.pingpong(chain_n), strict, floor_tids[:2], False)
        floor_jobs = {
            "chain": lambda: floor.chain(chain_n),
            "fan-out": lambda: floor.spread(fan_n, 0.0, True),
            "sleeps": lambda: floor.spread(sleep_n, 0.01, False),
        }
        for name, (wf, _) in shapes.items():
            made: fl.Workflow | Callable[[], fl.Workflow] = builders[name] if args.fresh else wf
            got = results[name]
            placed = name == "chain"
            jobs = {"floor": floor_runner(floor_jobs[name], got["floor"], floor_tids, placed),
                    "memory": session_runner(mem, made, got["memory"], placed),
                    "duckdb": session_runner(duck, made, got["duckdb"], placed)}
            for job in jobs.values():
                job()  # warm-up: workers started, workflow shipped, code paths hot
            placement([p for s in (mem, duck) for p in s.pool.pids()])  # pool workers start lazily
            duck.broker.flush()  # type: ignore[attr-defined]
            for turns in got.values():
                turns.clear()
            for turn in range(turn_count[name]):
                order = kinds[turn % 3:] + kinds[:turn % 3]
                for kind in order:
                    jobs[kind]()
                    if name == "chain" and kind == "floor":
                        strict_job()
                    if kind == "duckdb" and not args.no_settle:
                        t = time.perf_counter()
                        duck.broker.flush()  # type: ignore[attr-defined]
                        flushed[name].append(time.perf_counter() - t)
    finally:
        floor.close()
        mem.close()
        duck.close()
        tmp.cleanup()
    report(args, shapes, results, strict, flushed, serial, chain_n, sleep_n)
    end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) at the start / the end: {load:.2f} / {end:.2f} on {os.cpu_count()} CPUs")


def pin_placement(how: str | None) -> Callable[[list[int]], None]:
    """Pin this process now as ``--pin`` says; returns what pins worker processes once they run."""
    if how is None:
        return lambda pids: None
    cpus = sorted(os.sched_getaffinity(0))
    if how == "two" and len(cpus) < 2:
        raise SystemExit(f"--pin two needs two CPUs; this process may use {cpus}")
    here, there = {cpus[0]}, {cpus[1] if how == "two" else cpus[0]}
    pin([os.getpid()], here)  # threads and processes started from now on inherit it

    def workers(pids: list[int]) -> None:
        pin(pids, there)

    return workers


def report(args: argparse.Namespace, shapes: dict[str, tuple[fl.Workflow, int]],
           results: dict[str, dict[str, Turns]], strict: Turns, flushed: dict[str, list[float]],
           serial: float, chain_n: int, sleep_n: int) -> None:
    us = {name: {kind: [t / n * 1e6 for t in turns.took] for kind, turns in results[name].items()}
          for name, (_, n) in shapes.items()}
    if args.pin:
        print("placement pinned: " + ("this process and every worker on one CPU" if args.pin == "one"
                                       else "this process on one CPU, every worker process on another"))
    if args.fresh:
        print("each Session run builds its workflow afresh inside the timing (build + submit + run + wait)")
    print("us per step: median of the turns (fastest-slowest); ratios of the medians (of the fastest turns)")
    print(f"{'workload':<8} {'steps':>5} {'turns':>5} {'floor':>16} {'memory':>16} {'duckdb':>16} "
          f"{'mem/floor':>16} {'duck/mem':>14}")
    for name, (_, n) in shapes.items():
        f, m, d = (us[name][k] for k in ("floor", "memory", "duckdb"))
        cells = [f"{median(x):5.0f} ({min(x):.0f}-{max(x):.0f})" for x in (f, m, d)]
        print(f"{name:<8} {n:>5} {len(f):>5} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} "
              f"{median(m) / median(f):>7.2f}x ({min(m) / min(f):.2f}x) "
              f"{median(d) / median(m):>6.2f}x ({min(d) / min(m):.2f}x)")
    pp = [t / chain_n * 1e6 for t in strict.took]
    print(f"(the chain's floor hands steps to both workers in turn and waits on both pipes, as a broker must;\n"
          f" one worker ping-ponged with a blocking receive, the strict lower bound, takes {median(pp):.0f} us "
          f"({min(pp):.0f}-{max(pp):.0f}))")
    chain = results["chain"]
    print("where the chain ran (the two busiest threads: floor = this process and a floor worker; ours = the\n"
          "channel thread and the worker running the chain; one CPU = every hand-off a switch on that CPU):")
    for kind in ("floor", "memory", "duckdb"):
        print(f"  {kind:<7} {modes(chain[kind], chain_n)}")
    if any(flushed.values()):
        print("the DuckDB session's history was written before the next turn (outside the timing): "
              + ", ".join(f"{name} {median(x) * 1e3:.1f} ms ({min(x) * 1e3:.1f}-{max(x) * 1e3:.1f}) after wait()"
                          for name, x in flushed.items() if x))
    sleeps_t = {k: median(results["sleeps"][k].took) for k in ("floor", "memory", "duckdb")}
    print(f"\nsleeps ({sleep_n} x 10 ms, serial {serial:.2f} s): speed-up with 2 workers (median turn) — "
          f"floor {serial / sleeps_t['floor']:.2f}x, memory {serial / sleeps_t['memory']:.2f}x, "
          f"duckdb {serial / sleeps_t['duckdb']:.2f}x")
    print("\nCPU per step (median of the turns): kernel process / the two worker processes")
    for name, (_, n) in shapes.items():
        line = []
        for kind in ("memory", "duckdb"):
            runs = results[name][kind].cpu
            k, w = median([r[0] for r in runs]), median([r[1] for r in runs])
            line.append(f"{kind} {k / n * 1e6:6.0f} / {w / n * 1e6:4.0f} us")
        print(f"{name:<10} {'   '.join(line)}")
    print("\nwake-ups per step (voluntary context switches, median of the turns): kernel process / workers\n"
          "(a wait caught by a spin costs none; a chain step is one round trip: about 1 on each side asleep)")
    for name, (_, n) in shapes.items():
        line = []
        for kind in ("memory", "duckdb"):
            runs = results[name][kind].cpu
            line.append(f"{kind} {median([r[2] for r in runs]) / n:5.2f} / {median([r[3] for r in runs]) / n:4.2f}")
        print(f"{name:<10} {'   '.join(line)}")
    print(f"spin: {spin_seconds() * 1e6:.0f} us, prefetch: {args.prefetch}")
    print("targets (issue 12): chain mem/floor <= 1.30x, fan-out mem/floor <= 1.41x, duck/mem <= 1.08x; "
          "speed-up >= 1.9x")
    if args.fresh:
        print("\nmain thread before each run (median of the turns): build + submit, per run")
        for name in shapes:
            line = []
            for kind in ("memory", "duckdb"):
                parts = results[name][kind].before
                line.append(f"{kind} {median([p[0] for p in parts]) * 1e3:5.2f} + "
                            f"{median([p[1] for p in parts]) * 1e3:5.2f} ms")
            print(f"{name:<10} {'   '.join(line)}   (a run of the floor: "
                  f"{median(results[name]['floor'].took) * 1e3:.2f} ms)")
        fan = median(results["fan-out"]["memory"].took) / median(results["fan-out"]["floor"].took)
        chain_r = median(chain["memory"].took) / median(chain["floor"].took)
        print(f"targets (issue 13, fresh-built end to end, medians): fan-out mem/floor {fan:.2f}x <= 2x -> "
              f"{'OK' if fan <= 2 else 'MISSED'}; chain mem/floor {chain_r:.2f}x <= 1.5x -> "
              f"{'OK' if chain_r <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
