"""A worker process as the kernel's channel server sees it.

:class:`Endpoint` holds a worker's pipe, process, broker id and the
assignments it holds (:class:`Busy`, the first one running);
:class:`Supervisor` is what the server asks of its pool.

Examples
--------
>>> ep = Endpoint("w1", None, None)
>>> ep.worker_id, ep.busy
(None, None)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from .channel import WorkflowBlob
from .latency import FrameReader


@dataclass(slots=True)
class Busy:
    """The assignment a worker process is running, as the kernel tracks it."""

    workflow_id: str
    version: str
    run_id: str
    step: str
    attempt: int
    timeout: float | None  # the step's StepTimeoutPolicy, if any
    deadline: float | None = None  # time.monotonic() by which it must report, once started


class Endpoint:
    """One worker process as the kernel sees it: its pipe, process and state."""

    __slots__ = ("conn", "fast", "held", "label", "parked", "pid", "process", "reader", "shipped", "worker_id")

    def __init__(self, label: str, conn: Any, process: Any) -> None:
        self.label = label
        self.conn = conn
        self.reader = FrameReader(conn)  # the kernel reads the pipe through it, never conn.recv
        self.process = process
        self.pid: int | None = None
        self.worker_id: str | None = None  # the broker's id, once registered
        self.parked: tuple[str, str | None] | None = None  # an unanswered get: (kind, worker id)
        #: Assignments handed out and not reported yet, in order; the first one is running.
        self.held: deque[Busy] = deque()
        self.fast = False  # whether its last step took under PREFETCH_BELOW seconds
        self.shipped = 0  # how many of the pool's workflows this process has

    @property
    def busy(self) -> Busy | None:
        """The assignment the process is running now, if any."""
        return self.held[0] if self.held else None

    def __repr__(self) -> str:
        return f"<Endpoint {self.label} pid={self.pid} worker={self.worker_id}>"


class Supervisor(Protocol):
    """What the server asks of its pool."""

    def workflow_blobs(self) -> list[WorkflowBlob]:
        """Every workflow of the pool, in the order they were added."""

    def on_exit(self, ep: Endpoint) -> None:
        """``ep``'s process ended (the server has stopped watching it)."""

    def on_timeout(self, ep: Endpoint) -> None:
        """``ep``'s step passed its deadline (``ep.busy`` says which)."""

    def on_cancel(self, ep: Endpoint) -> None:
        """``ep`` holds a step of a cancelled run: stop its process."""

    def on_load_error(self, ep: Endpoint, text: str) -> None:
        """``ep`` could not load the shipped workflows."""

    def keep_leases(self) -> None:
        """Extend the leases of the steps live processes hold (called every lease / 3)."""


Reply = tuple[Any, ...] | None  # None: parked, or a one-way message


__all__ = ["Busy", "Endpoint", "Reply", "Supervisor"]
