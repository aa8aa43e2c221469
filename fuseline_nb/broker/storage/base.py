"""The storage seam: what a broker persists, and how it reads it back.

The broker keeps live run state in memory and tells the storage what
changed; a storage may write through at once (memory) or batch its writes
(DuckDB). Only the broker calls a storage: one writer. The broker hands over
what one call changed through the batch methods (``save_steps``,
``set_results``, ``record_events``, ``enqueue_steps``, ``fetch_steps``);
their defaults call the one-by-one methods, so a storage that implements
only those works unchanged, and one that can take many rows at once
overrides them.

Examples
--------
>>> from fuseline_nb.broker.storage import MemoryRuntimeStorage, RuntimeStorage
>>> isinstance(MemoryRuntimeStorage(), RuntimeStorage)
True
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Final, TypeVar

from ...workflow.events import Event
from ...workflow.runinfo import RunInfo, StepInfo
from ...workflow.schema import WorkflowSchema
from ...workflow.status import Status

R = TypeVar("R", bound="RuntimeStorage")


#: each batch method -> the one-by-one method whose work it does
ONE_BY_ONE: Final = {"enqueue_steps": "enqueue", "fetch_steps": "fetch_next", "save_steps": "save_step",
                     "set_results": "set_result", "record_events": "record_event"}


def batches_match(cls: type[R]) -> type[R]:
    """Class decorator: ``cls``'s own batch methods do the work of its one-by-one methods.

    A subclass that overrides a one-by-one method (``save_step``) but not
    its batch (``save_steps``) then gets the default batch, which calls its
    override: a storage that records or refuses one call at a time still
    sees every call.

    Examples
    --------
    >>> from fuseline_nb.broker.storage import MemoryRuntimeStorage
    >>> class Noting(MemoryRuntimeStorage):
    ...     def save_step(self, run_id, step, info):
    ...         print("saved", step); super().save_step(run_id, step, info)
    >>> st = Noting(); st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
    >>> st.save_steps("r1", [("a", StepInfo())])
    saved a
    """
    cls._batch_singles = {b: getattr(cls, s) for b, s in ONE_BY_ONE.items()
                          if getattr(cls, b) is not getattr(RuntimeStorage, b)}
    return cls


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

    #: batch method -> the one-by-one method it was written with (see :func:`batches_match`)
    _batch_singles: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for batch, single in cls._batch_singles.items():
            if getattr(cls, ONE_BY_ONE[batch]) is not single and batch not in cls.__dict__:
                setattr(cls, batch, getattr(RuntimeStorage, batch))  # the default: calls the override

    # -- workflows -------------------------------------------------------------
    @abstractmethod
    def register_workflow(self, schema: WorkflowSchema) -> None:
        """Remember ``schema`` as its ``(workflow_id, version)``'s definition.

        The identical or an equal schema changes nothing; another one under a
        known key (the broker sends it only with the same structure: an edited
        policy or step code) replaces the stored one, ``registered_at`` now.
        """

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

    # -- batches: optional; a broker calls them, the defaults call the methods above ----------
    def enqueue_steps(self, run_id: str, steps: list[str]) -> None:
        """:meth:`enqueue` each of ``steps``, in order."""
        enqueue = self.enqueue
        for step in steps:
            enqueue(run_id, step)

    def fetch_steps(self, run_id: str, n: int) -> list[str]:
        """Pop up to ``n`` queued steps of the run, in order (what ``n`` :meth:`fetch_next` calls give)."""
        out: list[str] = []
        fetch = self.fetch_next
        while len(out) < n and (step := fetch(run_id)) is not None:
            out.append(step)
        return out

    def save_steps(self, run_id: str, records: list[tuple[str, StepInfo]]) -> None:
        """:meth:`save_step` each ``(step, record)``, in order.

        One record may stand for several steps (steps queued together share
        their PENDING record): a storage must not change what it is given.
        The default hands each step a record of its own.
        """
        save_step = self.save_step
        last = None
        for step, info in records:
            if info is last:
                info = copy.copy(info)  # a storage that keeps and changes records gets one per step
            else:
                last = info
            save_step(run_id, step, info)

    def set_results(self, run_id: str, results: list[tuple[str, Any]]) -> None:
        """:meth:`set_result` each ``(step, result)``, in order."""
        set_result = self.set_result
        for step, result in results:
            set_result(run_id, step, result)

    def record_events(self, events: list[Event]) -> None:
        """:meth:`record_event` each event, in order."""
        record = self.record_event
        for e in events:
            record(e)

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
    "ONE_BY_ONE",
    "RuntimeStorage",
    "batches_match",
]
