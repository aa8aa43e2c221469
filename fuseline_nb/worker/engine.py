"""ProcessEngine: the worker loop — get a step, run it, report the outcome.

A step that raises never stops the loop: its error travels back as a value
(type, message, traceback). While a step runs, a heartbeat thread keeps the
assignment's lease alive, so long steps are not given to another worker, and
learns when the step's run was cancelled: it then calls ``on_cancel`` (a
``fuseline-nb worker`` process exits there, and its supervisor starts
another; the broker refuses a late report anyway).
Retries are the broker's job (it re-queues a FAILED attempt while the step's
``RetryPolicy`` allows), so every assignment is exactly one attempt.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> from fuseline_nb.broker import MemoryBroker
>>> from fuseline_nb.broker.clients import LocalBrokerClient
>>> wf = Workflow(outputs=[FunctionStep(lambda: "hi", name="greet")])
>>> client = LocalBrokerClient(MemoryBroker())
>>> run_id = client.dispatch_workflow(wf.to_schema())
>>> engine = ProcessEngine(client, [wf])
>>> engine.work()
>>> engine.steps_run, client.get_run(run_id).state
(1, <Status.SUCCEEDED: 'SUCCEEDED'>)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..broker.base import StepAssignment, StepReport
from ..broker.clients import BrokerClient
from ..errors import BrokerRequestError, StaleReportError, UnknownRunError, UnknownWorkflowError
from ..limits import safe_text
from ..running.execute import StepOutcome, attempt
from ..workflow.graph import Workflow
from ..workflow.status import Status
from ..workflow.value import Value, opened_all, preview
from ._pipeforms import value_wire

log = logging.getLogger(__name__)


def execute(workflows: Mapping[tuple[str, str], Workflow], a: StepAssignment, worker_id: str) -> StepOutcome:
    """Run the step ``a`` names, one attempt, with the workflow from ``workflows``; never raises.

    ``workflows`` maps ``(workflow_id, version)`` to a :class:`Workflow`. An
    assignment for a workflow or step this worker does not hold comes back as
    a FAILED outcome naming it. Every engine runs its steps through here.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> wf = Workflow(outputs=[FunctionStep(lambda: 3, name="three")])
    >>> a = StepAssignment(wf.workflow_id, "r1", "three", {}, 0.0, 60.0)
    >>> execute({(wf.workflow_id, wf.version): wf}, a, "w1").result
    3
    >>> execute({}, a, "w1").error_type
    'UnknownWorkflowError'
    """
    wf = workflows.get((a.workflow_id, a.version))
    if wf is None:
        exc = UnknownWorkflowError(f"worker {worker_id!r} has no workflow {a.workflow_id!r} version {a.version!r}")
        return StepOutcome.from_exception(exc, time.time())
    if a.step_name not in wf.steps:
        exc2 = UnknownWorkflowError(f"workflow {a.workflow_id!r} has no step {a.step_name!r}")
        return StepOutcome.from_exception(exc2, time.time())
    payload = a.payload  # what a.inputs, a.results and a.winners read, without three calls per step
    given, done = payload.get("workflow_inputs"), payload.get("results")
    try:  # values are opened here, in the worker that runs the consuming step
        inputs = opened_all(given, "the run input") if given else {}
        results = opened_all(done, "the result of step") if done else {}
    except ValueError as exc:
        return StepOutcome.from_exception(exc, time.time())
    # in a worker, KeyboardInterrupt and SystemExit raised by a step are the step's failure
    retry = a.attempt - 1 if a.attempt > 1 else 0  # (max(), a builtin call, costs ~0.1 us more)
    return attempt(wf, a.step_name, inputs, results, payload.get("winners") or {}, retry, ())


def report_of(a: StepAssignment, out: StepOutcome) -> StepReport:
    """The :class:`StepReport` telling the broker that attempt ``a`` ended in ``out``.

    Examples
    --------
    >>> a = StepAssignment("wf", "r1", "pick", {}, 0.0, 60.0, attempt=2)
    >>> r = report_of(a, StepOutcome(Status.SUCCEEDED, "left"))
    >>> r.state, r.result, r.action, r.attempt
    (<Status.SUCCEEDED: 'SUCCEEDED'>, <Value str: 'left'>, 'left', 2)

    The result becomes a :class:`~fuseline_nb.workflow.value.Value` here,
    where it is born (pickled once); one that cannot be pickled fails the step:

    >>> import threading
    >>> report_of(a, StepOutcome(Status.SUCCEEDED, threading.Lock())).error
    "PicklingError: the result of step 'pick' (a lock) cannot be pickled, so it cannot reach the broker: cannot pickle '_thread.lock' object"
    """
    return StepReport(*report_fields(a, out, False))


def report_fields(a: StepAssignment, out: StepOutcome, text_state: bool) -> tuple[Any, ...]:
    """The fields of :func:`report_of`'s report, in declaration order; its state as its text if ``text_state``
    (the pipe's form of a report, see ``fuseline_nb.worker._pipeforms``: a pool worker makes no dataclass).

    Examples
    --------
    >>> a = StepAssignment("wf", "r1", "pick", {}, 0.0, 60.0, attempt=2)
    >>> report_fields(a, StepOutcome(Status.FAILED, error_type="ValueError", error_message="x"), True)[3:7]
    ('FAILED', None, 2, 'ValueError: x')
    """
    state, value, action = out.state, None, None
    error = None if out.error_type is None else f"{out.error_type}: {out.error_message}"  # out.error
    result = out.result if state is Status.SUCCEEDED else None
    if result is not None:
        # a str subclass (a StrEnum of the notebook) names its action by its text: a plain str travels
        # (its class may not even unpickle where the report goes)
        action = str.__str__(result) if isinstance(result, str) else None
        if result.__class__ is Value:  # made by an engine that ran the step elsewhere (Dask)
            if out.action is not None:
                action = out.action
            elif result.type_name == "str" and result.json is not None:
                action = json.loads(result.json)
        try:
            value = Value.of(result)
        except Exception as exc:  # an unpicklable result fails the step, not the worker
            state, action = Status.FAILED, None
            error = (f"PicklingError: the result of step {a.step_name!r} (a {type(result).__name__}) "
                     f"cannot be pickled, so it cannot reach the broker: {exc}")
        if action is not None and not action.isascii():
            action = safe_text(action)  # a str result holding a lone surrogate (a file name) names no action
    # texts that always encode (a surrogate from a file name would make the report unsendable)
    trace, checks = out.traceback, out.conditions
    if text_state:  # the pipe's form: a value as its fields (_pipeforms.value_wire)
        return (a.workflow_id, a.instance_id, a.step_name, state._value_, None if value is None else
                value_wire(value), a.attempt, None if error is None else safe_text(error),
                None if trace is None else safe_text(trace), action, out.started_at, out.finished_at,
                _checks(checks) if checks else None)
    return (a.workflow_id, a.instance_id, a.step_name, state, value, a.attempt,
            None if error is None else safe_text(error), None if trace is None else safe_text(trace), action,
            out.started_at, out.finished_at, _checks(checks) if checks else None)


def _checks(conditions: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Condition checks ready for any transport: a checked value that is not a plain scalar becomes its preview
    (as the trace shows it); a str holding a lone surrogate is escaped (else the report could not be sent)."""
    if not conditions:
        return None
    # (a subclass of a plain type — an enum of the notebook — is no plain scalar: its class may not
    # unpickle, or even pickle, where the report goes)
    return [{**c, "value": preview(c["value"])} if "value" in c and c["value"].__class__ not in _PLAIN
            else {**c, "value": safe_text(c["value"])}
            if isinstance(c.get("value"), str) and not c["value"].isascii() else c for c in conditions]


_PLAIN = frozenset({str, int, float, bool, type(None)})


class ProcessEngine:
    """A worker: repeatedly asks ``client`` for a step of ``workflows`` and runs it.

    Parameters
    ----------
    client:
        A :class:`~fuseline_nb.broker.clients.BrokerClient`.
    workflows:
        The :class:`Workflow` objects this worker can run (their schemas are
        registered with the broker).
    name:
        A label shown in ``list_workers()`` and in run views.
    on_cancel:
        Called (from the heartbeat thread) with the running assignment when
        the broker says its run was cancelled. The default logs it: Python
        cannot stop a function running in a thread, so the step runs on and
        its report is refused.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.broker.clients import LocalBrokerClient
    >>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")])
    >>> client = LocalBrokerClient(MemoryBroker())
    >>> engine = ProcessEngine(client, [wf], name="laptop")
    >>> [w.name for w in client.list_workers()]
    ['laptop']
    """

    #: Longest time between heartbeats of a running step (so a cancel is seen soon).
    CANCEL_CHECK_SECONDS = 0.5

    def __init__(self, client: BrokerClient, workflows: Iterable[Workflow], *, name: str | None = None,
                 on_cancel: Callable[[StepAssignment], None] | None = None) -> None:
        self.client = client
        self.workflows = list(workflows)
        if not self.workflows:
            raise ValueError("ProcessEngine needs at least one workflow")
        for wf in self.workflows:
            if not isinstance(wf, Workflow):
                raise TypeError(f"ProcessEngine takes Workflow objects, not {wf!r}")
        self._by_key = {(wf.workflow_id, wf.version): wf for wf in self.workflows}
        self.name = name
        self.on_cancel = on_cancel or _log_cancel
        self.worker_id = client.register_worker([wf.to_schema() for wf in self.workflows], name)
        self.steps_run = 0
        self._busy: StepAssignment | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()
        self._beating = [False]  # the heartbeat thread's "still looping" (cheaper per step than is_alive())

    def stop(self) -> None:
        """Ask a blocking :meth:`work` loop to return after the current step."""
        self._stop.set()

    def work(self, *, block: bool = False, poll_interval: float = 1.0, max_steps: int | None = None) -> None:
        """Run steps until none is ready (``block=False``) or :meth:`stop` (``block=True``).

        Parameters
        ----------
        block:
            Keep polling every ``poll_interval`` seconds when nothing is ready.
        max_steps:
            Return after this many steps.
        """
        self._stop.clear()
        done = 0
        try:
            while not self._stop.is_set() and (max_steps is None or done < max_steps):
                assignment = self._next_step()
                if assignment is None:
                    if not block:
                        return
                    self._stop.wait(poll_interval)
                    continue
                self.run_assignment(assignment)
                done += 1
        finally:
            self._stop_heartbeat()

    def run_assignment(self, assignment: StepAssignment) -> StepOutcome:
        """Run one assigned step and report it; return the outcome.

        Called outside :meth:`work`, call :meth:`close` afterwards to end the
        heartbeat thread.
        """
        self._busy = assignment
        if not self._beating[0] or self._beat is None:
            self._start_heartbeat(assignment)
        try:
            outcome = execute(self._by_key, assignment, self.worker_id)
        finally:
            self._busy = None
        self.steps_run += 1
        self._report(assignment, outcome)
        return outcome

    def _next_step(self) -> StepAssignment | None:
        return self.client.get_step(self.worker_id)

    def _report(self, a: StepAssignment, out: StepOutcome) -> None:
        try:
            self.client.report_step(self.worker_id, report_of(a, out))
        except _REFUSALS as exc:  # a refused report never ends the worker (over a pipe the next step
            _refused(a, exc)  # may have come with the refusal: it runs next)

    def close(self) -> None:
        """End the heartbeat thread (``work`` does this itself when it returns)."""
        self._stop_heartbeat()

    # -- heartbeats ---------------------------------------------------------------
    # The heartbeat thread lives only while work() runs, so an engine that is
    # done holds no thread and no reference to its client or broker.
    def _start_heartbeat(self, a: StepAssignment) -> None:
        lease = max(a.expires_at - a.assigned_at, 0.3)
        self._beat_stop = threading.Event()
        interval = min(lease / 3, self.CANCEL_CHECK_SECONDS)
        self._beating = beating = [True]  # its own cell: a thread still ending cannot clear a new one's
        self._beat = threading.Thread(target=self._beat_loop, args=(interval, self._beat_stop, beating),
                                      daemon=True, name=f"fuseline-heartbeat-{self.worker_id}")
        self._beat.start()

    def _stop_heartbeat(self) -> None:
        beat, self._beat = self._beat, None
        if beat is not None:
            self._beat_stop.set()

    def _on_beat(self) -> None:
        """Called at every heartbeat (from the heartbeat thread); nothing here (a pool worker sends held reports)."""

    def _beat_loop(self, interval: float, stop: threading.Event, beating: list[bool]) -> None:
        try:
            self._heartbeat(interval, stop)
        finally:
            beating[0] = False

    def _heartbeat(self, interval: float, stop: threading.Event) -> None:
        seen: Any = None
        while not stop.wait(interval):
            try:
                self._on_beat()
            except Exception:
                log.warning("heartbeat work of worker %s failed", self.worker_id, exc_info=True)
            busy = self._busy
            if busy is None:
                seen = None
                continue
            if busy is seen:  # the same step for a whole interval: extend its lease
                try:
                    cancelled = self.client.keep_alive(self.worker_id)
                except Exception:
                    log.warning("keep-alive for worker %s failed", self.worker_id, exc_info=True)
                else:
                    if cancelled and (busy.instance_id, busy.step_name) in {tuple(c) for c in cancelled}:
                        self.on_cancel(busy)
            seen = busy


#: How a broker refuses a report (late, of a cancelled or unknown run, malformed): logged, the worker goes on.
_REFUSALS = (StaleReportError, BrokerRequestError, UnknownRunError)


def _refused(a: StepAssignment, exc: Exception) -> None:
    """Log that the broker refused the report of ``a`` (see :data:`_REFUSALS`)."""
    log.warning("report of step %r of run %s refused: %s", a.step_name, a.instance_id, exc)


def _log_cancel(a: StepAssignment) -> None:
    log.warning("step %r of run %s was cancelled while running here; it runs on, and its report will be refused",
                a.step_name, a.instance_id)


__all__ = [
    "ProcessEngine",
    "execute",
    "report_fields",
    "report_of",
]
