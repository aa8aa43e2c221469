"""Workflows the HTTP tests import by module path (``tests.http_workflows:NAME``).

Worker processes started through the CLI import them, so they live in a
module, not in the test file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fuseline_nb import Depends, FunctionStep, Step, Workflow


class Check(Step):
    """Routes on ``n``: ``"big"`` or ``"small"``."""

    def run_step(self, n: int) -> str:
        return "big" if n > 10 else "small"


class Big(Step):
    """The ``"big"`` branch."""

    def run_step(self, n: int) -> int:
        return n * 100


class Small(Step):
    """The ``"small"`` branch (skipped when ``n`` is big)."""

    def run_step(self, n: int) -> int:
        return n


class Explode(Step):
    """Fails after the branch."""

    def run_step(self, value: int = Depends(Big)) -> int:
        raise ValueError(f"cannot handle {value}")


class AfterExplode(Step):
    """Cancelled: it needs the failed step."""

    def run_step(self, value: int = Depends(Explode)) -> int:
        return value


class Independent(Step):
    """A root on its own: keeps running after the failure elsewhere."""

    def run_step(self, n: int) -> tuple[int, str]:
        return (n, "tuple results travel pickled")


def _branchy() -> Workflow:
    check, big, small = Check(), Big(), Small()
    (check - "big") >> big
    (check - "small") >> small
    explode = Explode()
    after = AfterExplode()
    big >> explode
    return Workflow(outputs=[after, small, Independent()], workflow_id="http-branchy")


branchy = _branchy()


class Slow(Step):
    """Writes its pid to ``marker`` (so a test can kill it mid-step), then sleeps."""

    def run_step(self, marker: str, seconds: float = 3.0) -> int:
        path = Path(marker)
        if not path.exists():  # only the first attempt is slow
            path.write_text(str(os.getpid()))
            time.sleep(float(seconds))
        return os.getpid()


class AfterSlow(Step):
    """Needs Slow."""

    def run_step(self, pid: int = Depends(Slow)) -> str:
        return f"after {pid}"


slow = Workflow(outputs=[AfterSlow()], workflow_id="http-slow")


def _tick(i: int, delay: float) -> int:
    time.sleep(delay)
    return i


def _chain(length: int = 12) -> Workflow:
    steps = [FunctionStep(lambda delay=0.2: _tick(0, delay), name="tick0")]
    for i in range(1, length):
        s = FunctionStep(lambda delay=0.2, i=i: _tick(i, delay), name=f"tick{i}")
        steps[-1] >> s
        steps.append(s)
    return Workflow(outputs=[steps[-1]], workflow_id="http-chain")


chain = _chain()


big = Workflow(outputs=[FunctionStep(lambda: b"x" * 300_000, name="huge")], workflow_id="http-big")


def _bad_file_name() -> int:
    name = b"report-\xff.csv".decode("utf-8", "surrogateescape")  # as os.listdir returns it
    raise ValueError(f"bad {name}")


#: A step whose error text holds a lone surrogate (issue 18: it must not kill the worker).
surrogate_error = Workflow(outputs=[FunctionStep(_bad_file_name, name="read")], workflow_id="http-surrogate")


class ReprRaises:
    """A poison input: its ``__repr__`` raises (previews cannot be made)."""

    def __init__(self, tag: int = 0) -> None:
        self.tag = tag

    def __repr__(self) -> str:
        raise RuntimeError("repr boom")


def _soak_src(x: object) -> int:
    if x == "fail":
        raise ValueError("bad " + b"name-\xff".decode("utf-8", "surrogateescape"))
    return 1


def _soak(width: int = 50) -> Workflow:
    """One source step and ``width - 1`` steps after it (the soak test's run)."""
    src = FunctionStep(_soak_src, name="src")
    leaves = []
    for i in range(width - 1):
        leaf = FunctionStep(lambda i=i: i, name=f"leaf{i}")
        src >> leaf
        leaves.append(leaf)
    return Workflow(outputs=leaves, workflow_id="soak")


soak = _soak()


def _hold_the_gil(n: int) -> int:
    return sum(range(int(n)))  # one C call: the process's own heartbeat thread cannot run meanwhile


#: One step that holds the GIL as long as ``n`` says (issue 18: its lease must outlive it).
gil = Workflow(outputs=[FunctionStep(_hold_the_gil, name="hold")], workflow_id="http-gil")


def _hanging() -> Workflow:
    from fuseline_nb import StepTimeoutPolicy

    step = FunctionStep(_hold_the_gil, name="hang", policies=[StepTimeoutPolicy(1.0)])
    return Workflow(outputs=[step], workflow_id="http-hang")


#: One step that holds the GIL past its 1 s StepTimeoutPolicy (so only killing its process stops it).
hanging = _hanging()
