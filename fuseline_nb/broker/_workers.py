"""The calls about workers that a :class:`~fuseline_nb.broker.core.StorageBroker` answers besides handing out steps.

Letting a worker go, pruning silent ones, keep-alives and listing. Each
takes the broker's lock and calls a transition of :mod:`fuseline_nb.broker.leases`.

Examples
--------
>>> from fuseline_nb.broker import MemoryBroker
>>> broker = MemoryBroker()
>>> wid = broker.register_worker([], "w1")
>>> [w.name for w in broker.list_workers()], broker.keep_alive(wid)
(['w1'], [])
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import UnknownWorkerError
from . import leases
from .base import WorkerInfo
from .state import LiveState, Worker
from .transitions import Effects

log = logging.getLogger(__name__)


class WorkerCalls:
    """The worker side of :class:`~fuseline_nb.broker.core.StorageBroker` (a base class of it).

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> issubclass(MemoryBroker, WorkerCalls)
    True
    """

    worker_ttl: float | None
    _lock: threading.RLock
    _state: LiveState
    _clock: Callable[[], float]

    if TYPE_CHECKING:  # the broker's own (core.StorageBroker)
        def _apply(self, fx: Effects) -> None: ...

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker; its unfinished assignments go back to the queue at once."""
        with self._lock:
            self._apply(leases.unregister(self._state, worker_id, self._clock()))

    def _prune(self, now: float) -> None:
        """Forget idle workers whose keep-alives stopped (``worker_ttl``)."""
        assert self.worker_ttl is not None
        for wid in leases.prune(self._state, now, self.worker_ttl):
            log.warning("worker %s pruned: not heard from for over %s s", wid, self.worker_ttl)

    def _worker(self, worker_id: str) -> Worker:
        try:
            w = self._state.workers[worker_id]
        except KeyError:
            if worker_id in self._state.pruned:
                raise UnknownWorkerError(
                    f"worker {worker_id!r} was pruned: not heard from for over {self.worker_ttl} s "
                    "(worker_ttl); register it again"
                ) from None
            raise UnknownWorkerError(
                f"unknown worker: {worker_id!r} (register it first; a restarted broker forgets workers)"
            ) from None
        w.info.last_seen = self._clock()
        return w

    def keep_alive(self, worker_id: str) -> list[tuple[str, str]]:
        """Mark the worker alive and extend the lease of each of its assignments.

        Returns the ``(run id, step)`` assignments it held that were cancelled
        since its last keep-alive: it should stop running them.
        """
        with self._lock:
            if self.worker_ttl is not None:
                self._prune(self._clock())
            worker = self._worker(worker_id)
            return leases.keep_alive(self._state, worker, self._clock())

    def list_workers(self) -> list[WorkerInfo]:
        """Registered workers (idle ones past ``worker_ttl`` are pruned first)."""
        with self._lock:
            if self.worker_ttl is not None:
                self._prune(self._clock())
            return [w.listed() for w in self._state.workers.values()]



__all__ = ["WorkerCalls"]
