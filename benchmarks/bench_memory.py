"""Kernel memory for one big result: peak RSS of the kernel process / the result's size.

A worker step returns ``os.urandom(size)`` (bytes: its pickle is the size
plus a few bytes); the kernel receives it, keeps it (closed, as its pickle),
writes it to the history, and ``run.wait()`` opens it. Each case runs in a
fresh Python process, and the figure is that process's peak RSS growth
during the run (``ru_maxrss`` after, less the RSS just before) divided by
the size:

``bare``
    the baseline: the kernel makes the same bytes itself (1.0x: the value).
``memory``
    ``Session(workers=1)``, history in memory.
``duckdb``
    ``Session("h.duckdb", workers=1)``, then ``flush()`` (the blob is in the file).
``reopen``
    a new kernel opens that file and reads the result back
    (``broker.get_run(...).steps["big"].result``).

Target (issue 18): about 2x for ``memory`` and ``duckdb`` — the closed value
plus the opened object — and not more than that for ``reopen``.

``--traced`` also prints the peak of Python allocations (``tracemalloc``)
over the same span, per case: the copies fuseline_nb makes itself, without
what native code (DuckDB) or the allocator adds.

Run: ``.venv/bin/python benchmarks/bench_memory.py`` (``--mb 200`` by default;
``--quick``: 64 MB).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

TARGET = 2.2  # "about 2x": the closed pickle and the opened object, plus a little


def big(size: int) -> bytes:
    """The step: ``size`` random bytes (incompressible, pickled as themselves)."""
    return os.urandom(size)


def _rss() -> int:
    """Current RSS in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    """This process's peak RSS in bytes: ``VmHWM`` of its own memory map.

    Not ``ru_maxrss``: Linux carries that over fork and exec, so a child of a big
    parent (pytest late in the suite) starts with the parent's size as its peak
    (6x "growth" measured that way in CI, 2.0x from a shell).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class _Span:
    """The peak RSS growth, and the tracemalloc peak when traced, of the code inside it."""

    def __init__(self, traced: bool) -> None:
        self.traced = traced
        self.grown = self.python = 0

    def __enter__(self) -> _Span:
        self.before = _rss()
        if self.traced:
            tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.grown = _peak() - self.before
        if self.traced:
            self.python = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()


def measure(case: str, size: int, path: str, traced: bool = False) -> tuple[float, float]:
    """Peak RSS growth / ``size`` and traced peak / ``size`` of ``case`` in this process
    (see the module docstring; the second is 0 unless ``traced``)."""
    import fuseline_nb as fl

    wf = fl.Workflow(outputs=[fl.FunctionStep(big)], workflow_id="big")
    span = _Span(traced)
    if case == "bare":
        with span:
            value = os.urandom(size)
        del value
    elif case == "reopen":
        with fl.Session(path, workers=0) as session:
            run_id = session.sql("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1").fetchall()[0][0]
            with span:
                result = session.broker.get_run(run_id).steps["big"].result
            assert len(result) == size
    else:
        with fl.Session(path if case == "duckdb" else None, workers=1) as session:
            assert session.submit(wf, {"size": 10}).wait(timeout=120) is not None  # warm: worker up, code shipped
            with span:
                result = session.submit(wf, {"size": size}).wait(timeout=600)
                if case == "duckdb":
                    session.broker.flush()
            assert len(result) == size
    return span.grown / size, span.python / size


def run_case(case: str, size: int, path: str, traced: bool = False) -> tuple[float, float]:
    """:func:`measure` in a fresh Python process (so the peak is this case's alone)."""
    out = subprocess.run([sys.executable, __file__, "--child", case, str(size), path, str(int(traced))],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return float(got["ratio"]), float(got["traced"])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        case, size, path, traced = argv[1], int(argv[2]), argv[3], argv[4:] == ["1"]
        ratio, python = measure(case, size, path, traced)
        print(json.dumps({"ratio": ratio, "traced": python}))
        return 0
    mb = 64 if "--quick" in argv else int(argv[argv.index("--mb") + 1]) if "--mb" in argv else 200
    size = mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "h.duckdb")
        traced = "--traced" in argv
        ratios = {case: run_case(case, size, path, traced) for case in ("bare", "memory", "duckdb", "reopen")}
    print(f"kernel peak RSS growth / result size, {mb} MB result (target about 2x; bare value = baseline)"
          + ("; python: tracemalloc peak / size" if traced else ""))
    for case, (ratio, python) in ratios.items():
        mark = "" if case == "bare" else "  ok" if ratio <= TARGET else f"  over {TARGET}x"
        print(f"  {case:7s} {ratio:5.2f}x{mark}" + (f"   python {python:5.2f}x" if traced else ""))
    return 0 if all(r <= TARGET for c, (r, _) in ratios.items() if c != "bare") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
