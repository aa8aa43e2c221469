"""Clients: how workers and notebooks talk to a broker.

Every client has the same methods and return types; only the transport
differs — a direct call (:class:`LocalBrokerClient`), a process channel from
spawned workers (``fuseline_nb.worker.pool``), or HTTP
(:class:`HttpBrokerClient`, loaded on first use because it imports httpx).

Examples
--------
>>> from fuseline_nb.broker import MemoryBroker
>>> from fuseline_nb.broker.clients import LocalBrokerClient
>>> client = LocalBrokerClient(MemoryBroker())
>>> client.status()["status"]
'ok'
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from ..errors import TransportUnsupportedError
from ..workflow.runinfo import RunInfo
from ..workflow.schema import WorkflowSchema
from .base import Broker, BrokerClient, StepAssignment, StepReport, WorkerInfo
from .registry import RepositoryInfo
from .state import Assignment


class LocalBrokerClient(BrokerClient):
    """Calls a broker in the same process directly.

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> client = LocalBrokerClient(MemoryBroker())
    >>> client.list_workers()
    []
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def register_worker(self, workflows: Iterable[WorkflowSchema], name: str | None = None) -> str:
        return self.broker.register_worker(list(workflows), name)

    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None) -> str:
        return self.broker.dispatch_workflow(workflow, inputs)

    def get_step(self, worker_id: str) -> StepAssignment | None:
        return self.broker.get_step(worker_id)

    def report_step(self, worker_id: str, report: StepReport) -> None:
        self.broker.report_step(worker_id, report)

    def get_steps(self, worker_id: str, n: int) -> list[StepAssignment]:
        return self.broker.get_steps(worker_id, n)

    def report_steps(self, worker_id: str, reports: Iterable[StepReport]) -> list[Exception | None]:
        return self.broker.report_steps(worker_id, reports)

    def report_and_get(self, worker_id: str, reports: Iterable[StepReport],
                       n: int) -> tuple[list[Exception | None], list[StepAssignment]]:
        return self.broker.report_and_get(worker_id, reports, n)

    def deferred_events(self) -> AbstractContextManager[None]:
        return self.broker.deferred_events()

    def keep_alive(self, worker_id: str) -> list[tuple[str, str]] | None:
        return self.broker.keep_alive(worker_id)

    def cancel_run(self, run_id: str, reason: str | None = None) -> bool:
        return self.broker.cancel_run(run_id, reason)

    def held_by(self, worker_id: str) -> list[Assignment]:
        return self._storage_broker("held_by").held_by(worker_id)

    def overdue(self) -> tuple[list[Assignment], float | None]:
        return self._storage_broker("overdue").overdue()

    def _storage_broker(self, what: str) -> Any:
        if not callable(getattr(self.broker, what, None)):
            raise TransportUnsupportedError(f"{type(self.broker).__name__} does not answer {what}(); "
                                            "a worker pool needs a StorageBroker (MemoryBroker, DuckDBBroker)")
        return self.broker

    def list_workers(self) -> list[WorkerInfo]:
        return list(self.broker.list_workers())

    def list_workflows(self) -> list[WorkflowSchema]:
        return list(self.broker.list_workflows())

    def get_run(self, run_id: str) -> RunInfo:
        return self.broker.get_run(run_id)

    def list_runs(self) -> list[RunInfo]:
        return list(self.broker.list_runs())

    def status(self) -> dict[str, Any]:
        return self.broker.status()

    def register_repository(self, repo: RepositoryInfo) -> None:
        self.broker.register_repository(repo)

    def get_repository(self, name: str) -> RepositoryInfo | None:
        return self.broker.get_repository(name)

    def list_repositories(self, page: int = 1, page_size: int = 50) -> list[RepositoryInfo]:
        return list(self.broker.list_repositories(page, page_size))

    def unregister_worker(self, worker_id: str) -> None:
        unregister = getattr(self.broker, "unregister_worker", None)
        if callable(unregister):
            unregister(worker_id)


def __getattr__(name: str) -> Any:
    if name == "HttpBrokerClient":  # imports httpx: load on first use
        from .http_client import HttpBrokerClient

        return HttpBrokerClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BrokerClient", "HttpBrokerClient", "LocalBrokerClient"]  # noqa: F822 - lazy, see __getattr__
