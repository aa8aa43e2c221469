"""The process channel: spawned workers talk to the kernel's broker over a pipe.

Each worker process owns one end of a private ``multiprocessing`` pipe (an
anonymous socket pair: no address, nothing to connect to, so nothing to
authenticate). In the worker, :class:`ChannelClient` is a
:class:`~fuseline_nb.broker.clients.BrokerClient`; in the kernel, one
:class:`ChannelServer` thread serves every pipe of a pool with a single
``selectors`` loop over the pipes and the worker processes' sentinels.

Wire format. A request is ``(kind, args)`` and a reply ``(kind, value...)``,
both pickled; ``kind`` is one of :data:`REQUEST_KINDS` / :data:`REPLY_KINDS`
and an unknown kind is answered with an error naming the choices. User data
(run inputs, step results, ``RunInfo`` s) travels as cloudpickle bytes
(:class:`Packed`), so classes and functions defined in a notebook cross in
both directions; plain scalars travel as themselves. Errors travel as
``(type name, message)`` and are raised again as the same class.

The hot path is at most one round trip per step: a worker's
``report_and_get`` carries its report and receives its next assignment —
several while many short steps are queued, and then the reports of all but
the last travel one-way (``report``), batched for at most
:data:`OUTBOX_DELAY`, so the worker never waits for the kernel between them. A worker that asks for work when none is ready is
*parked* (its request stays unanswered) until a step is queued; the server
is woken by broker events, so idle workers cost nothing and nobody polls.

Latency. A message is one ``os.write`` (header and body together) and is
read with one ``os.read`` (:class:`FrameReader`). While replies come back
within :func:`spin_seconds` (100 µs by default), the waiting side looks for
the reply for that long before it sleeps: on a chain of short steps this
saves the two process wake-ups of every round trip. The spin is bounded,
stops as soon as replies are slower, and the kernel spins only while a CPU
is left over by the workers holding steps.

Examples
--------
>>> unpack(pack(3)), type(pack([1, 2])).__name__, unpack(pack([1, 2]))
(3, 'Packed', [1, 2])
>>> rebuild_error("StaleReportError", "too late")
StaleReportError('too late')
"""

from __future__ import annotations

import builtins
import logging
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Final, Literal

import cloudpickle

from .. import errors
from ..broker.base import StepAssignment, StepReport, WorkerInfo
from ..broker.clients import BrokerClient
from ..errors import BrokerUnavailableError
from ..limits import safe_str
from ..workflow.runinfo import RunInfo
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status
from .framing import SLOW_STREAK, SPIN_DEFAULT_US, SPIN_ENV, FrameReader, receive, send, spin_seconds

log = logging.getLogger(__name__)

#: Bumped when a message changes shape; a worker of another version is refused.
PROTOCOL_VERSION: Final = 1

RequestKind = Literal[
    "hello", "load_error", "register_worker", "unregister_worker", "get_step", "report_and_get",
    "report_step", "report", "keep_alive", "dispatch_workflow", "list_workers", "list_workflows", "get_run",
    "list_runs", "status",
]
REQUEST_KINDS: Final[tuple[str, ...]] = (
    "hello", "load_error", "register_worker", "unregister_worker", "get_step", "report_and_get",
    "report_step", "report", "keep_alive", "dispatch_workflow", "list_workers", "list_workflows", "get_run",
    "list_runs", "status",
)
ReplyKind = Literal["ok", "error", "assignments", "workflows", "stop"]
REPLY_KINDS: Final[tuple[str, ...]] = ("ok", "error", "assignments", "workflows", "stop")
#: Requests the kernel never answers (a worker holding more work does not wait).
ONE_WAY: Final = frozenset({"report"})
#: A held step's report waits at most this long (seconds) to travel with others...
OUTBOX_DELAY: Final = 0.002
#: ...or until this many are waiting.
OUTBOX_MAX: Final = 16

