"""The result cache: a cached re-run against a cold one, fingerprint costs against pickling.

Three figures, each a ratio against a baseline measured in this same run:

* a 1 -> 1000 -> 1 fan-out of steps that sleep 10 ms, on 2 worker processes
  with a DuckDB history file: the fully cached re-run against the cold run
  (target: cached <= 3 % of cold);
* fingerprinting a workflow of plain function steps (``wf.fingerprints()``):
  microseconds per step (target: <= 20 us);
* the data fingerprint of a 100 MB NumPy array and of a 1M-row DataFrame
  against pickling the same object (target: <= 0.5x).

Run: ``.venv/bin/python benchmarks/bench_cache.py`` (``--quick``: a 1 -> 200 -> 1 fan-out).
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fuseline_nb as fl
from fuseline_nb.workflow.datafingerprint import data_fingerprint


class Source(fl.Step):
    def run_step(self) -> int:
        return 1


class Leaf(fl.Step):
    def __init__(self, k: int) -> None:
        super().__init__(name=f"leaf{k}")
        self.k = k

    def run_step(self, v: int = fl.Depends(Source)) -> int:
        time.sleep(0.01)
        return v + self.k


class Sink(fl.Step):
    def run_step(self, **results: Any) -> int:
        return len(results)


def fan(n: int) -> fl.Workflow:
    source, sink = Source(), Sink()
    leaves = [Leaf(k) for k in range(n)]
    for leaf in leaves:
        source >> leaf >> sink
    return fl.Workflow(outputs=[sink], workflow_id=f"bench-cache-fan-{n}")


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best(fn: Callable[[], Any], turns: int) -> float:
    return min(timed(fn) for _ in range(turns))


def bench_fan(n: int) -> dict[str, float]:
    wf = fan(n)
    with tempfile.TemporaryDirectory() as tmp, \
            fl.Session(Path(tmp) / "h.duckdb", workers=2, cache=True) as session:
        session.submit(fl.Workflow(outputs=[fl.FunctionStep(lambda: 0, name="warm")])).wait(timeout=60)
        cold = timed(lambda: session.submit(wf, cache=True, rerun=wf.step_names).wait(timeout=600))
        cached = best(lambda: session.submit(wf).wait(timeout=600), 3)
        run = session.submit(wf)
        run.wait(timeout=600)
        n_cached = sum(1 for s in run.info().steps.values() if s.cached)
    return {"cold_s": cold, "cached_s": cached, "ratio": cached / cold, "cached_steps": n_cached}


def plain_steps(n: int) -> fl.Workflow:
    steps = []
    for k in range(n):
        ns: dict[str, Any] = {"__name__": "__main__", "OFFSET": k}
        exec(f"def step{k}(x):\n    return x + OFFSET * 2 + {k}\n", ns)
        steps.append(fl.FunctionStep(ns[f"step{k}"]))
    return fl.Workflow(outputs=steps)


def bench_fingerprints(n: int) -> dict[str, float]:
    wf = plain_steps(n)
    wf.fingerprints()  # code objects hashed once; globals and closures are read every time
    per_step = best(wf.fingerprints, 5) / n
    return {"steps": n, "us_per_step": per_step * 1e6}


def bench_data() -> dict[str, float]:
    import numpy as np
    import pandas as pd

    out: dict[str, float] = {}
    array = np.random.default_rng(1).random(100 * 1024 * 1024 // 8)  # 100 MB of float64
    frame = pd.DataFrame({"id": np.arange(1_000_000), "x": np.random.default_rng(2).random(1_000_000),
                          "name": [f"n{i % 1000}" for i in range(1_000_000)]})
    for label, obj in (("numpy_100MB", array), ("dataframe_1M", frame)):
        fp = best(lambda o=obj: data_fingerprint(o), 3)
        pk = best(lambda o=obj: pickle.dumps(o, protocol=5), 3)
        out[f"{label}_fingerprint_s"], out[f"{label}_pickle_s"], out[f"{label}_ratio"] = fp, pk, fp / pk
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1 -> 200 -> 1 fan-out")
    args = parser.parse_args()
    n = 200 if args.quick else 1000
    fanned = bench_fan(n)
    print(f"fan-out 1->{n}->1 of 10 ms steps, 2 workers, DuckDB file: cold {fanned['cold_s']:.2f} s, "
          f"cached {fanned['cached_s'] * 1000:.1f} ms ({fanned['cached_steps']:.0f} steps cached): "
          f"{fanned['ratio'] * 100:.2f} % of cold (target <= 3 %)")
    fps = bench_fingerprints(500)
    print(f"fingerprints of {fps['steps']:.0f} plain steps: {fps['us_per_step']:.1f} us per step (target <= 20 us)")
    data = bench_data()
    for label in ("numpy_100MB", "dataframe_1M"):
        print(f"data fingerprint of {label}: {data[label + '_fingerprint_s'] * 1000:.1f} ms, pickling it "
              f"{data[label + '_pickle_s'] * 1000:.1f} ms: {data[label + '_ratio']:.2f}x (target <= 0.5x)")


if __name__ == "__main__":
    main()
