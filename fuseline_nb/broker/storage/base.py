"""The storage seam: what a broker persists, and how it reads it back.

The broker keeps live run state in memory and tells the storage what
changed; a storage may write through at once (memory) or batch its writes
(DuckDB). Only the broker calls a storage: one writer.

Examples
--------
>>> from fuseline_nb.broker.storage import MemoryRuntimeStorage, RuntimeStorage
>>> isinstance(MemoryRuntimeStorage(), RuntimeStorage)
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from ...workflow.events import Event
from ...workflow.runinfo import RunInfo, StepInfo
from ...workflow.schema import WorkflowSchema
from ...workflow.status import Status


class RuntimeStorage(ABC):
    """Queue and state of runs.

    Methods take the run id first; the workflow of a run is known from
    :meth:`create_run`.

    Examples
    --------
    >>> from fuseline_nb.broker.storage import MemoryRuntimeStorage
    >>> st = MemoryRuntimeStorage()
    >>> st.create_run("r1", "wf", "1", {"x": 1}, ["a"], created_at=0.0)
    >>> st.enqueue("r1", "a"); st.fetch_next("r1"), st.fetch_next("r1")
    ('a', None)
    """

    # -- workflows -------------------------------------------------------------
    @abstractmethod
    def register_workflow(self, schema: WorkflowSchema) -> None:
        """Remember ``schema`` (idempotent)."""

    @abstractmethod
    def get_workflow(self, workflow_id: str, version: str) -> WorkflowSchema | None:
        """A registered schema, or ``None``."""

    @abstractmethod
    def list_workflows(self) -> list[WorkflowSchema]:
        """Every registered schema."""

    # -- shipped definitions (only a storage kept across processes keeps them) --------------
    def put_definition(self, workflow_id: str, version: str, definition: bytes) -> None:  # noqa: B027
        """Keep the bytes shipped to workers for ``(workflow_id, version)`` (the latest wins).

        Called once per shipped definition, never per step. A storage that
        does not outlive its process keeps nothing (the default).
        """

    def get_definition(self, workflow_id: str, version: str) -> bytes | None:
        """The bytes last stored by :meth:`put_definition`, or ``None``."""
        return None

    # -- runs --------------------------------------------------------------------
    @abstractmethod
    def create_run(self, run_id: str, workflow_id: str, version: str, inputs: dict[str, Any],
                   steps: Iterable[str], created_at: float) -> None:
        """Create a run with every step PENDING."""

    @abstractmethod
    def enqueue(self, run_id: str, step: str) -> None:
        """Put ``step`` on the run's queue (a step already queued is not added twice)."""

    @abstractmethod
    def fetch_next(self, run_id: str) -> str | None:
        """Pop the next queued step of the run, or ``None``."""

    @abstractmethod
    def save_step(self, run_id: str, step: str, info: StepInfo) -> None:
        """Persist the step's record (its result is saved by :meth:`set_result`)."""

    @abstractmethod
    def set_result(self, run_id: str, step: str, result: Any) -> None:
        """Persist a step's result."""

    @abstractmethod
    def get_result(self, run_id: str, step: str) -> Any:
        """A step's stored result (``None`` if none)."""

    @abstractmethod
    def get_inputs(self, run_id: str) -> dict[str, Any]:
        """The run's inputs."""

    @abstractmethod
    def finalize_run(self, run_id: str, state: Status, finished_at: float) -> None:
        """Record that the run ended in ``state``."""

    @abstractmethod
    def record_event(self, event: Event) -> None:
        """Append a lifecycle event to the run's history."""

    # -- reading back ---------------------------------------------------------------
    @abstractmethod
    def load_run(self, run_id: str) -> RunInfo | None:
        """The run with every step's record (results included), or ``None``."""

    @abstractmethod
    def list_runs(self) -> list[RunInfo]:
        """Every run, oldest first, without step records."""

    @abstractmethod
    def unfinished_runs(self) -> list[str]:
        """Ids of runs not finalized, oldest first (to resume after a restart)."""

    @abstractmethod
    def events(self, run_id: str) -> list[Event]:
        """The run's events in order."""

    # -- lifecycle ---------------------------------------------------------------------
    def flush(self) -> None:  # noqa: B027 - write-through storages have nothing to flush
        """Write buffered changes now."""

    def close(self) -> None:  # noqa: B027
        """Flush and release resources; idempotent."""

    def __enter__(self) -> RuntimeStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "RuntimeStorage",
]
