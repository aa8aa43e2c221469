"""Overheads of the Fuseline-parity features, against baselines run in the same process.

- ``run_async`` vs ``run``: per-step cost of the async loop on a 1→1000→1
  fan-out of no-op steps (plain steps go through a helper thread, async
  steps through tasks).
- Concurrency: 200 async steps each awaiting 20 ms, against the 4 s they
  would take one after another.
- ``BatchWorkflow`` with ``PoolEngine(8)``: 16 parameter sets of a step that
  sleeps 50 ms, against the same batch run sequentially.
- Tracing: the 1→1000→1 fan-out with ``trace=path`` against no tracing.
- YAML: export and load a 2,000-step chain.

Targets: the async loop ≤ 5× the sync loop per plain step (each plain step
hops to a helper thread and back so the event loop never blocks); 200
concurrent 20 ms steps finish in < 0.5 s; the pooled batch ≥ 5× faster than
the sequential one; tracing ≤ 10× the untraced per-step cost (it writes and
flushes a JSON line per event, about five events per step); YAML export and
load of 2,000 steps < 0.5 s each (libyaml).

Run: ``.venv/bin/python benchmarks/bench_parity.py``
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import tempfile
import time
from collections.abc import Callable

from fuseline_nb import (
    AsyncStep,
    AsyncWorkflow,
    BatchWorkflow,
    FunctionStep,
    PoolEngine,
    Workflow,
)
from fuseline_nb.workflow.exporters import YamlExporter, load_yaml


def noop() -> None:
    return None


def fan(width: int, cls: type[Workflow] = Workflow, **kw: object) -> Workflow:
    head, tail = FunctionStep(noop, name="head"), FunctionStep(noop, name="tail")
    for i in range(width):
        head >> FunctionStep(noop, name=f"m{i}") >> tail
    return cls(outputs=[tail], **kw)


class AsyncNoop(AsyncStep):
    async def run_step_async(self, _setup_res: object) -> None:
        return None


class AsyncNap(AsyncStep):
    async def run_step_async(self, _setup_res: object) -> None:
        await asyncio.sleep(0.02)


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    n = 1000
    sync_wf = fan(n, AsyncWorkflow)
    t_sync = best_of(lambda: sync_wf.run())
    t_async = best_of(lambda: asyncio.run(sync_wf.run_async()))
    print(f"fan-out 1→{n}→1, plain steps: run {t_sync / (n + 2) * 1e6:.1f} µs/step, "
          f"run_async {t_async / (n + 2) * 1e6:.1f} µs/step, ratio {t_async / t_sync:.2f}×")

    async_steps = [AsyncNoop(name=f"a{i}") for i in range(n)]
    async_wf = AsyncWorkflow(outputs=async_steps)
    t_async_only = best_of(lambda: asyncio.run(async_wf.run_async()))
    print(f"{n} independent async no-op steps: run_async {t_async_only / n * 1e6:.1f} µs/step")

    naps = AsyncWorkflow(outputs=[AsyncNap(name=f"n{i}") for i in range(200)])
    t_naps = best_of(lambda: asyncio.run(naps.run_async()), repeat=2)
    print(f"200 async steps × 20 ms: {t_naps:.3f} s (sequential would be 4.0 s, "
          f"speed-up {4.0 / t_naps:.0f}×)")

    def nap(i: int) -> int:
        time.sleep(0.05)
        return i

    batch = BatchWorkflow(outputs=[FunctionStep(nap)])
    sets = [{"i": i} for i in range(16)]
    t_seq = best_of(lambda: batch.run(sets), repeat=1)
    t_pool = best_of(lambda: batch.run(sets, PoolEngine(8)), repeat=2)
    print(f"BatchWorkflow 16 sets × 50 ms: sequential {t_seq:.3f} s, PoolEngine(8) {t_pool:.3f} s, "
          f"speed-up {t_seq / t_pool:.1f}×")

    plain = fan(n)
    path = os.path.join(tempfile.mkdtemp(), "bench.jsonl")
    traced = fan(n, trace=path)
    t_plain = best_of(lambda: plain.run())
    t_traced = best_of(lambda: traced.run())
    print(f"tracing, fan-out 1→{n}→1: untraced {t_plain / (n + 2) * 1e6:.1f} µs/step, traced "
          f"{t_traced / (n + 2) * 1e6:.1f} µs/step, ratio {t_traced / t_plain:.2f}×")

    steps = [FunctionStep(noop, name=f"s{i}") for i in range(2000)]
    for a, b in itertools.pairwise(steps):
        a >> b
    chain = Workflow(outputs=[steps[-1]])
    yaml_path = os.path.join(tempfile.mkdtemp(), "chain.yaml")
    t_export = best_of(lambda: chain.export(yaml_path))
    t_load = best_of(lambda: load_yaml(yaml_path))
    assert load_yaml(yaml_path) == chain.to_schema()
    size = len(YamlExporter().dumps(chain))
    print(f"YAML, 2,000-step chain ({size / 1e3:.0f} kB): export {t_export * 1e3:.0f} ms, "
          f"load {t_load * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
