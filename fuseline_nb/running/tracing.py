"""Tracing to JSON lines with Fuseline's event names.

A tracer subscribes to the lifecycle :class:`~fuseline_nb.workflow.events.Event`
stream and records one dict per event, keyed by ``event``:
``workflow_started``, ``step_enqueued``, ``step_started``, ``condition_check``,
``step_finished`` (``skipped: true`` when a condition skipped the step),
``step_failed``, ``step_cancelled`` and ``workflow_finished`` — exactly
Fuseline's events. A step on a branch that was not taken gets no record (the
run history's ``events`` view has it, with the reason).

Examples
--------
>>> import json, tempfile, os
>>> from fuseline_nb import FunctionStep, Workflow
>>> path = os.path.join(tempfile.mkdtemp(), "trace.jsonl")
>>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")], trace=path)
>>> wf.run()
1
>>> [json.loads(line)["event"] for line in open(path)]
['workflow_started', 'step_enqueued', 'step_started', 'step_finished', 'workflow_finished']
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
import weakref
from datetime import UTC, datetime
from typing import Any

from ..workflow.events import Event
from ..workflow.status import SKIP_CONDITION, Status
from ..workflow.value import preview


class Tracer:
    """Receives trace events as dicts. Subclass and implement :meth:`record`.

    Examples
    --------
    >>> class Collect(Tracer):
    ...     def __init__(self):
    ...         self.events = []
    ...     def record(self, event):
    ...         self.events.append(event)
    >>> t = Collect(); t.record({"event": "x"}); t.events
    [{'event': 'x'}]
    """

    def record(self, event: dict[str, Any]) -> None:
        """Record one event."""
        raise TypeError(f"{type(self).__name__} must implement record(event)")

    def close(self) -> None:
        """Release resources (no-op by default)."""


class FileTracer(Tracer):
    """Append each event as one JSON line to ``path`` (thread-safe, flushed per line).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.jsonl")
    >>> FileTracer(p).record({"event": "workflow_started"})
    >>> "workflow_started" in open(p).read()
    True
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        # Opened once (failing now, naming the path, if it cannot be written)
        # and closed by close() or when the tracer is collected. Append mode:
        # each flushed line is one write at the end of the file, so several
        # tracers and processes can share a path.
        self._fh: Any = open(self.path, "a", encoding="utf-8")
        self._finalizer = weakref.finalize(self, self._fh.close)

    def record(self, event: dict[str, Any]) -> None:
        event.setdefault("timestamp", datetime.now(UTC).isoformat())
        line = json.dumps(event, default=str) + "\n"
        with self._lock:
            if self._fh.closed:
                self._fh = open(self.path, "a", encoding="utf-8")
                self._finalizer = weakref.finalize(self, self._fh.close)
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        """Close the file (a later :meth:`record` reopens it); idempotent."""
        with self._lock:
            self._finalizer()


class BoundTracer(Tracer):
    """Adds ``workflow_id``, ``workflow_instance_id``, ``process_id`` and ``host_id``.

    Examples
    --------
    >>> class Keep(Tracer):
    ...     def record(self, event):
    ...         self.last = event
    >>> k = Keep(); BoundTracer(k, "wf", "r1").record({"event": "x"}); k.last["workflow_id"]
    'wf'
    """

    def __init__(self, tracer: Tracer, workflow_id: str, instance_id: str) -> None:
        self.tracer = tracer
        self.workflow_id = workflow_id
        self.instance_id = instance_id

    def record(self, event: dict[str, Any]) -> None:
        event.setdefault("workflow_id", self.workflow_id)
        event.setdefault("workflow_instance_id", self.instance_id)
        event.setdefault("process_id", os.getpid())
        event.setdefault("host_id", _hostname())
        self.tracer.record(event)


@functools.lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname()


def as_tracer(trace: Any) -> Tracer | None:
    """``None``, a path (→ :class:`FileTracer`) or a :class:`Tracer`.

    Examples
    --------
    >>> as_tracer(None) is None
    True
    """
    if trace is None or isinstance(trace, Tracer):
        return trace
    if isinstance(trace, (str, os.PathLike)):
        return FileTracer(trace)
    record = getattr(trace, "record", None)
    if callable(record):
        return trace  # duck-typed tracer
    raise TypeError(f"trace must be a path or a Tracer, not {trace!r}")


