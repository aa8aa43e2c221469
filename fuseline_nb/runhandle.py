"""Run: the handle on one run submitted to a :class:`~fuseline_nb.Session`.

Its id, live state, view and outputs. A ``Run`` holds its session weakly (a
displayed run kept in IPython's ``Out`` must not keep a rebound session's
workers alive) and asks the session's broker for everything it shows.

Examples
--------
>>> import fuseline_nb as fl
>>> fl.Run.__module__
'fuseline_nb.runhandle'
"""

from __future__ import annotations

import _thread
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

from .errors import StorageClosedError
from .workflow.graph import Workflow
from .workflow.runinfo import RunInfo
from .workflow.status import Status

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("fuseline_nb.session")


class RunDone:
    """The signal that a run ended: set once by the thread that saw it end, waited on by :meth:`Run.wait`.

    One bare lock, held while the run goes on and released when it ends: the
    waiting thread sleeps in the lock's own wait and is woken by one release,
    without ``threading.Event``'s condition and its Python-level bookkeeping on
    both sides (the run's end → ``wait()`` returning is on every run's path).

    Examples
    --------
    >>> done = RunDone()
    >>> done.wait(0.0), done.is_set()
    (False, False)
    >>> done.set(); done.set()  # twice is once
    >>> done.wait(1.0), done.wait(None), done.is_set()
    (True, True, True)
    """

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._flag = False

    def is_set(self) -> bool:
        """Whether the run ended (or the session closed)."""
        return self._flag

    def set(self) -> None:
        """Wake every waiter, now and later (any thread; more than once is harmless)."""
        if not self._flag:
            self._flag = True
            try:
                self._lock.release()
            except RuntimeError:  # another thread released it at the same moment
                pass

    def wait(self, timeout: float | None) -> bool:
        """Block until :meth:`set` or ``timeout`` seconds (``None``: no limit); whether it is set."""
        if self._flag:
            return True
        if self._lock.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            self._lock.release()  # the next waiter passes too
        return self._flag


