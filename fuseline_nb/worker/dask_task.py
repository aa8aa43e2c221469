"""What runs on a Dask worker: the workflow definitions it holds and the task that runs one step.

:class:`DefinitionPlugin` carries one shipped workflow (cloudpickle bytes,
see :mod:`~fuseline_nb.worker.shipping`). :class:`~fuseline_nb.worker.dask_engine.DaskEngine`
registers it once per definition with the scheduler, which installs it on
every worker — and on every worker that joins later, so a worker restarted
after a crash holds the definitions again. Its ``setup`` unpickles the
workflow once per worker process into a cache keyed by the definition id;
tasks then carry only that id.

:func:`run_task` is the Dask task: it runs one assigned step (one attempt,
through :func:`~fuseline_nb.worker.engine.execute`, like every engine) on a
helper thread and returns its outcome, the result made
a :class:`~fuseline_nb.workflow.value.Value` here, where it is born (pickled
once; the kernel passes it on closed), so a result that cannot travel fails
its step with a message instead of failing the task. Every outcome is also
announced with the task's completion, as a Dask event on the engine's topic:
a small one (at most :data:`PUSH_LIMIT` bytes pickled) travels in it, so the
engine reports it without a ``gather`` round trip; a larger one is fetched
from the returned value. The task thread waits for the step,
for its ``StepTimeoutPolicy`` deadline, or for :func:`interrupt` (a cancelled
run): on time-out or cancel the step's thread gets an exception raised in it
(it stops at its next Python instruction; code blocked inside one C call
stops when that call returns) and the task returns at once.

This module imports ``distributed``; only Dask workers and the Dask engine
import it.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> from fuseline_nb.broker import StepAssignment
>>> from fuseline_nb.worker.shipping import ship
>>> wf = Workflow(outputs=[FunctionStep(lambda: 6 * 7, name="answer")])
>>> plugin = DefinitionPlugin("def-1", ship(wf)[1])
>>> plugin.setup(None)
>>> a = StepAssignment(wf.workflow_id, "run-1", "answer", {}, 0.0, 60.0)
>>> outcome = run_task("def-1", "answer-run-1", a, None)
>>> outcome.state, outcome.result
(<Status.SUCCEEDED: 'SUCCEEDED'>, <Value int: 42>)
"""

from __future__ import annotations

import ctypes
import logging
import pickle
import threading
import time
from typing import Any

from distributed import WorkerPlugin

from ..broker.base import StepAssignment
from ..errors import PicklingError
from ..running.execute import StepInterrupt, StepOutcome
from ..workflow.graph import Workflow
from ..workflow.status import Status
from ..workflow.value import Value
from .engine import execute
from .shipping import load

log = logging.getLogger(__name__)

#: definition id -> the workflow, loaded once per worker process
_DEFINITIONS: dict[str, Workflow] = {}
#: definition id -> why it could not be loaded here
_LOAD_ERRORS: dict[str, str] = {}
#: definition id -> the plugins (one per engine) that installed it: the last one out forgets it
_OWNERS: dict[str, set[str]] = {}
#: Largest pickled outcome sent with the completion (a number, a short string or a small dict
#: fits); larger ones are fetched with ``gather``. The scheduler keeps the last 1,000 events of
#: each topic, also after the engine is gone: at most ~2 MB per engine.
PUSH_LIMIT = 2048
#: task key -> the step running under it on this worker
_RUNNING: dict[str, _Running] = {}
_LOCK = threading.Lock()


class StepInterrupted(StepInterrupt):
    """Raised inside a step's thread to stop it (a cancelled run, or a passed timeout).

    A ``BaseException``, so a step's ``except Exception`` does not swallow it.

    Examples
    --------
    >>> issubclass(StepInterrupted, Exception)
    False
    """


class DefinitionPlugin(WorkerPlugin):
    """A shipped workflow, installed once on each Dask worker.

    Parameters
    ----------
    definition_id:
        The key tasks use to find the workflow (unique per definition).
    blob:
        The workflow's cloudpickle bytes (:func:`~fuseline_nb.worker.shipping.ship`).

    Examples
    --------
    >>> DefinitionPlugin("d1", b"").name
    'fuseline-definition-d1'
    """

    idempotent = True  # the same definition registered twice is installed once

    def __init__(self, definition_id: str, blob: bytes, owner: str = "") -> None:
        self.definition_id = definition_id
        self.blob = blob
        self.name = f"fuseline-definition-{definition_id}{'-' + owner if owner else ''}"

    def setup(self, worker: Any) -> None:
        """Unpickle the workflow into this process's cache (a failure is kept, to be reported per step)."""
        _OWNERS.setdefault(self.definition_id, set()).add(self.name)
        if self.definition_id in _DEFINITIONS:
            return
        try:
            wf = load([(("", ""), self.blob)])[("", "")]
        except PicklingError as exc:
            _LOAD_ERRORS[self.definition_id] = str(exc)
            log.error("%s", exc)
            return
        _DEFINITIONS[self.definition_id] = wf

    def teardown(self, worker: Any) -> None:
        """Forget the workflow once no engine that registered it is left."""
        owners = _OWNERS.get(self.definition_id, set())
        owners.discard(self.name)
        if owners:
            return
        _OWNERS.pop(self.definition_id, None)
        _DEFINITIONS.pop(self.definition_id, None)
        _LOAD_ERRORS.pop(self.definition_id, None)


