"""Workers: ProcessEngine (the fetch-run-report loop), PoolEngine, WorkerPool, DaskEngine.

Examples
--------
>>> from fuseline_nb.worker import ProcessEngine, PoolEngine
>>> PoolEngine(2).processes
2
"""

from __future__ import annotations

from typing import Any

from ..running.local import PoolEngine
from .engine import ProcessEngine


def __getattr__(name: str) -> Any:
    if name == "WorkerPool":  # multiprocessing + cloudpickle: load on first use
        from .pool import WorkerPool

        return WorkerPool
    if name == "DaskEngine":  # imports dask.distributed only when asked for
        from .dask_engine import DaskEngine

        return DaskEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DaskEngine", "PoolEngine", "ProcessEngine", "WorkerPool"]
