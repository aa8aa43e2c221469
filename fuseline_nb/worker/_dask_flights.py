"""The steps a :class:`~fuseline_nb.worker.dask_engine.DaskEngine` has in flight on Dask.

:class:`Flights` submits assignments as Dask tasks and turns finished tasks
into outcomes. Each task announces its outcome with its completion, as an
event on the engine's topic (:func:`~fuseline_nb.worker.dask_task.run_task`
pushes it), which lands in the engine's inbox as ``("out", key, pickled
outcome)``: a small outcome travels in it; a larger one (``None`` there) is
fetched with ``gather`` once the task's future is done (its done-callback
puts the key, a ``str``, in the inbox). The futures get no other callback
(each costs Dask's event loop a coroutine and a thread hop per step): the
engine sweeps the table on its heartbeat (:meth:`Flights.done_keys`) for
tasks that failed in Dask (a lost worker, ``KilledWorker``), were cancelled,
or whose event did not come.

Finished futures are released in batches (:meth:`Flights.release`, on the
engine's heartbeat), not one by one: each release makes the scheduler send
its worker a message, and Dask spaces those 5 ms apart, which would delay
the next step's task every time.
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

from ..broker.base import StepAssignment
from ..running.execute import StepOutcome
from ..workflow.status import Status
from ._dask_cluster import Definitions

log = logging.getLogger(__name__)


class Flight:
    """One assignment running as a Dask task."""

    __slots__ = ("assignment", "cancelled", "future", "key", "worker_id")

    def __init__(self, assignment: StepAssignment, worker_id: str, key: str) -> None:
        self.assignment = assignment
        self.worker_id = worker_id
        self.key = key
        self.future: Any = None
        self.cancelled = False


class Flights:
    """Task key -> :class:`Flight`, for the tasks submitted and not yet landed."""

    def __init__(self, dask: Any, topic: str, inbox: queue.SimpleQueue[Any]) -> None:
        from . import dask_task

        self._task = dask_task
        self.dask = dask
        self.topic = topic
        self.inbox = inbox
        self.table: dict[str, Flight] = {}
        self.lock = threading.RLock()
        self._landed: list[Any] = []  # futures of landed tasks, released together by release()
        dask.subscribe_topic(topic, self._on_pushed)

    def _on_pushed(self, event: tuple[float, Any]) -> None:  # on Dask's event loop: stay quick
        try:
            msg = event[1]
            self.inbox.put(("out", msg["key"], msg["outcome"]))
        except Exception:
            log.warning("unexpected event on %s: %r", self.topic, event, exc_info=True)

    def __len__(self) -> int:
        return len(self.table)

    def take(self, timeout: float) -> list[Any]:
        """What the inbox holds: wait up to ``timeout`` for one item, then take the rest without waiting."""
        try:
            items = [self.inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(items) < 1024:
            try:
                items.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return items

    def submit(self, batch: list[Flight], defs: Definitions) -> None:
        """Submit ``batch`` as Dask tasks (one ``map`` for several)."""
        ids, timeouts, keys, parcels = [], [], [], []
        for f in batch:
            a = f.assignment
            d = defs.get(a.workflow_id, a.version)
            ids.append(d.definition_id if d is not None else "")
            timeouts.append(d.timeouts.get(a.step_name) if d is not None else None)
            keys.append(f.key)
            parcels.append(a)
        run, topic = self._task.run_task, self.topic
        with self.lock:  # the reporter must not see a flight before its future is set
            for f in batch:
                self.table[f.key] = f
            if len(batch) == 1:
                futures = [self.dask.submit(run, ids[0], keys[0], parcels[0], timeouts[0], topic,
                                            key=keys[0], pure=False)]
            else:
                futures = self.dask.map(run, ids, keys, parcels, timeouts, [topic] * len(batch),
                                        key=keys, pure=False)
            for f, fut in zip(batch, futures, strict=True):
                f.future = fut

    def land(self, done: Iterable[str], pushed: dict[str, bytes | None]
             ) -> tuple[list[Flight], list[tuple[Flight, StepOutcome]]]:
        """The flights of the tasks ``done`` (futures done) or ``pushed`` (outcomes announced).

        Returns them and the ``(flight, outcome)`` pairs to report (a
        cancelled flight has none). They stay in the table until
        :meth:`settle`: the engine is idle only once their reports are in.
        A large outcome announced before its task's future is done lands later.
        """
        with self.lock:
            flights = [f for k in {*done, *pushed} if (f := self.table.get(k)) is not None]
        if not flights:  # (the usual case for ``done``: their outcomes were pushed and reported)
            return [], []
        later = [f for f in flights if pushed.get(f.key) is None and not f.future.done()]
        for f in later:  # called at once if it is done meanwhile
            f.future.add_done_callback(lambda _fut, k=f.key: self.inbox.put(k))
        flights = [f for f in flights if f not in later]
        live = [f for f in flights if not f.cancelled]
        outcomes: dict[str, StepOutcome] = {}
        for f in live:
            if (blob := pushed.get(f.key)) is not None:
                try:
                    outcomes[f.key] = pickle.loads(blob)
                except Exception:
                    log.warning("the pushed outcome of %s did not load; gathering it", f.key, exc_info=True)
        rest = [f for f in live if f.key not in outcomes]
        outcomes.update(zip([f.key for f in rest], self._outcomes(rest), strict=True))
        return flights, [(f, outcomes[f.key]) for f in live]

    def settle(self, flights: list[Flight]) -> None:
        """Take landed ``flights`` out of the table (their futures are released with the next batch)."""
        with self.lock:
            for f in flights:
                self.table.pop(f.key, None)
            self._landed.extend(f.future for f in flights)

    def release(self) -> None:
        """Let go of the landed tasks' futures (Dask then frees their results)."""
        with self.lock:
            self._landed = []

    def done_keys(self) -> list[str]:
        """The keys of the flights whose futures are done."""
        with self.lock:
            return [k for k, f in self.table.items() if f.future is not None and f.future.done()]

    def holders(self) -> set[str]:
        """The broker worker ids that hold a flight not cancelled (their leases need keeping)."""
        with self.lock:
            return {f.worker_id for f in self.table.values() if not f.cancelled}

    def busy(self) -> set[str]:
        """The broker worker ids of every flight."""
        with self.lock:
            return {f.worker_id for f in self.table.values()}

    def _outcomes(self, flights: list[Flight]) -> list[StepOutcome]:
        ok = [f for f in flights if f.future.status == "finished"]
        if not ok:  # (a gather of nothing still waits for a turn of Dask's event loop)
            return [self._outcome(f) for f in flights]
        try:
            got = dict(zip([f.key for f in ok], self.dask.gather([f.future for f in ok]), strict=True))
        except Exception:  # e.g. a worker holding a result died meanwhile: one at a time below
            got = {}
        return [got[f.key] if f.key in got else self._outcome(f) for f in flights]

    def _outcome(self, f: Flight) -> StepOutcome:
        """The task's outcome (its result a Value, passed to the broker unopened), or why there is none."""
        try:
            return f.future.result()  # type: ignore[no-any-return]
        except Exception as exc:
            return _lost(f, exc, time.time())

    def cancel(self, pairs: set[tuple[str, str]]) -> int:
        """Stop the flights of these ``(run id, step)`` pairs: cancel their tasks, interrupt their steps."""
        with self.lock:
            flights = [f for f in self.table.values() if not f.cancelled
                       and (f.assignment.run_id, f.assignment.step_name) in pairs]
            for f in flights:
                f.cancelled = True
        if not flights:
            return 0
        keys = [f.key for f in flights]
        self.dask.cancel([f.future for f in flights if f.future is not None])
        try:
            self.dask.run(self._task.interrupt, keys, on_error="ignore")
        except Exception:
            log.warning("could not interrupt %d cancelled step(s) on the Dask workers", len(keys), exc_info=True)
        log.info("%d cancelled step(s) stopped on Dask: %s", len(keys), sorted(pairs))
        return len(keys)

    def pairs_of(self, run_id: str) -> set[tuple[str, str]]:
        """The ``(run id, step)`` pairs in flight for run ``run_id``."""
        with self.lock:
            return {(f.assignment.run_id, f.assignment.step_name) for f in self.table.values()
                    if f.assignment.run_id == run_id}

    def abandon(self) -> None:
        """Cancel every task still in flight and forget them (the engine is stopping)."""
        with self.lock:
            left = list(self.table.values())
            self.table.clear()
            self._landed = []
        if left:
            self.dask.cancel([f.future for f in left if f.future is not None])

    def close(self) -> None:
        """Stop listening for pushed outcomes."""
        try:
            self.dask.unsubscribe_topic(self.topic)
        except Exception:
            log.info("could not unsubscribe from %s", self.topic, exc_info=True)


def _lost(f: Flight, exc: Exception, now: float) -> StepOutcome:
    name = f.assignment.step_name
    if type(exc).__name__ == "KilledWorker":
        return StepOutcome(Status.FAILED, None, "WorkerCrashedError",
                           f"the Dask workers running step {name!r} died too often (Dask's "
                           f"distributed.scheduler.allowed-failures): {exc}", None, now, now)
    return StepOutcome(Status.FAILED, None, "WorkerError",
                       f"the Dask task of step {name!r} did not return ({type(exc).__name__}: {exc}); "
                       "see the Dask dashboard and worker logs", None, now, now)
