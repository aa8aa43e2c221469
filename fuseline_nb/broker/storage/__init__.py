"""Storages behind a broker: memory, and DuckDB (a file of queryable history).

Examples
--------
>>> from fuseline_nb.broker.storage import MemoryRuntimeStorage
>>> MemoryRuntimeStorage().list_runs()
[]
"""

from __future__ import annotations

from typing import Any

from .base import RuntimeStorage
from .memory import MemoryRuntimeStorage


def __getattr__(name: str) -> Any:
    if name == "DuckDBRuntimeStorage":  # imports duckdb: load on first use
        from .duckdb import DuckDBRuntimeStorage

        return DuckDBRuntimeStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DuckDBRuntimeStorage", "MemoryRuntimeStorage", "RuntimeStorage"]
