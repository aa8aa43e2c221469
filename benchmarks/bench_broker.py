"""The broker's own cost per step: CPU of handing out and recording steps, and the live state's memory.

A 1→N→1 fan-out of no-op steps is driven in this process the way the
kernel's channel server drives it — two workers, each taking up to ``k``
assignments (``get_steps``) and sending their reports (``report_steps``),
with a result :class:`~fuseline_nb.workflow.value.Value` each, while the
listeners a session has are subscribed (the session's ``run_finished``
listener and a channel server's counting listener) — with no worker
processes and no channel: what is left is the broker (transitions, leases,
events and their listeners, the storage calls). The hand-out and record
figures are the calling thread's CPU (``time.thread_time()``: stable under
load, and without the DuckDB history's flusher thread); "whole process" is
``time.process_time()`` (with ``--duckdb`` it includes the flusher). Memory
is the live run's step records (``broker/records.py``) and its results,
measured in the middle of the run.

Targets (issues 12 + 13, the broker's line of the per-layer budget):
hand-out + record ≤ 8 µs/step (including events and listeners, memory and
DuckDB history alike; measured on a quiet machine), live state ≤ 150 B/step.

Run: ``.venv/bin/python benchmarks/bench_broker.py`` (``--n 50000``,
``--k 8``, ``--duckdb`` for a DuckDB history in a temporary file).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import fuseline_nb as fl
from fuseline_nb.broker import DuckDBBroker, MemoryBroker, StepReport
from fuseline_nb.workflow.status import Status
from fuseline_nb.workflow.value import Value


def noop() -> None:
    return None


def fan(n: int) -> fl.Workflow:
    root, sink = fl.FunctionStep(noop, name="root"), fl.FunctionStep(noop, name="sink")
    for i in range(n):
        m = fl.FunctionStep(noop, name=f"m{i}")
        root >> m
        m >> sink
    return fl.Workflow(outputs=[sink], workflow_id=f"bench-broker-{n}")


class Listeners:
    """What a session subscribes: its ``run_finished`` listener and a channel server's counting one."""

    def __init__(self) -> None:
        self.finished = 0
        self.backlog = 0

    def on_run_finished(self, event: Any) -> None:
        self.finished += 1

    def on_event(self, event: Any) -> None:  # as ChannelServer.on_event: count queued, started
        kind = event.kind
        if kind == "step_queued":
            self.backlog += 1
        elif kind == "step_started":
            self.backlog -= 1
        elif kind == "step_finished" and event.state is Status.CANCELLED:
            self.backlog += 0


def subscribe(broker: Any) -> Listeners:
    listeners = Listeners()
    broker.subscribe(listeners.on_run_finished, kinds=("run_finished",))
    broker.subscribe(listeners.on_event)
    return listeners


def drive(broker: Any, schema: Any, wids: list[str], k: int, half: bool = False) -> dict[str, float]:
    """One run to its end (or to its middle with ``half``): CPU seconds spent handing out and recording."""
    spent = {"get": 0.0, "report": 0.0}
    run_id = broker.dispatch_workflow(schema)
    done, n = 0, len(schema.steps)
    results = [Value.of(None) for _ in range(n)]  # what workers send: made before, as in a worker
    while not half or done < n // 2:
        progressed = False
        for wid in wids:
            t0 = time.thread_time()
            got = broker.get_steps(wid, k)
            spent["get"] += time.thread_time() - t0
            if not got:
                continue
            progressed = True
            now = time.time()
            reports = [StepReport(a.workflow_id, a.instance_id, a.step_name, Status.SUCCEEDED, results[done + i],
                                  attempt=a.attempt, started_at=now, finished_at=now) for i, a in enumerate(got)]
            t0 = time.thread_time()
            out = broker.report_steps(wid, reports)
            spent["report"] += time.thread_time() - t0
            assert not any(out), out
            done += len(got)
        if not progressed:
            break
    spent["run_id"] = run_id  # type: ignore[assignment]
    return spent


def live_bytes(broker: Any, run_id: str, n: int) -> tuple[float, float]:
    """Bytes per step of the live run's step records and of its results dict."""
    run = broker._state.runs[run_id]
    r = run.infos
    arrays = sum(sys.getsizeof(a) for a in (r._has, r.state, r._attempts, r._times, r.worker, r.action, r.result))
    arrays += sum(sys.getsizeof(v) for v in r.rare.values()) + sys.getsizeof(r.rare) + sys.getsizeof(r.opened)
    return arrays / n, sys.getsizeof(run.results) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--k", type=int, default=8, help="assignments per get_steps (a worker's prefetch)")
    parser.add_argument("--duckdb", action="store_true", help="a DuckDB history instead of memory")
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    n = args.n
    schema = fan(n).to_schema()
    with tempfile.TemporaryDirectory() as tmp:
        broker = DuckDBBroker(os.path.join(tmp, "h.duckdb")) if args.duckdb else MemoryBroker()
        try:
            subscribe(broker)  # what a session's broker has listening
            wids = [broker.register_worker([schema], name=f"w{i}") for i in (1, 2)]
            drive(broker, schema, wids, args.k)  # warm-up
            best: dict[str, float] | None = None
            for _ in range(args.turns):
                t0 = time.process_time()
                spent = drive(broker, schema, wids, args.k)
                spent["total"] = time.process_time() - t0
                if best is None or spent["total"] < best["total"]:
                    best = spent
            assert best is not None
            half = drive(broker, schema, wids, args.k, half=True)
            records, results = live_bytes(broker, half["run_id"], n + 2)  # type: ignore[arg-type]
        finally:
            broker.close()
    per = 1e6 / (n + 2)
    print(f"1→{n:,}→1 fan-out, {'DuckDB' if args.duckdb else 'memory'} history, 2 workers taking {args.k} at a "
          f"time, best of {args.turns}, load average {os.getloadavg()[0]:.1f}")
    print(f"  hand-out (get_steps)     {best['get'] * per:6.1f} µs/step")
    print(f"  record (report_steps)    {best['report'] * per:6.1f} µs/step")
    print(f"  hand-out + record        {(best['get'] + best['report']) * per:6.1f} µs/step (target <= 8)")
    print(f"  whole process            {best['total'] * per:6.1f} µs/step (dispatch, the driver, a flusher thread)")
    print(f"  live state, mid-run      {records:6.0f} B/step step records + {results:.0f} B/step results dict")
    print("targets (issues 12 + 13, broker): hand-out + record <= 8 µs/step on a quiet machine, "
          "live state <= 150 B/step")


if __name__ == "__main__":
    main()
