"""What a RunView costs: the same 1,000-step run with and without a view, and recolouring.

Run: ``.venv/bin/python benchmarks/bench_views.py``

1. A 1,000-step workflow (50 chains of 20) runs on a MemoryBroker with a
   ProcessEngine in a thread of this process — the worst case for a view,
   which shares the interpreter with the broker and the worker. Rounds
   alternate without and with a RunView attached; the view's widgets send
   through a comm that JSON-encodes every message, as a kernel would.
   Target: median wall time with a view within 10% of without.
2. Recolouring a 500-node graph (no Graphviz call): the painted SVG for new
   states, and a whole panel update. Target: under 20 ms.
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
from fuseline_nb.views.palette import VIEW_STATES
from fuseline_nb.views.panel import Panel
from fuseline_nb.views.runstate import RunState
from fuseline_nb.views.widgets import RunView
from fuseline_nb.worker import ProcessEngine
from fuseline_nb.workflow.schema import EdgeSchema, StepSchema, WorkflowSchema


class JsonComm:
    """A comm that encodes each message as the kernel would, and counts bytes."""

    kernel = "bench"
    sent_bytes = 0
    messages = 0

    def __init__(self, **kwargs: Any) -> None:
        self.comm_id = kwargs.get("comm_id") or f"c{id(self)}"

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, callback: Any) -> None:
        pass

    def send(self, data: Any = None, buffers: Any = None, **kwargs: Any) -> None:
        JsonComm.sent_bytes += len(json.dumps(data))
        JsonComm.messages += 1

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


def work(delay: float = 0.0) -> int:
    if delay:
        time.sleep(delay)
    return 1


def build(chains: int = 50, length: int = 20) -> Workflow:
    ends = []
    for c in range(chains):
        prev = FunctionStep(work, name=f"c{c}_0")
        for i in range(1, length):
            nxt = FunctionStep(work, name=f"c{c}_{i}")
            _ = prev >> nxt
            prev = nxt
        ends.append(prev)
    return Workflow(outputs=ends, workflow_id="bench_views")


def one_run(wf: Workflow, with_view: bool, delay: float, listen: bool = False) -> tuple[float, float, int]:
    broker = MemoryBroker()
    if listen:  # a subscriber that does nothing, as a Session always has one
        broker.subscribe(lambda event: None)
    engine = ProcessEngine(LocalBrokerClient(broker), [wf])
    run_id = broker.dispatch_workflow(wf.to_schema(), {"delay": delay})
    view = RunView(broker, run_id) if with_view else None  # layout happens here, before the clock
    start = time.perf_counter()
    t = threading.Thread(target=engine.work)
    t.start()
    t.join()
    run_done = time.perf_counter() - start
    if view is not None:
        view.join(timeout=30)  # until the view has shown the end
    shown = time.perf_counter() - start
    updates = view.updates if view is not None else 0
    if view is not None:
        view.close()
    broker.close()
    return run_done, shown, updates


def bench_run(delay: float, rounds: int) -> None:
    wf = build()
    one_run(wf, False, delay)  # warm up imports and caches
    one_run(wf, True, delay)
    bare, listened, viewed, shown, ups = [], [], [], [], []
    for _ in range(rounds):
        bare.append(one_run(wf, False, delay)[0])
        listened.append(one_run(wf, False, delay, listen=True)[0])
        t, s, u = one_run(wf, True, delay)
        viewed.append(t)
        shown.append(s)
        ups.append(u)
    b, v, s = statistics.median(bare), statistics.median(viewed), statistics.median(shown)
    u, ln = statistics.median(ups), statistics.median(listened)
    print(f"1,000-step run, step work {delay * 1000:.0f} ms, {rounds} rounds each (median):")
    print(f"  without view                 {b:7.3f} s")
    print(f"  without view, 1 no-op sub.   {ln:7.3f} s   ratio {ln / b:.3f} (the broker builds events)")
    print(f"  with RunView, run done       {v:7.3f} s   ratio {v / b:.3f} ({(v / b - 1) * 100:+.1f}%, "
          "target within +10%)")
    print(f"  with RunView, end shown      {s:7.3f} s   ratio {s / b:.3f} ({(s / b - 1) * 100:+.1f}%)"
          f"   view updates per run {u:.0f}")


def schema_of(n: int) -> WorkflowSchema:
    steps = tuple(StepSchema(f"s{i}") for i in range(n))
    edges = tuple(EdgeSchema(f"s{i}", f"s{i + 25}") for i in range(n - 25))
    return WorkflowSchema("bench_500", steps=steps, edges=edges)


def bench_recolour(n: int = 500, repeats: int = 50) -> None:
    schema = schema_of(n)
    t0 = time.perf_counter()
    panel = Panel(schema, run_id="bench", max_nodes=n)
    layout = time.perf_counter() - t0
    assert panel.painter is not None, "this benchmark needs Graphviz's dot"
    rs = RunState(schema.step_names)
    names = list(schema.step_names)
    paint, show = [], []
    for k in range(repeats):
        for i, name in enumerate(names):  # every node changes colour each round
            rs.steps[name].state = VIEW_STATES[(i + k) % len(VIEW_STATES)]
        states = rs.states()
        t = time.perf_counter()
        panel.graph_value(states)
        paint.append(time.perf_counter() - t)
        t = time.perf_counter()
        panel.show(rs)
        show.append(time.perf_counter() - t)
    size = len(panel.graph.value)
    print(f"{n}-node graph: layout once with dot {layout * 1000:.0f} ms; SVG {size / 1024:.0f} KiB")
    print(f"  recolour (new SVG for new states)  median {statistics.median(paint) * 1000:6.2f} ms"
          f"  max {max(paint) * 1000:6.2f} ms  (target < 20 ms)")
    print(f"  whole panel update (all widgets)    median {statistics.median(show) * 1000:6.2f} ms"
          f"  max {max(show) * 1000:6.2f} ms")


def main() -> None:
    comm.create_comm = JsonComm  # widgets send through it: JSON-encoded like a kernel
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    bench_recolour()
    bench_run(0.001, rounds)
    bench_run(0.0, rounds)
    print(f"(widget messages sent {JsonComm.messages:,}, {JsonComm.sent_bytes / 1e6:.1f} MB JSON)")


if __name__ == "__main__":
    main()
