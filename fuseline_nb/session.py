"""Session: a broker in this kernel, worker processes, and handles on runs (:class:`Run`).

``Session(path, workers=N)`` wires a broker (run history in the DuckDB file
at ``path``, or in memory when ``path`` is ``None``) to a
:class:`~fuseline_nb.worker.WorkerPool` of ``N`` processes.
:meth:`Session.submit` ships the workflow to the workers, dispatches a run
and returns a :class:`Run` at once; the notebook stays free while the
workers run it. A ``Run`` displays as the live view, and :meth:`Run.wait`
returns the outputs the way ``wf.run`` does.

Examples
--------
>>> import fuseline_nb as fl
>>> fl.Session.__name__, fl.Run.__name__
('Session', 'Run')
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import _session_submit as _submit
from ._session_file import SessionReplacedWarning, file_key, hold, let_go, ship_stored, take_over
from ._session_submit import dispatch, input_values, map_runs, not_a_workflow
from .broker.base import Broker
from .broker.opening import open_broker
from .errors import StorageClosedError, StorageError
from .runhandle import Run, RunDone
from .worker._freshmods import check_modules
from .workflow.events import Event
from .workflow.gcpause import paused_gc
from .workflow.graph import Workflow, run_inputs
from .workflow.runinfo import RunInfo
from .workflow.stale import warn_stale

if TYPE_CHECKING:
    from .rungroup import RunGroup

log = logging.getLogger(__name__)


def _weak_listener(method: Callable[[Event], None], kind: str | None = None) -> Callable[[Event], None]:
    """An event listener that does not keep its session alive (and sees only ``kind``, if given)."""
    ref = weakref.WeakMethod(method)  # type: ignore[arg-type]

    def listener(event: Event) -> None:
        if kind is not None and event.kind != kind:
            return  # three events a step: skip the ones the session ignores cheaply
        bound = ref()
        if bound is not None:
            bound(event)

    return listener


def _release(pool: Any, broker: Broker, unsubscribe: Callable[[], None]) -> None:
    """What a session dropped without close() still owes: stop workers, close history."""
    try:
        if pool is not None:
            pool.stop(timeout=1.0)
    finally:
        unsubscribe()
        broker.close()


def _close_at_exit(ref: weakref.ReferenceType[Session]) -> Callable[[], None]:
    def hook() -> None:
        session = ref()
        if session is not None:
            session.close(timeout=1.0)

    return hook


class Session:
    """A broker in this kernel plus ``workers`` worker processes.

    Parameters
    ----------
    path:
        DuckDB file for the run history (created if missing; runs left
        unfinished there are resumed); ``":memory:"`` for DuckDB history that
        is not kept. ``None`` keeps history in plain memory (no SQL). A
        Session still open in this process on the same file is closed
        first, with a :class:`SessionReplacedWarning` (what running the
        notebook cell that creates a session again does); its unfinished runs
        resume here.
    workers:
        Number of worker processes (default 2; ``0``: none, workers may connect otherwise).
    dask:
        Run the steps on a Dask cluster instead of worker processes: a
        ``distributed.Client``, a cluster, or a scheduler address
        (``"tcp://10.0.0.5:8786"``). See :class:`~fuseline_nb.worker.dask_engine.DaskEngine`
        and ``docs/scaling.md``.
    lease_seconds:
        How long a step may go without a heartbeat before it is re-queued.
    context:
        Start method of the workers: ``"spawn"`` or ``"forkserver"``.
    prefetch:
        Up to how many short steps a worker may hold at once (see ``WorkerPool``;
        ``1``: one at a time).
    cache:
        Reuse the results of steps whose code and inputs were seen before
        (``docs/caching.md``); :meth:`submit` may say otherwise per run.

    Examples
    --------
    >>> from fuseline_nb import Session, FunctionStep, Workflow
    >>> def hello(who: str) -> str:
    ...     return f"hello {who}"
    >>> with Session(workers=1) as session:                  # doctest: +SKIP
    ...     session.submit(Workflow(outputs=[FunctionStep(hello)]), {"who": "you"}).wait()
    'hello you'
    >>> with Session(workers=0) as session:
    ...     session.broker.status()["status"]
    'ok'
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, workers: int | None = None, *,
                 lease_seconds: float = 60.0, context: str = "spawn", prefetch: int = 64,
                 dask: Any = None, cache: bool = False) -> None:
        if dask is not None and workers:
            raise ValueError(f"give workers= or dask=, not both (workers={workers!r}, dask={dask!r}): "
                             "with dask= the steps run on the Dask cluster")
        workers = 0 if dask is not None else 2 if workers is None else workers
        if int(workers) < 0:
            raise ValueError(f"workers must be >= 0, not {workers!r}")
        self.path = os.fspath(path) if path is not None else None
        take_over(file_key(self.path))
        self.broker: Broker = open_broker(path, lease_seconds=lease_seconds, cache=bool(cache))
        self._done: dict[str, RunDone] = {}
        self._done_lock = threading.Lock()
        # one submit at a time decides its version, registers, ships and dispatches: another thread's
        # submit in between would find "1" idle and replace the definition a run was just given
        self._submitting = threading.RLock()
        self._runs: weakref.WeakValueDictionary[str, Run] = weakref.WeakValueDictionary()
        self._early: dict[str, RunInfo] = {}  # runs that ended inside dispatch (all cached)
        self._closed = False
        self._unsubscribe = self.broker.subscribe(_weak_listener(self._on_event, "run_finished"),
                                                  kinds=("run_finished",))
        self.pool: Any = None
        try:
            if dask is not None:
                from .broker.clients import LocalBrokerClient
                from .worker.dask_engine import DaskEngine

                self.pool = DaskEngine(LocalBrokerClient(self.broker), [], dask).start()
            elif workers:
                from .worker.pool import WorkerPool

                self.pool = WorkerPool(self.broker, [], processes=int(workers), context=context,
                                       prefetch=prefetch).start()
            ship_stored(self.broker, self.pool, self.path)
        except BaseException:
            if self.pool is not None:
                self.pool.stop(timeout=1.0)
            self.broker.close()
            raise
        self._atexit = _close_at_exit(weakref.ref(self))
        atexit.register(self._atexit)  # after the pool's own hook, so it runs first
        # A session rebound in a notebook cell without close() still ends its workers.
        self._finalizer = weakref.finalize(self, _release, self.pool, self.broker, self._unsubscribe)
        self._finalizer.atexit = False
        hold(file_key(self.path), self)

    # -- runs -------------------------------------------------------------------------------
    def submit(self, wf: Workflow, inputs: Mapping[str, Any] | None = None, *,
               cache: bool | None = None, rerun: Iterable[str] = ()) -> Run:
        """Start a run of ``wf`` on the workers; returns its :class:`Run` at once.

        What runs is what the notebook now says: a step whose code
        fingerprint changed since the workers got the workflow (an edited
        global or helper) is shipped again, and a step holding a function or
        class whose cell was run again is reported (``StaleDefinitionWarning``).
        A workflow built without ``version=`` whose structure differs from the
        one registered under its id gets a version of its own, and so does one
        whose code differs while runs of the registered one are still going
        (a cell edited during a run, two pipelines made by one function): each
        run's steps run the definition it was submitted with. Submits from
        several threads (and ``wf.run(inputs, cache=session)``) take turns
        from that decision to the dispatch, so the same holds for them.

        ``cache`` (default: the session's) reuses results of steps whose key
        was seen; the steps named in ``rerun`` run anyway.

        Raises
        ------
        PicklingError
            A step or an input cannot be sent to a worker process.
        SchemaMismatchError
            Another structure is registered under the workflow's id and explicit
            ``version=`` (an edited policy or step code under the same structure
            is not refused: the runs submitted from now on use it, and a run of
            the older one still going is warned about).
        """
        self._check_open()
        if not isinstance(wf, Workflow):
            raise TypeError(not_a_workflow(wf))
        inputs = run_inputs(inputs)
        with self._submitting, paused_gc():  # (paused: a large workflow's schema, bytes and records live long)
            kind: list[Any] = []  # (class, function) every step holds, when the refresh found one
            wf._refresh(kind)
            registered = self.broker.list_workflows()
            # the same definition built again (a cell run again) takes the registered schema object
            # (compared with it before making a schema of its own, when it has none yet): the version
            # check, the pool and the broker then know it by identity, not step by step
            adopted = wf._adopt_unmade(registered, kind)  # (a workflow without a schema: refresh had none)
            wf.to_schema().check_inputs(inputs)  # before anything is shipped
            values = input_values(inputs)
            warn_stale(wf, stacklevel=2, kind=kind[0] if kind else None)
            cache = check_modules(wf, cache, stacklevel=2)  # a module of the user's edited and not reloaded
            # another definition under its id and version "1" whose runs are still going keeps them: this
            # one gets a version of its own (each run's steps load the definition it was submitted with)
            settled = not adopted and not wf._adopt_schema(registered)  # a new definition (an edit)
            if settled and wf.settle_version(registered, lambda: _submit.live_versions(self.broker)):
                wf._adopt_schema(registered)
            if self.pool is not None:
                self.pool.check()
                _submit.register_warning(self.broker, wf, stacklevel=3)  # before the workers get it
                self.pool.add_workflow(wf, refresh=False)  # refreshed above
                retire = getattr(self.pool, "retire", None)
                if settled and retire is not None:  # versions of its own no run needs any more: let go
                    retire(_submit.idle_versions(wf, registered, _submit.live_versions(self.broker)))
            run_id = dispatch(self.broker, wf.to_schema(), values, cache, rerun)  # (a Ctrl-C: cancelled, raised)
        run = self._runs[run_id] = Run(self, run_id, wf)
        run._final = self._early.pop(run_id, None)
        return run

    def map(self, wf: Workflow, inputs: Iterable[Mapping[str, Any]]) -> RunGroup:
        """Start one run of ``wf`` per mapping in ``inputs`` (a sweep); returns a :class:`RunGroup`.

        The group displays as one row per run (state, progress, duration);
        clicking a row opens that run's live view.

        Raises
        ------
        MissingInputError, TypeError
            A mapping misses an input or is not one: no run was started.
        PicklingError
            A step or an input cannot be sent to a worker process.
        """
        from .rungroup import RunGroup

        return RunGroup(map_runs(wf, inputs, self.submit))

    def trends(self, workflow: str | None = None, step: str | None = None) -> Any:
        """Step durations across runs and failure rates over time, as an Altair chart.

        Drawn from the ``steps`` and ``runs`` SQL views (so the session needs
        DuckDB history); ``workflow`` and ``step`` narrow it down. Needs the
        ``charts`` extra (``pip install 'fuseline-nb[charts]'``).

        Raises
        ------
        StorageError
            The session keeps its history in memory (no SQL).
        ValueError
            No runs match.
        """
        from .views.timeline import trends_chart

        return trends_chart(self.sql, workflow, step)

    def cancel(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel a run: its unfinished steps become CANCELLED, a running step's process is replaced.

        Returns ``True`` when the run was cancelled, ``False`` when it had
        already ended (nothing changes; the broker logs that it did not).

        Raises
        ------
        RunNotFoundError
            No run has this id.
        """
        self._check_open()
        return self.broker.cancel_run(run_id, reason)

    def _on_event(self, event: Event) -> None:
        if event.kind != "run_finished":
            return
        run = self._runs.get(event.run_id)
        if run is None:  # it ended before submit made its Run: every step was cached
            info = self.broker.get_run(event.run_id)
            info.state = event.state or info.state
            info.finished_at = info.finished_at or event.at
            self._early[event.run_id] = info
        elif run._final is None:
            # The broker still holds the run in memory while it announces the end: keep its final
            # record (steps read from its compact records when asked), so wait() and info() need no
            # round trip to the history file afterwards.
            final = getattr(self.broker, "_final_record", None)
            info = (final(event.run_id) if final is not None else None) or self.broker.get_run(event.run_id)
            info.state = event.state or info.state
            info.finished_at = info.finished_at or event.at
            run._final = info
        self._event_for(event.run_id).set()

    def _event_for(self, run_id: str) -> RunDone:
        with self._done_lock:
            ev = self._done.get(run_id)
            if ev is None:
                ev = self._done[run_id] = RunDone()
            return ev

    @property
    def cache(self) -> Any:
        """The result cache: ``len(session.cache)``, ``.entries()``, ``.clear(step=None, older_than=None)``.

        With a DuckDB file, SQL sees it too: ``session.sql("SELECT * FROM cache")``.
        """
        view = getattr(self.broker, "cache", None)
        if view is None:
            raise StorageError(f"{type(self.broker).__name__} keeps no result cache")
        return view

    def runs(self) -> list[RunInfo]:
        """Every run the broker knows, oldest first (without step records)."""
        self._check_readable()
        return self.broker.list_runs()

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Receive every lifecycle event (called under the broker's lock: keep it quick)."""
        return self.broker.subscribe(callback)

    def sql(self, query: str, params: Any = None) -> Any:
        """Run SQL over the history views (``runs``, ``steps``, ``events``, ``workflows``).

        Returns a DuckDB relation (``.df()``, ``.fetchall()``, ``.show()``).
        Only one read-only statement (``SELECT``, ``EXPLAIN``) is run: the
        history is fuseline_nb's to write.

        Raises
        ------
        StorageError
            When this session keeps its history in memory, or ``query`` is not
            one read-only statement (the refused statement is named);
            :class:`StorageClosedError` after :meth:`close`, naming the file
            and how to read it again.
        """
        sql = getattr(self.broker, "sql", None)
        if sql is None:
            raise StorageError(
                "session.sql needs run history in DuckDB, but this session keeps it in memory "
                "(Session(path=None)); open the session with a file, e.g. "
                "fl.Session('runs.duckdb', workers=2), or with fl.Session(':memory:') for "
                "DuckDB history that is not kept"
            )
        self._check_readable()
        return sql(query, params)

    # -- lifecycle --------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers (a busy one gets ``timeout`` seconds), then flush and close history.

        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        let_go(file_key(self.path), self)
        try:
            if self.pool is not None:
                self.pool.stop(timeout=timeout)
        finally:
            self._unsubscribe()
            self.broker.close()
            atexit.unregister(self._atexit)
            with self._done_lock:
                for ev in self._done.values():
                    ev.set()

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address when the steps run on Dask (``Session(dask=...)``), else ``None``."""
        return getattr(self.pool, "dashboard_link", None)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosedError("this Session is closed; create a new one")

    def _check_readable(self) -> None:
        """A read of a closed session's history says where the history is and how to read it."""
        if self._closed and self.path not in (None, ":memory:"):
            raise StorageClosedError(
                f"this Session is closed; its history {self.path!r} is kept: read it with a new "
                f"fl.Session({self.path!r}, workers=0) (its .sql, .runs), or duckdb.connect({self.path!r}, "
                "read_only=True)")
        self._check_open()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = repr(self.path) if self.path else "memory"
        workers = getattr(self.pool, "processes", None) if self.pool is not None else 0
        runner = f"workers={workers}" if workers is not None else f"dask={self.dashboard_link}"
        state = "closed" if self._closed else "open"
        return f"<Session history={where} {runner} {state}>"


__all__ = ["Run", "Session", "SessionReplacedWarning"]