class _Running:
    """One step running on this worker: its thread and what woke the waiting task."""

    __slots__ = ("box", "reason", "thread", "wake")

    def __init__(self) -> None:
        self.box: dict[str, StepOutcome] = {}
        self.wake = threading.Event()
        self.reason: str | None = None  # "cancelled" when interrupt() woke the task
        self.thread: threading.Thread | None = None


def _failed(error_type: str, message: str, started: float) -> StepOutcome:
    return StepOutcome(Status.FAILED, None, error_type, message, None, started, time.time())


def _raise_in(thread: threading.Thread) -> None:
    """Raise :class:`StepInterrupted` in ``thread`` at its next Python instruction."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                                   ctypes.py_object(StepInterrupted))


def _where() -> str:
    try:
        from distributed import get_worker

        return f"Dask worker {get_worker().address}"
    except ValueError:  # not inside a Dask worker (a direct call, as in the doctest)
        return "this process"


def run_task(definition_id: str, key: str, a: StepAssignment, timeout: float | None,
             topic: str | None = None) -> StepOutcome:
    """Run assignment ``a`` with the workflow ``definition_id`` names; never raises.

    Returns the outcome: its ``result`` a :class:`~fuseline_nb.workflow.value.Value`
    (``None`` unless SUCCEEDED), its ``exception`` cleared. With ``topic``, it is
    also sent as a Dask event ``{"key": key, "outcome": pickled}`` (``None``
    for an outcome over :data:`PUSH_LIMIT`: fetch the task's value).
    """
    outcome = _run(definition_id, key, a, timeout)
    if topic is not None:
        _push(topic, key, outcome)
    return outcome


def _push(topic: str, key: str, outcome: StepOutcome) -> None:
    """Announce the outcome to the engine, with it if small (best effort: the engine also
    watches the task's future)."""
    try:
        from distributed import get_worker

        blob = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        get_worker().log_event(topic, {"key": key, "outcome": blob if len(blob) <= PUSH_LIMIT else None})
    except Exception:  # not in a Dask worker (a direct call), or no stream: the engine gathers it
        log.debug("outcome of %s not pushed", key, exc_info=True)


def _run(definition_id: str, key: str, a: StepAssignment, timeout: float | None) -> StepOutcome:
    started = time.time()
    wf = _DEFINITIONS.get(definition_id)
    if wf is None:
        why = _LOAD_ERRORS.get(definition_id) or "it was never installed here"
        return _failed("PicklingError", f"{_where()} cannot run step {a.step_name!r}: {why}", started)
    running = _Running()

    def target() -> None:
        try:
            running.box["outcome"] = execute({(a.workflow_id, a.version): wf}, a, _where())
        except StepInterrupted:
            pass
        finally:
            running.wake.set()

    thread = running.thread = threading.Thread(target=target, name=f"fuseline-step-{a.step_name}", daemon=True)
    with _LOCK:
        _RUNNING[key] = running
    try:
        thread.start()
        finished = running.wake.wait(timeout)
    finally:
        with _LOCK:
            _RUNNING.pop(key, None)
    if "outcome" in running.box:
        return _pack(running.box["outcome"], a)
    _raise_in(thread)
    if finished:  # interrupt() woke us: the run was cancelled
        return _failed("StepCancelledError", f"step {a.step_name!r} was stopped: its run was cancelled", started)
    thread.join(0.05)
    note = "" if not thread.is_alive() else " (it is still inside a call that cannot be interrupted)"
    return _failed("TimeoutError", f"step {a.step_name!r} exceeded its timeout of {timeout:g} s; "
                                   f"{_where()} interrupted it{note}", started)


def _pack(out: StepOutcome, a: StepAssignment) -> StepOutcome:
    out.exception = None  # may not pickle; the message and traceback travel instead
    if out.state is not Status.SUCCEEDED or out.result is None:
        return out
    if isinstance(out.result, str):  # the action it names, as a plain str (a Value of a StrEnum is no "str")
        out.action = str.__str__(out.result)
    try:  # the result becomes a Value here, where it is born: the kernel never pickles it again
        out.result = Value.of(out.result)
    except Exception as exc:
        return _failed("PicklingError", f"the result of step {a.step_name!r} (a {type(out.result).__name__}) "
                                        f"cannot be sent back from {_where()}: {type(exc).__name__}: {exc}",
                       out.started_at)
    return out


def interrupt(keys: list[str]) -> list[str]:
    """Stop the steps running under ``keys`` on this worker; return the keys found here.

    The engine calls this on every worker (``Client.run``) when a run is cancelled.

    Examples
    --------
    >>> interrupt(["not-running-here"])
    []
    """
    found = []
    with _LOCK:
        for key in keys:
            running = _RUNNING.get(key)
            if running is not None and running.thread is not None:
                running.reason = "cancelled"
                _raise_in(running.thread)
                running.wake.set()
                found.append(key)
    return found


__all__ = ["PUSH_LIMIT", "DefinitionPlugin", "StepInterrupted", "interrupt", "run_task"]