def trace_records(event: Event) -> list[dict[str, Any]]:
    """The Fuseline-style trace dicts for one lifecycle event.

    Examples
    --------
    >>> e = Event("step_finished", "r1", 4, 0.0, step="load", state=Status.FAILED,
    ...           detail={"error": "ValueError: x"})
    >>> trace_records(e)[0]["event"], trace_records(e)[0]["error"]
    ('step_failed', 'ValueError: x')
    """
    base: dict[str, Any] = {"seq": event.seq, "run_id": event.run_id}
    if event.step is not None:
        base["step"] = event.step
    if event.worker is not None:
        base["worker"] = event.worker
    if event.attempt:
        base["attempt"] = event.attempt
    detail = event.detail or {}
    kind = event.kind
    if kind == "run_dispatched":
        return [{"event": "workflow_started", **base}]
    if kind == "run_finished":
        return [{"event": "workflow_finished", **base, "state": str(event.state)}]
    if kind == "step_queued":
        return [{"event": "step_enqueued", **base}]
    if kind == "step_started":
        return [{"event": "step_started", **base}]
    out: list[dict[str, Any]] = []
    checks = detail.get("conditions")
    if checks is None and event.state is Status.SKIPPED and detail.get("skip_reason") == SKIP_CONDITION:
        # A worker's report carries no check details; the skip itself says one failed.
        checks = [{"passed": False}]
    for check in checks or ():
        record = {"event": "condition_check", **base, **check}
        if "value" in record and not isinstance(record["value"], (str, int, float, bool, type(None))):
            record["value"] = preview(record["value"])
        out.append(record)
    st = event.state
    if st is Status.SUCCEEDED:
        out.append({"event": "step_finished", **base, "result": detail.get("result_preview"),
                    "action": detail.get("action"), "skipped": False})
    elif st is Status.FAILED:
        out.append({"event": "step_failed", **base, "error": detail.get("error")})
    elif st is Status.CANCELLED:
        out.append({"event": "step_cancelled", **base})
    elif st is Status.SKIPPED and detail.get("skip_reason") == SKIP_CONDITION:
        # Fuseline's record of a step its condition skipped: finished, skipped.
        out.append({"event": "step_finished", **base, "result": None, "action": None, "skipped": True})
    # A step on a branch that was not taken: Fuseline's trace says nothing of
    # it (the history's ``events`` view records it, with its skip reason).
    return out


class TraceSubscriber:
    """An event subscriber that writes trace records to ``tracer``.

    Subscribe it to a broker to trace runs executed by worker processes:
    ``broker.subscribe(TraceSubscriber(FileTracer(path)))``. Each record gets
    the run's ``workflow_id`` (learned from the run's first event), and
    ``worker``/``attempt`` where the broker knows them. With ``workflow_id``
    given, only runs of that workflow are traced.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.worker import ProcessEngine
    >>> from fuseline_nb.broker.clients import LocalBrokerClient
    >>> class Keep(Tracer):
    ...     def __init__(self):
    ...         self.events = []
    ...     def record(self, event):
    ...         self.events.append(event)
    >>> keep, broker = Keep(), MemoryBroker()
    >>> unsubscribe = broker.subscribe(TraceSubscriber(keep))
    >>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="w")
    >>> run_id = wf.dispatch(broker)
    >>> ProcessEngine(LocalBrokerClient(broker), [wf]).work()
    >>> [e["event"] for e in keep.events]
    ['workflow_started', 'step_enqueued', 'step_started', 'step_finished', 'workflow_finished']
    >>> keep.events[2]["workflow_id"], "worker" in keep.events[2]
    ('w', True)
    """

    def __init__(self, tracer: Tracer, workflow_id: str | None = None) -> None:
        self.tracer = tracer
        self.workflow_id = workflow_id
        self._runs: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        detail = event.detail or {}
        with self._lock:
            if event.kind == "run_dispatched":
                self._runs[event.run_id] = detail.get("workflow_id") or self.workflow_id
            wf_id = self._runs.get(event.run_id) or detail.get("workflow_id") or self.workflow_id
            if event.kind == "run_finished":
                self._runs.pop(event.run_id, None)
        if self.workflow_id is not None and wf_id not in (None, self.workflow_id):
            return
        bound = BoundTracer(self.tracer, wf_id or "", event.run_id)
        for record in trace_records(event):
            bound.record(record)


__all__ = ["BoundTracer", "FileTracer", "TraceSubscriber", "Tracer", "as_tracer", "trace_records"]
