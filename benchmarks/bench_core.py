"""Per-step overhead of the core: ``wf.run`` and ``MemoryBroker`` + ``ProcessEngine``.

The broker column is one run on a broker that already knows the workflow
(a live broker compiles a workflow once); the compile column is that
one-time cost, spread per step.

Shapes: a 200-step chain, a 1→1000→1 fan-out and a 1→10,000→1 fan-out of
no-op steps, plus building and running a 2,000-step chain. The baseline, run
in the same process, is a plain loop calling the same no-op functions, so
the figures say what the model adds per step.

Targets (issue 2): ``wf.run`` ≤ 20 µs per step on the 1,000 fan-out; the
10,000 fan-out within 1.5× the per-step cost of the 1,000 one; a 2,000-step
chain builds without RecursionError.

Build figures (issue 13): ``Workflow(...)`` + ``to_schema()`` per step on a
1→1,000→1 fan-out, a 1→100,000→1 fan-out and a 2,000-step chain, in CPU
time (``time.process_time``: on a shared machine wall time mostly measures
the neighbours), beside the wiring (``FunctionStep`` + ``a >> b``) that precedes it. Targets:
≤ 10 µs per step, and the 100,000 fan-out within 1.5× the per-step cost of
the 1,000 one — for the build (wiring + ``Workflow``) and for
``Workflow`` + ``to_schema()``.

Run: ``.venv/bin/python benchmarks/bench_core.py`` (``--build`` for the build figures only)
"""

from __future__ import annotations

import gc
import itertools
import sys
import time
from collections.abc import Callable

from fuseline_nb import FunctionStep, Step, Workflow
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker import ProcessEngine


def noop() -> None:
    return None


def chain(n: int) -> Workflow:
    steps = [FunctionStep(noop, name=f"s{i}") for i in range(n)]
    for a, b in itertools.pairwise(steps):
        a >> b
    return Workflow(outputs=[steps[-1]])


def fan(width: int) -> Workflow:
    head, tail = FunctionStep(noop, name="head"), FunctionStep(noop, name="tail")
    for i in range(width):
        head >> FunctionStep(noop, name=f"m{i}") >> tail
    return Workflow(outputs=[tail])


def best_of(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def floor(n: int) -> Callable[[], None]:
    fns = [noop] * n

    def run() -> None:
        for f in fns:
            f()

    return run


def via_broker(wf: Workflow) -> tuple[Callable[[], None], Callable[[], None]]:
    """(compile, run): registering the workflow with a new broker, then one run on it.

    A live broker compiles a workflow once and runs it many times, so the
    per-step figure is the run; the one-time compile is printed beside it.
    """
    box: dict[str, MemoryBroker] = {}

    def compile_() -> None:
        box["broker"] = MemoryBroker()
        box["broker"].register_worker([wf.to_schema()])

    def run() -> None:
        broker = box["broker"]
        client = LocalBrokerClient(broker)
        run_id = client.dispatch_workflow(wf.to_schema())
        ProcessEngine(client, [wf]).work()
        assert broker.get_run(run_id).state.value == "SUCCEEDED"

    return compile_, run


def build_figures() -> None:
    """Per-step CPU cost of wiring (``FunctionStep`` + ``>>``), of ``Workflow(...)`` and of ``to_schema()``."""

    def wire_fan(width: int) -> Step:
        head, tail = FunctionStep(noop, name="head"), FunctionStep(noop, name="tail")
        for i in range(width):
            head >> FunctionStep(noop, name=f"m{i}") >> tail
        return tail

    def wire_chain(n: int) -> Step:
        steps = [FunctionStep(noop, name=f"s{i}") for i in range(n)]
        for a, b in itertools.pairwise(steps):
            a >> b
        return steps[-1]

    shapes = [("fan 1→1000→1", wire_fan, 1000, 5), ("fan 1→100000→1", wire_fan, 100_000, 2),
              ("chain 2000", wire_chain, 2000, 5)]
    print(f"{'build (CPU µs/step)':<20}{'steps':>8}{'wire':>8}{'Workflow':>10}{'schema':>8}"
          f"{'build':>8}{'Workflow+schema':>17}")
    build: dict[str, float] = {}
    model: dict[str, float] = {}
    for label, wire, n, repeat in shapes:
        best = [float("inf")] * 3
        for _ in range(repeat):
            gc.collect()
            t0 = time.process_time()
            out = wire(n)
            t1 = time.process_time()
            wf = Workflow(outputs=[out])
            t2 = time.process_time()
            wf.to_schema()
            t3 = time.process_time()
            best = [min(b, t) for b, t in zip(best, (t1 - t0, t2 - t1, t3 - t2), strict=True)]
            del out, wf
        steps = n + 2 if label.startswith("fan") else n
        wire_us, wf_us, schema_us = (b / steps * 1e6 for b in best)
        build[label], model[label] = wire_us + wf_us, wf_us + schema_us
        print(f"{label:<20}{steps:>8}{wire_us:>8.2f}{wf_us:>10.2f}{schema_us:>8.2f}"
              f"{build[label]:>8.2f}{model[label]:>17.2f}")
    small, big = "fan 1→1000→1", "fan 1→100000→1"
    print(f"Workflow+schema per step: {model[small]:.2f} µs on the 1,000 fan-out (target ≤ 10 µs) -> "
          f"{'OK' if model[small] <= 10 else 'MISSED'}")
    for what, per in (("build (wire + Workflow)", build), ("Workflow+schema", model)):
        ratio = per[big] / per[small]
        print(f"{what}: 100,000 vs 1,000 fan-out {ratio:.2f}x (target ≤ 1.5x) -> {'OK' if ratio <= 1.5 else 'MISSED'}")


def main() -> None:
    if "--build" in sys.argv[1:]:
        build_figures()
        return
    shapes = {"chain 200": chain(200), "fan 1→1000→1": fan(1000), "fan 1→10000→1": fan(10_000)}
    print(f"{'shape':<16}{'steps':>7}{'floor µs':>10}{'wf.run µs':>11}{'broker µs':>11}{'compile µs':>12}")
    per_step: dict[str, tuple[float, float]] = {}
    for label, wf in shapes.items():
        n = len(wf)
        repeat = 3 if n > 5000 else 7
        f = best_of(floor(n), repeat) / n * 1e6
        local = best_of(lambda wf=wf: wf.run(), repeat) / n * 1e6
        compile_, run = via_broker(wf)
        comp = best_of(compile_, repeat) / n * 1e6
        broker = best_of(run, repeat) / n * 1e6  # each repeat runs on the last compiled broker
        per_step[label] = (local, broker)
        print(f"{label:<16}{n:>7}{f:>10.2f}{local:>11.2f}{broker:>11.2f}{comp:>12.2f}")
    l1, b1 = per_step["fan 1→1000→1"]
    l10, b10 = per_step["fan 1→10000→1"]
    print(f"\nwf.run per step on the 1,000 fan-out: {l1:.2f} µs (target ≤ 20 µs) -> {'OK' if l1 <= 20 else 'MISSED'}")
    print(f"10,000 vs 1,000 fan-out per-step ratio: wf.run {l10 / l1:.2f}x, broker {b10 / b1:.2f}x (target ≤ 1.5x)")
    t0 = time.perf_counter()
    long = chain(2000)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    long.run()
    print(f"2,000-step chain: built in {build * 1e3:.0f} ms, ran in {(time.perf_counter() - t0) * 1e3:.0f} ms, "
          f"no RecursionError; state {long.state.value}")
    print()
    build_figures()
    print("(best of several runs each; the machine is shared, so figures move by ~10-20%)")


if __name__ == "__main__":
    main()