class Run:
    """A run submitted to a :class:`Session`: its id, live state, view and outputs.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Session, Workflow
    >>> with Session(workers=0) as session:
    ...     run = session.submit(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]))
    ...     run.info().state
    <Status.RUNNING: 'RUNNING'>
    """

    def __init__(self, session: Session, run_id: str, workflow: Workflow) -> None:
        # Weakly: IPython keeps displayed Runs in Out/_, and a Run must not keep a
        # rebound session's workers alive (docs/views.md, "No leaks").
        self._session = weakref.ref(session)
        self.broker = session.broker
        self.id = run_id
        self.workflow = workflow
        self._final: RunInfo | None = None  # set by the session when the run ends
        # The live views made by view() (a displayed Run makes one): wait() lets them show the end first.
        self._views: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def session(self) -> Session:
        """The run's :class:`Session`.

        Raises
        ------
        StorageClosedError
            The session was dropped (no name refers to it any more), which
            ended its workers.
        """
        session = self._session()
        if session is None:
            raise StorageClosedError(
                f"the session of run {self.id!r} is gone: nothing referred to it any more, so its "
                "workers were stopped; keep the session in a variable while its runs are needed"
            )
        return session

    @property
    def run_id(self) -> str:
        """Same as :attr:`id`."""
        return self.id

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard showing this run's tasks (``Session(dask=...)``), else ``None``."""
        return self.session.dashboard_link

    def info(self) -> RunInfo:
        """The run's :class:`~fuseline_nb.RunInfo` now (RUNNING until it ends)."""
        if self._final is not None:
            return self._final
        return self.broker.get_run(self.id)

    @property
    def state(self) -> Status:
        """The run's state now (a question about the run: no copy of every step's record)."""
        if self._final is not None:
            return self._final.state
        if self._live():
            return Status.RUNNING
        return self.info().state

    def done(self) -> bool:
        """Whether the run has ended (a question about the run: no copy of every step's record)."""
        return self._final is not None or not self._live()

    def cancel(self, reason: str | None = None) -> bool:
        """Cancel this run (see :meth:`Session.cancel`); ``False`` when it had already ended.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Session, Workflow
        >>> with Session(workers=0) as session:
        ...     run = session.submit(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]))
        ...     run.cancel(), run.state, run.info().steps["one"].state
        (True, <Status.CANCELLED: 'CANCELLED'>, <Status.CANCELLED: 'CANCELLED'>)
        """
        return self.session.cancel(self.id, reason)

    def wait(self, timeout: float | None = None, *, raise_on_failure: bool = False) -> Any:
        """Block until the run ends; return its outputs as ``wf.run`` does.

        One output gives its result; several give a list in ``outputs`` order;
        an output that did not run gives ``None``. A FAILED run logs a warning
        and returns ``None`` (as ``wf.run`` does; :meth:`outputs` gives what
        it computed), or raises :class:`~fuseline_nb.errors.StepFailedError`
        with ``raise_on_failure=True``.

        Raises
        ------
        TimeoutError
            The run did not end within ``timeout`` seconds (it keeps running).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._final is not None:  # ended: no wait (and no copy of a live run's records)
            self._views_shown()
            return self._outputs(self._final, raise_on_failure)
        session = self.session
        done = session._event_for(self.id)
        # The session keeps the final record when the run ends (_on_event) and then sets ``done``: the
        # first wait begins at once (the workers' first steps need this thread's GIL). Woken without a
        # final record, or every 0.25 s, it asks whether the run is still live (a question about runs,
        # costing nothing per step: a RunInfo copies every step's record), whether the pool can still
        # run steps and whether the session closed.
        while self._final is None:
            left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if left > 0 and done.wait(left) and self._final is not None:
                break
            if not self._live():
                break
            if session.pool is not None:
                session.pool.check()
            if session.closed:
                raise StorageClosedError(
                    f"the session closed before run {self.id!r} ended; a Session opened on its history "
                    "file resumes it (after the cell creating the session ran again: that new session)")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id!r} has not ended after {timeout} s ({self._counts(self.info())})")
            if done.is_set():  # set, yet neither a final record nor an end: look again in a moment
                time.sleep(0.01)
        session._done.pop(self.id, None)  # its end is known: the next wait returns at once
        self._views_shown()
        return self._outputs(self.info(), raise_on_failure)

    def _views_shown(self, timeout: float = 2.0) -> None:
        """Let this run's live views show its end before :meth:`wait` returns.

        A view's thread replaces the cell's static picture (``text/html``,
        ``text/plain``) once the run ended; the frontend applies that only while a
        cell executes. Joined here, it lands in the cell that waits, so a saved
        notebook shows how the run ended, even on a busy machine.
        """
        for view in list(self._views):
            view.join(timeout)

    def _live(self) -> bool:
        """Whether the broker still runs this run (a question about runs, not steps)."""
        unfinished = getattr(self.broker, "unfinished_runs", None)
        if unfinished is None:
            return not self.broker.get_run(self.id).done
        return any(run_id == self.id for run_id, *_ in unfinished())

    def outputs(self) -> Any:
        """The outputs as they are now, shaped as :meth:`wait` returns them.

        Unlike :meth:`wait` it does not block, and for a FAILED run it gives
        what the run did compute (``None`` for an output that did not run).

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Session, Workflow
        >>> def boom():
        ...     raise ValueError("no")
        >>> ok, bad = FunctionStep(lambda: 1, name="ok"), FunctionStep(boom)
        >>> with Session(workers=1) as session:
        ...     run = session.submit(Workflow(outputs=[ok, bad]))
        ...     run.wait(), run.outputs()
        (None, [1, None])
        """
        return self._shape(self.info())

    def _shape(self, info: RunInfo) -> Any:
        outs = [info.steps[n].result if n in info.steps else None for n in self.workflow.output_names]
        return outs[0] if len(outs) == 1 else outs

    def _outputs(self, info: RunInfo, raise_on_failure: bool) -> Any:
        if info.state is Status.CANCELLED:
            log.warning("run %s of workflow %s was cancelled", self.id, info.workflow_id)
        if info.state is Status.FAILED:
            if raise_on_failure:
                info.raise_for_failure()
            log.warning("run %s of workflow %s failed: %s (wait() returns None, as wf.run does; "
                        "run.outputs() has the outputs that were computed)",
                        self.id, info.workflow_id, info.failures())
            return None
        return self._shape(info)

    @staticmethod
    def _counts(info: RunInfo) -> str:
        counts = {s.value.lower(): n for s, n in info.counts().items() if n}
        return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no steps"

    def timeline(self) -> Any:
        """The run as a Gantt chart (Altair): a lane per worker, a bar per attempt, coloured by state.

        Export it with ``.save("timeline.png")`` or ``.save("timeline.svg")``.
        Needs the ``charts`` extra (``pip install 'fuseline-nb[charts]'``).
        """
        from .views.timeline import run_timeline

        return run_timeline(self.broker, self.id)

    def view(self) -> Any:
        """The live view (``fuseline_nb.views.widgets.RunView``) of this run."""
        from .views.widgets import RunView

        view = RunView(self.broker, self.id)
        self._views.add(view)
        return view

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, Pretty, display

        link = self.dashboard_link
        if link:  # steps on Dask: its dashboard shows the tasks, named after the steps
            import html

            display(HTML(f'<a href="{html.escape(link)}" target="_blank">Dask dashboard</a>: '
                         f"the tasks of this run, named after its steps"))
        try:
            view = self.view()
        except ImportError:  # views not installed: a text summary instead
            display(Pretty(repr(self)))
        else:
            display(view)

    def __repr__(self) -> str:
        try:
            info = self.info()
        except Exception:  # a closed session: the id is all there is
            return f"<Run {self.id[:8]} of {self.workflow.workflow_id!r}>"
        return f"<Run {self.id[:8]} of {self.workflow.workflow_id!r}: {info.state.value} ({self._counts(info)})>"


__all__ = ["Run", "RunDone"]
