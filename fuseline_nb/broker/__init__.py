"""Brokers: decide what is ready, hold run state, publish events.

Examples
--------
>>> from fuseline_nb.broker import MemoryBroker
>>> MemoryBroker().status()["status"]
'ok'
"""

from __future__ import annotations

from typing import Any

from .base import Broker, LastTask, RepositoryInfo, RunInfo, StepAssignment, StepInfo, StepReport, WorkerInfo
from .core import MemoryBroker, StorageBroker
from .opening import open_broker


def __getattr__(name: str) -> Any:
    if name == "DuckDBBroker":  # imports duckdb: load on first use
        from .duckdb_broker import DuckDBBroker

        return DuckDBBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Broker",
    "DuckDBBroker",
    "LastTask",
    "MemoryBroker",
    "RepositoryInfo",
    "RunInfo",
    "StepAssignment",
    "StepInfo",
    "StepReport",
    "StorageBroker",
    "WorkerInfo",
    "open_broker",
]
