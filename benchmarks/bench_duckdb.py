"""DuckDB history overhead: DuckDBBroker (a file) vs MemoryBroker, side by side in one run.

Per-step cost of ``dispatch + ProcessEngine(LocalBrokerClient(broker), [wf]).work()``
with no-op steps, so the figure is the broker's own overhead. Targets:
ratio DuckDB/memory <= 1.25 on a 200-step chain and on a 1 -> 1000 -> 1 fan-out;
``SELECT state, count(*) FROM steps GROUP BY state`` over 1,000,000 step rows
under 200 ms. Also printed, without a target: the time of the flush that makes a
run durable (it runs on the flusher thread, off the per-step path), and a
sustained series of runs long enough for background flushes to overlap the work.

Run: ``.venv/bin/python benchmarks/bench_duckdb.py`` (``--quick`` for fewer repeats).
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from fuseline_nb import FunctionStep, Workflow
from fuseline_nb.broker import DuckDBBroker, MemoryBroker, StorageBroker
from fuseline_nb.broker.clients import LocalBrokerClient
from fuseline_nb.worker import ProcessEngine

TARGET_RATIO = 1.25
TARGET_QUERY_MS = 200.0


def noop() -> None:
    """A step that does nothing, so only the broker's cost is measured."""


def chain(n: int) -> Workflow:
    """s0 >> s1 >> ... >> s{n-1}."""
    steps = [FunctionStep(noop, name=f"s{i}") for i in range(n)]
    for a, b in itertools.pairwise(steps):
        a >> b
    return Workflow(outputs=[steps[-1]], workflow_id=f"chain{n}")


def fan(n: int) -> Workflow:
    """root >> m0..m{n-1} >> join (an AND join of n)."""
    root, join = FunctionStep(noop, name="root"), FunctionStep(noop, name="join")
    for i in range(n):
        m = FunctionStep(noop, name=f"m{i}")
        root >> m
        m >> join
    return Workflow(outputs=[join], workflow_id=f"fan{n}")


def timed_runs(make: Callable[[], StorageBroker], wf: Workflow, runs: int) -> tuple[float, float]:
    """Seconds for ``runs`` runs of ``wf`` (dispatch + work), then seconds of the flush after them."""
    broker = make()
    try:
        client = LocalBrokerClient(broker)
        engine = ProcessEngine(client, [wf])
        schema = wf.to_schema()
        flush = getattr(broker, "flush", lambda: None)
        flush()
        t0 = time.perf_counter()
        for _ in range(runs):
            client.dispatch_workflow(schema)
            engine.work()
        elapsed = time.perf_counter() - t0
        t1 = time.perf_counter()
        flush()
        return elapsed, time.perf_counter() - t1
    finally:
        broker.close()


def compare(label: str, wf: Workflow, tmp: Path, repeats: int, runs: int = 1) -> float:
    """Alternate memory and DuckDB ``repeats`` times; print medians; return the ratio."""
    files = iter(range(10**6))
    kinds: dict[str, Callable[[], StorageBroker]] = {
        "memory": MemoryBroker,
        "duckdb": lambda: DuckDBBroker(tmp / f"{label}-{next(files)}.duckdb"),
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    flushes: list[float] = []
    for _ in range(repeats):
        for kind, make in kinds.items():
            elapsed, flushed = timed_runs(make, wf, runs)
            times[kind].append(elapsed)
            if kind == "duckdb":
                flushes.append(flushed)
    steps = len(wf.steps) * runs
    mem, duck = (statistics.median(times[k]) for k in kinds)
    ratio = duck / mem
    print(f"{label:<22} {steps:>6} steps  memory {mem / steps * 1e6:6.1f} us/step  "
          f"duckdb {duck / steps * 1e6:6.1f} us/step  ratio {ratio:4.2f}  "
          f"(final flush {statistics.median(flushes) * 1e3:5.1f} ms)")
    return ratio


def group_by_query(tmp: Path, rows: int, repeats: int) -> float:
    """Bulk-load ``rows`` synthetic step rows, then time GROUP BY state on the ``steps`` view (ms)."""
    states = ["SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"]
    per_run = 1000
    table = pa.table({
        "run_id": [f"run{i // per_run:06d}" for i in range(rows)],
        "step": [f"s{i % per_run}" for i in range(rows)],
        "state": [states[(i * 7) % 4] for i in range(rows)],
        "attempts": pa.array([1] * rows, pa.int32()),
        "started_at": [1.7e9 + i * 0.01 for i in range(rows)],
        "finished_at": [1.7e9 + i * 0.01 + 0.005 for i in range(rows)],
    })
    with DuckDBBroker(tmp / "million.duckdb") as broker:
        st = broker.storage
        t0 = time.perf_counter()
        with st._io_lock:  # the benchmark writes the internal table directly: a bulk load
            st._con.register("bench_rows", table)
            st._execute("INSERT INTO fl_steps (run_id, step, state, attempts, started_at, finished_at) "
                        "SELECT * FROM bench_rows")
            st._con.unregister("bench_rows")
            st._execute("CHECKPOINT")
        load = time.perf_counter() - t0
        query = "SELECT state, count(*) FROM steps GROUP BY state ORDER BY state"
        result = broker.sql(query).fetchall()
        assert sum(n for _, n in result) == rows, result
        samples = []
        for _ in range(repeats):
            t1 = time.perf_counter()
            broker.sql(query).fetchall()
            samples.append(time.perf_counter() - t1)
    ms = statistics.median(samples) * 1e3
    print(f"GROUP BY state over {rows:,} step rows: median {ms:.1f} ms, best {min(samples) * 1e3:.1f} ms "
          f"(bulk load {load:.2f} s) -> {result}")
    return ms


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    repeats = 3 if quick else 9
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        compare("warm-up", chain(50), tmp, 2)
        print("-- per-step overhead (median of", repeats, "alternating repeats) --")
        r_chain = compare("chain 200", chain(200), tmp, repeats)
        r_fan = compare("fan-out 1->1000->1", fan(1000), tmp, repeats)
        r_sustained = compare("sustained 25 x chain 200", chain(200), tmp, max(3, repeats // 3), runs=25)
        print("-- history query --")
        ms = group_by_query(tmp, 1_000_000, 3 if quick else 7)
    ok = r_chain <= TARGET_RATIO and r_fan <= TARGET_RATIO and ms < TARGET_QUERY_MS
    print(f"targets: chain ratio {r_chain:.2f} <= {TARGET_RATIO}, fan-out ratio {r_fan:.2f} <= {TARGET_RATIO}, "
          f"query {ms:.1f} ms < {TARGET_QUERY_MS:.0f} ms: {'MET' if ok else 'MISSED'} "
          f"(sustained ratio {r_sustained:.2f}, no target)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