#: A workflow as shipped to workers: ``((workflow_id, version), cloudpickle bytes)``.
WorkflowBlob = tuple[tuple[str, str], bytes]


class ChannelClosed(BrokerUnavailableError):
    """The kernel closed the channel or asked the worker to stop.

    Examples
    --------
    >>> issubclass(ChannelClosed, ConnectionError)
    True
    """


# -- codec ----------------------------------------------------------------------------
class Packed:
    """User data as cloudpickle bytes (plain scalars are sent as themselves).

    Examples
    --------
    >>> unpack(Packed(cloudpickle.dumps({"a": 1})))
    {'a': 1}
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (Packed, (self.data,))


_PLAIN: Final = frozenset({type(None), bool, int, float, str, bytes})


def pack(value: Any) -> Any:
    """``value`` ready for the wire: itself when a plain scalar, else :class:`Packed`."""
    if type(value) in _PLAIN:
        return value
    return Packed(cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def unpack(value: Any) -> Any:
    """Inverse of :func:`pack`."""
    return pickle.loads(value.data) if type(value) is Packed else value


def _pack_map(d: dict[str, Any]) -> dict[str, Any]:
    return {k: pack(v) for k, v in d.items()} if d else {}


def _unpack_map(d: dict[str, Any]) -> dict[str, Any]:
    return {k: unpack(v) for k, v in d.items()} if d else {}


def encode_assignment(a: StepAssignment) -> tuple[Any, ...]:
    """A :class:`StepAssignment` as a plain tuple with packed user data.

    Examples
    --------
    >>> a = StepAssignment("wf", "r1", "s", {"workflow_inputs": {"x": [1]}, "results": {}}, 0.0, 1.0)
    >>> decode_assignment(encode_assignment(a)).inputs
    {'x': [1]}
    """
    p = a.payload
    return (a.workflow_id, a.instance_id, a.step_name, _pack_map(p.get("workflow_inputs", {})),
            _pack_map(p.get("results", {})), p.get("winners", {}), a.assigned_at, a.expires_at,
            a.attempt, a.version)


def decode_assignment(t: tuple[Any, ...]) -> StepAssignment:
    """Inverse of :func:`encode_assignment`."""
    wf, run, step, inputs, results, winners, assigned, expires, attempt, version = t
    payload = {"workflow_inputs": _unpack_map(inputs), "results": _unpack_map(results), "winners": winners}
    return StepAssignment(wf, run, step, payload, assigned, expires, attempt, version)


def encode_report(r: StepReport) -> tuple[Any, ...]:
    """A :class:`StepReport` as a plain tuple with its result packed.

    Examples
    --------
    >>> r = decode_report(encode_report(StepReport("wf", "r1", "s", Status.SUCCEEDED, {"n": 1})))
    >>> r.state, r.result
    (<Status.SUCCEEDED: 'SUCCEEDED'>, {'n': 1})
    """
    state = r.state if r.state.__class__ is Status else Status(r.state)
    return (r.workflow_id, r.instance_id, r.step_name, state.value, pack(r.result), r.attempt,
            r.error, r.traceback, r.action, r.started_at, r.finished_at)


_STATES: Final = {s.value: s for s in Status}


def decode_report(t: tuple[Any, ...]) -> StepReport:
    """Inverse of :func:`encode_report`."""
    wf, run, step, state, result, attempt, error, tb, action, started, finished = t
    status = _STATES.get(state) or Status(state)  # an unknown state raises, naming it
    try:
        value = unpack(result)
    except BaseException as exc:  # the worker could pickle it, this process cannot load it
        if not isinstance(exc, Exception) and isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        error = (f"UnpicklingError: the result of step {step!r} was pickled in the worker but cannot be "
                 f"unpickled here: {type(exc).__name__}: {safe_str(exc)} (return plain data, or make "
                 "the class importable in this process)")
        return StepReport(wf, run, step, Status.FAILED, None, attempt, error, tb, None, started, finished)
    return StepReport(wf, run, step, status, value, attempt, error, tb, action, started, finished)


def rebuild_error(type_name: str, message: str) -> Exception:
    """The exception a broker raised, rebuilt on the other side of the channel."""
    cls = getattr(errors, type_name, None) or getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # a class whose constructor wants more than a message
            pass
    return RuntimeError(f"{type_name}: {message}")


class ChannelClient(BrokerClient):
    """A :class:`BrokerClient` over a pipe to the kernel, used inside pool workers.

    With ``wait=True`` (how pool workers run) :meth:`get_step` blocks until a
    step is ready, and :meth:`report_step` also fetches the next assignments
    in the same round trip; the following :meth:`get_step` calls return them
    (while some are held, reports go one-way). When the kernel stops the
    pool, both raise :class:`ChannelClosed`.

    ``on_workflows`` is called with new :data:`WorkflowBlob` s the kernel
    ships to a running worker; it returns the worker id to continue with.
    ``spin`` (seconds) is how long to look for a reply before sleeping, while
    replies come that fast (see :func:`spin_seconds`).

    Examples
    --------
    >>> import multiprocessing
    >>> a, b = multiprocessing.Pipe()
    >>> ChannelClient(a).wait
    False
    """

    def __init__(self, conn: Any, *, wait: bool = False, spin: float = 0.0) -> None:
        self._conn = conn
        #: Seconds to wait for a reply without sleeping before blocking (pool workers: a little).
        self.spin = spin
        self._slow = 0  # how many replies in a row took longer than ``spin``
        self._reader = FrameReader(conn)
        self._rt_lock = threading.Lock()  # one request/reply pair at a time
        self._send_lock = threading.Lock()  # one message on the wire at a time
        self.wait = wait
        self._next: deque[StepAssignment] = deque()
        self.on_workflows: Callable[[list[WorkflowBlob]], str] | None = None
        # Reports of held steps wait here briefly and travel together.
        self._outbox: list[tuple[Any, ...]] = []
        self._outbox_worker: str | None = None
        self._outbox_lock = threading.Lock()
        self._outbox_due = threading.Event()
        self._flusher: threading.Thread | None = None

    def _roundtrip(self, kind: RequestKind, *args: Any) -> tuple[Any, ...]:
        with self._rt_lock:
            try:
                with self._send_lock:
                    send(self._conn, (kind, args))
                if self.spin:
                    sent = time.perf_counter()
                    if self._slow < SLOW_STREAK:
                        self._reader.spin(self.spin)
                    reply = pickle.loads(self._reader.next())
                    self._slow = 0 if time.perf_counter() - sent < self.spin else self._slow + 1
                else:
                    reply = pickle.loads(self._reader.next())
            except (EOFError, OSError) as exc:
                raise ChannelClosed("the kernel closed the worker channel") from exc
        if reply[0] == "error":
            raise rebuild_error(reply[1], reply[2])
        if reply[0] == "stop":
            raise ChannelClosed("the worker pool is stopping")
        return reply

    def _post(self, kind: RequestKind, *args: Any) -> None:
        assert kind in ONE_WAY
        with self._send_lock:
            try:
                send(self._conn, (kind, args))
            except (EOFError, OSError) as exc:
                raise ChannelClosed("the kernel closed the worker channel") from exc

    def _take_outbox(self) -> list[tuple[Any, ...]]:
        with self._outbox_lock:
            batch, self._outbox = self._outbox, []
        return batch

    def _flush(self) -> None:
        # Sent under the outbox lock, so these reports reach the kernel before
        # anything the main thread sends after taking the (then empty) outbox.
        with self._outbox_lock:
            batch, self._outbox = self._outbox, []
            if batch and self._outbox_worker is not None:
                self._post("report", self._outbox_worker, batch)

    def _flush_soon(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="fuseline-reports", daemon=True)
            self._flusher.start()
        self._outbox_due.set()

    def _flush_loop(self) -> None:
        while True:
            self._outbox_due.wait()
            self._outbox_due.clear()
            time.sleep(OUTBOX_DELAY)
            try:
                self._flush()
            except ChannelClosed:
                return

    def _call(self, kind: RequestKind, *args: Any) -> Any:
        return unpack(self._roundtrip(kind, *args)[1])

    def _fetch(self, kind: RequestKind, worker_id: str, *args: Any) -> None:
        while True:
            reply = self._roundtrip(kind, worker_id, *args, self.wait)
            if reply[0] == "assignments":
                self._next.extend(decode_assignment(t) for t in reply[1])
                return
            if self.on_workflows is None:
                raise ChannelClosed("the kernel sent workflows to a client that cannot take them")
            worker_id = self.on_workflows(reply[1])
            kind, args = "get_step", ()

    def hello(self) -> list[WorkflowBlob]:
        """Introduce this process; blocks until the pool has workflows, returns them."""
        reply = self._roundtrip("hello", os.getpid(), PROTOCOL_VERSION)
        return list(reply[1])

    def load_error(self, text: str) -> None:
        """Tell the kernel the shipped workflows could not be loaded here."""
        self._roundtrip("load_error", text)

    def register_worker(self, workflows: Iterable[WorkflowSchema], name: str | None = None) -> str:
        return str(self._call("register_worker", pack(list(workflows)), name))

    def unregister_worker(self, worker_id: str) -> None:
        self._call("unregister_worker", worker_id)

    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None) -> str:
        return str(self._call("dispatch_workflow", pack(workflow), pack(inputs)))

    def get_step(self, worker_id: str) -> StepAssignment | None:
        if not self._next:
            self._fetch("get_step", worker_id)
        return self._next.popleft() if self._next else None

    def report_step(self, worker_id: str, report: StepReport) -> None:
        try:
            encoded = encode_report(report)
        except Exception as exc:  # an unpicklable result fails the step, not the worker
            failed = replace(report, state=Status.FAILED, result=None, action=None, error=(
                f"PicklingError: the result of step {report.step_name!r} (a "
                f"{type(report.result).__name__}) cannot be sent back to the kernel: {exc}"))
            encoded = encode_report(failed)
        if self.wait and self._next:  # more work in hand: do not wait for the kernel
            with self._outbox_lock:
                self._outbox.append(encoded)
                self._outbox_worker = worker_id
                full = len(self._outbox) >= OUTBOX_MAX
            if full:
                self._flush()
            else:
                self._flush_soon()
        elif self.wait:
            self._fetch("report_and_get", worker_id, [*self._take_outbox(), encoded])
        else:
            self._call("report_step", worker_id, encoded)

    def keep_alive(self, worker_id: str) -> None:
        self._call("keep_alive", worker_id)

    def list_workers(self) -> list[WorkerInfo]:
        return list(self._call("list_workers"))

    def list_workflows(self) -> list[WorkflowSchema]:
        return list(self._call("list_workflows"))

    def get_run(self, run_id: str) -> RunInfo:
        return self._call("get_run", run_id)  # type: ignore[no-any-return]

    def list_runs(self) -> list[RunInfo]:
        return list(self._call("list_runs"))

    def status(self) -> dict[str, Any]:
        return dict(self._call("status"))

    def close(self) -> None:
        self._conn.close()


__all__ = [
    "PROTOCOL_VERSION",
    "REPLY_KINDS",
    "REQUEST_KINDS",
    "SLOW_STREAK",
    "SPIN_DEFAULT_US",
    "SPIN_ENV",
    "ChannelClient",
    "ChannelClosed",
    "FrameReader",
    "Packed",
    "WorkflowBlob",
    "decode_assignment",
    "decode_report",
    "encode_assignment",
    "encode_report",
    "pack",
    "rebuild_error",
    "receive",
    "send",
    "spin_seconds",
    "unpack",
]
