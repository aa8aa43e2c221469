"""A worker process as the kernel's channel server sees it.

:class:`Endpoint` holds a worker's pipe, process and broker id;
:class:`Supervisor` is what the server asks of its pool. What a worker
holds is the broker's record alone (``broker.held_by(worker_id)``).

Examples
--------
>>> ep = Endpoint("w1", None, None)
>>> ep.worker_id, ep.shipped
(None, 0)
"""

from __future__ import annotations

from typing import Any, Protocol

from ..broker.state import Assignment
from .channel import WorkflowBlob
from .latency import FrameReader


class Endpoint:
    """One worker process as the kernel sees it: its pipe, process and state."""

    __slots__ = ("conn", "label", "parked", "pid", "process", "reader", "shipped", "step_seconds", "worker_id")

    def __init__(self, label: str, conn: Any, process: Any) -> None:
        self.label = label
        self.conn = conn
        self.reader = FrameReader(conn)  # the kernel reads the pipe through it, never conn.recv
        self.process = process
        self.pid: int | None = None
        self.worker_id: str | None = None  # the broker's id, once registered
        self.parked: tuple[str, str | None] | None = None  # an unanswered get: (kind, worker id)
        self.step_seconds: float | None = None  # the longest step of its last reports (sizes its batches)
        self.shipped = 0  # how many of the pool's workflows this process has

    def __repr__(self) -> str:
        return f"<Endpoint {self.label} pid={self.pid} worker={self.worker_id}>"


class Supervisor(Protocol):
    """What the server asks of its pool."""

    def workflow_blobs(self) -> list[WorkflowBlob]:
        """Every workflow of the pool, in the order they were added.

        The server asks again only after its ``wake()``, a process came or
        went, or a process was sent workflows: a pool that adds a workflow
        wakes the server (and may return the same list, appended to).
        """

    def on_exit(self, ep: Endpoint) -> None:
        """``ep``'s process ended (the server has stopped watching it)."""

    def on_timeout(self, ep: Endpoint, held: Assignment) -> None:
        """``ep``'s step ``held`` passed its ``StepTimeoutPolicy`` (the broker named it)."""

    def on_cancel(self, ep: Endpoint) -> None:
        """The broker says ``ep`` holds a step of a cancelled run: stop its process."""

    def on_load_error(self, ep: Endpoint, text: str, key: tuple[str, str] | None = None) -> None:
        """``ep`` could not load the shipped workflows (``key``: the one that failed, when known)."""

    def keep_leases(self) -> None:
        """Extend the leases of the steps live processes hold (called every lease / 3)."""


Reply = tuple[Any, ...] | None  # None: parked, or a one-way message


__all__ = ["Endpoint", "Reply", "Supervisor"]
