"""What a RunView costs: bytes and CPU per update, and a run with and without a view.

Run: ``.venv/bin/python benchmarks/bench_views.py`` (``--quick``: fewer rounds)

1. Bytes and CPU per update for 8, 500 and 2,000-step runs (chains of 20
   steps; 8 is one chain). The run goes on a MemoryBroker with a
   ProcessEngine in a thread of this process; the view sends through a comm
   that JSON-encodes every message, as a kernel would. "layout" is the
   widget's first message (the SVG, sent once); the updates after it are what
   a run costs. CPU per update is the view thread's own CPU time
   (``time.thread_time`` in that thread) divided by its updates.
   Targets (issue 14): 2,000 steps ≤ 4 KB per update and ≤ 12 updates per
   second; 8 steps ≤ 1 KB per update.
2. A 1,000-step run of 1 ms steps (50 chains of 20), rounds alternating
   without and with a RunView attached — the worst case for a view, which
   shares the interpreter with the broker and the worker. Target: median
   wall time with a view within 10% of without.

The machine is shared with other sessions: the figures are ratios against a
baseline measured in the same run, and medians over alternating rounds.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from typing import Any

import comm

from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.views.widgets import RunView
from fuseline_nb.worker import ProcessEngine


class JsonComm:
    """A comm that encodes each message as the kernel would and records its size and time."""

    kernel = "bench"

    def __init__(self, **kwargs: Any) -> None:
        self.comm_id = kwargs.get("comm_id") or f"c{id(self)}"
        self.opened = len(json.dumps(kwargs.get("data")))
        self.sizes: list[int] = []
        self.times: list[float] = []
        MADE.append(self)

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, callback: Any) -> None:
        pass

    def send(self, data: Any = None, buffers: Any = None, **kwargs: Any) -> None:
        self.sizes.append(len(json.dumps(data, separators=(",", ":"))))
        self.times.append(time.monotonic())

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


MADE: list[JsonComm] = []


def work(delay: float = 0.0) -> int:
    if delay:
        time.sleep(delay)
    return 1


def build(steps: int, length: int = 20) -> Workflow:
    ends = []
    for c in range(max(steps // length, 1)):
        n = min(length, steps)
        prev = FunctionStep(work, name=f"c{c}_0")
        for i in range(1, n):
            nxt = FunctionStep(work, name=f"c{c}_{i}")
            _ = prev >> nxt
            prev = nxt
        ends.append(prev)
    return Workflow(outputs=ends, workflow_id=f"bench_views_{steps}")


class ThreadClock:
    """Wraps a view's push to add up the CPU time its thread spends updating."""

    def __init__(self, view: RunView) -> None:
        self.cpu = 0.0
        push = view._push

        def timed() -> None:
            t0 = time.thread_time()
            push()
            self.cpu += time.thread_time() - t0

        view._push = timed  # type: ignore[method-assign]


def per_update(steps: int, delay: float) -> dict[str, float]:
    wf = build(steps)
    broker = MemoryBroker()
    run_id = broker.dispatch_workflow(wf.to_schema(), {"delay": delay})
    MADE.clear()
    view = RunView(broker, run_id)
    clock = ThreadClock(view)
    c = MADE[-1]
    engine = ProcessEngine(LocalBrokerClient(broker), [wf])
    t0 = time.monotonic()
    threading.Thread(target=engine.work, daemon=True).start()
    view.join(timeout=300)
    elapsed = time.monotonic() - t0
    view.close()
    updates = [s for s in c.sizes[: view.updates]]  # close() sends nothing that counts
    busiest = max((sum(1 for u in c.times if t <= u < t + 1.0) for t in c.times), default=0)
    return {"steps": steps, "layout_kb": c.opened / 1024, "updates": view.updates,
            "mean_b": statistics.mean(updates) if updates else 0.0, "max_b": max(updates, default=0),
            "cpu_ms": 1000 * clock.cpu / max(view.updates - 1, 1), "per_s": busiest, "run_s": elapsed}


def one_run(wf: Workflow, with_view: bool, delay: float) -> float:
    broker = MemoryBroker()
    run_id = broker.dispatch_workflow(wf.to_schema(), {"delay": delay})
    view = RunView(broker, run_id) if with_view else None
    engine = ProcessEngine(LocalBrokerClient(broker), [wf])
    t0 = time.perf_counter()
    engine.work()
    wall = time.perf_counter() - t0
    if view is not None:
        view.join(timeout=30)
        view.close()
    return wall


def main(rounds: int) -> None:
    comm.create_comm = JsonComm  # type: ignore[assignment]
    print("machine shared with other sessions; CPU per update is the view thread's own time\n")
    print(f"{'steps':>6} {'layout':>8} {'updates':>8} {'mean B':>8} {'max B':>7} {'CPU/upd':>9} "
          f"{'max/s':>6} {'run s':>6}")
    for steps, delay in ((8, 0.02), (500, 0.002), (2000, 0.001)):
        r = per_update(steps, delay)
        print(f"{r['steps']:>6} {r['layout_kb']:>6.1f}KB {r['updates']:>8} {r['mean_b']:>8.0f} "
              f"{r['max_b']:>7} {r['cpu_ms']:>7.2f}ms {r['per_s']:>6} {r['run_s']:>6.1f}")
    wf = build(1000)
    one_run(wf, False, 0.0)  # warm up
    without, with_ = [], []
    for _ in range(rounds):
        without.append(one_run(wf, False, 0.001))
        with_.append(one_run(wf, True, 0.001))
    a, b = statistics.median(without), statistics.median(with_)
    print(f"\n1,000 steps of 1 ms, {rounds} alternating rounds: without a view {a:.3f} s, "
          f"with {b:.3f} s (median), ratio {b / a:.3f} (target ≤ 1.10)")


if __name__ == "__main__":
    main(3 if "--quick" in sys.argv else 7)
