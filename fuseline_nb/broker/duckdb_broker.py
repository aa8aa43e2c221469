"""DuckDBBroker: the broker with its run history in a DuckDB file.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> from fuseline_nb.broker.clients import LocalBrokerClient
>>> from fuseline_nb.worker import ProcessEngine
>>> wf = Workflow(outputs=[FunctionStep(lambda: 7, name="seven")])
>>> with DuckDBBroker(":memory:") as broker:
...     client = LocalBrokerClient(broker)
...     run_id = client.dispatch_workflow(wf.to_schema())
...     ProcessEngine(client, [wf]).work()
...     broker.sql("SELECT step, state, result_preview FROM steps").fetchall()
[('seven', 'SUCCEEDED', '7')]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from .core import StorageBroker
from .storage.duckdb import DuckDBRuntimeStorage


class DuckDBBroker(StorageBroker):
    """A :class:`StorageBroker` over :class:`DuckDBRuntimeStorage`: history you can query.

    Opening a file that holds unfinished runs resumes them: their queued or
    running steps are queued again, finished steps do not run again.

    Parameters
    ----------
    path:
        The database file (created if missing), or ``":memory:"``.
    lease_seconds, clock, worker_ttl, cache:
        As for :class:`StorageBroker`.
    flush_interval:
        Seconds between background writes of buffered changes.

    Raises
    ------
    StorageLockedError
        Another process (or another broker in this one) has the file open.

    Examples
    --------
    >>> broker = DuckDBBroker(":memory:")
    >>> broker.sql("SELECT count(*) FROM runs").fetchall()
    [(0,)]
    >>> broker.close(); broker.close()
    """

    storage: DuckDBRuntimeStorage

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, lease_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time, flush_interval: float = 0.1,
                 worker_ttl: float | None = None, cache: bool = False) -> None:
        storage = DuckDBRuntimeStorage(path, flush_interval=flush_interval)
        try:
            super().__init__(storage, lease_seconds=lease_seconds, clock=clock, worker_ttl=worker_ttl,
                             cache=cache)
        except BaseException:
            storage.close()
            raise

    @property
    def path(self) -> str:
        """The database file (or ``":memory:"``)."""
        return self.storage.path

    def sql(self, query: str, params: Any = None) -> Any:
        """Query the history views (``workflows``, ``runs``, ``steps``, ``events``, ``cache``).

        Returns a DuckDB relation: call ``.fetchall()``, ``.df()`` or ``.pl()``.
        Everything buffered is written first, so the query sees every change.

        Examples
        --------
        >>> with DuckDBBroker() as broker:
        ...     broker.sql("SELECT count(*) FROM steps WHERE state = ?", ["FAILED"]).fetchall()
        [(0,)]
        """
        with self._lock:
            self._settled()  # what a deferred block holds is written first
        return self.storage.sql(query, params)

    def flush(self) -> None:
        """Write buffered history now (it is written every ``flush_interval`` anyway)."""
        with self._lock:
            self._settled()
        self.storage.flush()

    def __repr__(self) -> str:
        return f"DuckDBBroker({self.path!r})"


__all__ = [
    "DuckDBBroker",
]
