"""The process channel: spawned workers talk to the kernel's broker over a pipe.

Each worker process owns one end of a private channel (two anonymous
one-way pipes, :mod:`fuseline_nb.worker._duplex`: no address, nothing to
connect to, so nothing to authenticate). In the worker, :class:`ChannelClient` is a
:class:`~fuseline_nb.broker.clients.BrokerClient`; in the kernel, one
:class:`ChannelServer` thread serves every pipe of a pool with a single
poll loop over the pipes and the worker processes' sentinels.

Wire format. A request is ``(kind, args)`` and a reply ``(kind, value...)``,
both pickled (:func:`encode` / :func:`decode`); ``kind`` is one of
:data:`REQUEST_KINDS` / :data:`REPLY_KINDS` and an unknown kind is answered
with an error naming the choices. The messages are the broker's own
dataclasses; user data in them (run inputs, step results) is a
:class:`~fuseline_nb.workflow.value.Value` made where it was born, so it
crosses as its bytes, classes and functions defined in a notebook included,
and is opened only by the worker that runs the consuming step. A step's
report and its assignments travel as their fields' tuples
(``fuseline_nb.worker._pipeforms``: cheaper to pickle, every field kept).
Errors travel as ``(type name, message)`` and are raised again as the same
class; a refused report answered with the next step comes as
``("assignments", batch, (type name, message))``.

The hot path is at most one round trip per step: a worker's
``report_and_get`` carries its report and receives its next assignments (a
pool worker's turn, :meth:`ChannelClient.report_and_next`, writes it and reads
the answer in one call; :meth:`ChannelClient.send_report` writes it without
waiting, and the next request reads the answer). A
worker that asks for work when none is ready is *parked* (its request stays
unanswered) until a step is queued; the server is woken by broker events, so
idle workers cost nothing and nobody polls. What keeps that round trip short
(one write and one read per message, several assignments per round trip
with one-way reports, a short spin for a quick reply) is all in
:mod:`~fuseline_nb.worker.latency`.

Examples
--------
>>> rebuild_error("StaleReportError", "too late")
StaleReportError('too late')
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ..broker.base import StepAssignment, StepReport, WorkerInfo
from ..broker.clients import BrokerClient
from ..workflow.runinfo import RunInfo
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status
from ..workflow.value import Value, values_of
from ._channelbatch import Batching
from ._channelwire import (
    ONE_WAY,
    PROTOCOL_VERSION,
    REPLY_KINDS,
    REQUEST_KINDS,
    ChannelClosed,
    RequestKind,
    WorkflowBlob,
    decode,
    encode,
    rebuild_error,
)
from ._pipeforms import assignment_from, report_wire
from .latency import HOLD_SECONDS, FrameReader, Spin, send, send_all

log = logging.getLogger(__name__)

class ChannelClient(Batching, BrokerClient):
    """A :class:`BrokerClient` over a pipe to the kernel, used inside pool workers.

    With ``wait=True`` (how pool workers run) :meth:`get_step` blocks until a
    step is ready, and :meth:`report_step` also fetches the next assignments
    in the same round trip; the following :meth:`get_step` calls return them
    (while some are held, reports go one-way). When the kernel stops the
    pool, both raise :class:`ChannelClosed`.

    ``on_workflows`` is called with new :data:`WorkflowBlob` s the kernel
    ships to a running worker; it returns the worker id to continue with.
    ``spin`` (seconds) is how long to look for a reply before sleeping (see
    :class:`~fuseline_nb.worker.latency.Spin`).

    Examples
    --------
    >>> import multiprocessing
    >>> a, b = multiprocessing.Pipe()
    >>> ChannelClient(a).wait
    False
    """

    def __init__(self, conn: Any, *, wait: bool = False, spin: float = 0.0) -> None:
        self._conn = conn
        self.spin = Spin(spin)
        self._reader = FrameReader(conn)
        self._rt_lock = threading.Lock()  # one request/reply pair at a time
        self._send_lock = threading.Lock()  # one message on the wire at a time
        self.wait = wait
        self._next: deque[StepAssignment] = deque()
        self._held: list[tuple[Any, ...]] = []  # reports not sent yet (their pipe form), while more work is in hand
        self._held_by = ""  # the worker id they are from
        self._held_since = 0.0  # time.monotonic() when the oldest was held
        self._timed = False  # whether the step running now has a timeout (the kernel times it from its start)
        self._ask_at = 0  # ask for the next batch early when this many assignments are left in hand (0: never)
        self._asked = False  # an early ask is on its way: the next reply on the pipe is its answer
        self._early: tuple[Any, ...] | None = None  # its answer, read but not taken yet
        self._reported = False  # the answer on its way (or read, not taken) is a report's (send_report)
        self.on_workflows: Callable[[list[WorkflowBlob]], str] | None = None

    def _roundtrip(self, kind: RequestKind, *args: Any) -> tuple[Any, ...]:
        with self._rt_lock:
            try:
                if self._asked and self._reported:  # a report's answer may be parked (nothing ready): it is
                    self._early = self._reply()  # read first, else this request's answer would overtake it
                    self._asked = False
                with self._send_lock:
                    if self._held:  # held reports go first, in the same write
                        held, self._held = self._held, []
                        send_all(self._conn, [("reports", (self._held_by, held)), (kind, args)])
                    else:
                        send(self._conn, (kind, args))
                if self._asked:  # the answer to an early ask comes first (kept before _asked clears)
                    self._early = self._reply()
                    self._asked = False
                reply = self._reply()
            except (EOFError, OSError) as exc:
                raise ChannelClosed("the kernel closed the worker channel") from exc
        if reply[0] == "error":
            raise rebuild_error(reply[1], reply[2])
        if reply[0] == "stop":
            raise ChannelClosed("the worker pool is stopping")
        return reply

    def _call(self, kind: RequestKind, *args: Any) -> Any:
        return self._roundtrip(kind, *args)[1]

    def _fetch(self, kind: RequestKind, worker_id: str, *args: Any) -> None:
        while True:
            reply = self._roundtrip(kind, worker_id, *args, self.wait)
            if self._early is not None:  # an early ask's answer, read first: its steps come first
                worker_id = self._take_early() or worker_id
            if reply[0] == "assignments":
                self._took(reply[1])
                if len(reply) > 2:  # the kernel refused the report it answers: the next steps are in hand
                    raise rebuild_error(*reply[2])
                return
            if self.on_workflows is None:
                raise ChannelClosed("the kernel sent workflows to a client that cannot take them")
            worker_id = self.on_workflows(reply[1])
            kind, args = "get_step", ()

    def hello(self) -> list[WorkflowBlob]:
        """Introduce this process; blocks until the pool has workflows, returns them."""
        reply = self._roundtrip("hello", os.getpid(), PROTOCOL_VERSION)
        return list(reply[1])

    def load_error(self, text: str, key: tuple[str, str] | None = None) -> None:
        """Tell the kernel the shipped workflows could not be loaded here (``key``: the one that failed)."""
        self._roundtrip("load_error", text, key)

    def register_worker(self, workflows: Iterable[WorkflowSchema], name: str | None = None) -> str:
        return str(self._call("register_worker", list(workflows), name))

    def unregister_worker(self, worker_id: str) -> None:
        self._call("unregister_worker", worker_id)

    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None) -> str:
        return str(self._call("dispatch_workflow", workflow, values_of(inputs)))  # inputs born here

    def get_step(self, worker_id: str) -> StepAssignment | None:
        if self._asked and self._reported:  # send_report's answer: how a pool worker's next step comes
            reply = self._answer()
            if reply is not None:
                if reply[0] == "assignments" and len(reply) == 2 and len(reply[1]) == 1:  # one step, no refusal
                    x = reply[1][0]  # (what _took and the lines below do with a batch of one)
                    a = assignment_from(x)
                    self._ask_at = 0
                    self._timed = a.timeout is not None
                    if self._held:
                        self.flush(0.0 if self._timed else HOLD_SECONDS)
                    return a
                self._early, self._reported = reply, True  # anything else: taken the general way below
        if self._early is not None or (self._asked and not self._next):
            worker_id = self._take_early() or worker_id
        if not self._next:
            self._fetch("get_step", worker_id)
        if not self._next:
            return None
        a = self._next.popleft()
        self._timed = a.timeout is not None
        if self._held:  # a step starts: reports held long enough leave first, all of them before a timed
            self.flush(0.0 if self._timed else HOLD_SECONDS)  # step (its timeout counts from there)
        if self.wait and len(self._next) == self._ask_at and self._ask_at and not self._asked:
            self._ask_at = 0
            self._ask_early(worker_id)
        return a

    def report_step(self, worker_id: str, report: StepReport) -> None:
        self._report(worker_id, report_wire(self._with_value(report)), False)

    def send_report(self, worker_id: str, report: StepReport | tuple[Any, ...]) -> None:
        """:meth:`report_step` without waiting for the answer: how a pool worker reports a step.

        With ``wait=True`` and no step in hand, the report (with the asking
        for the next steps) leaves at once, and its answer is read by the next
        request: :meth:`get_step` takes the steps it brings and raises the
        report's refusal, if any, as :meth:`report_step` would, after them.
        The worker's bookkeeping of the step it reported happens while the
        kernel handles the report. Otherwise this is :meth:`report_step`.
        ``report`` may be given in its pipe form (``report_wire``'s tuple,
        its result a :class:`Value` in its pipe form, ``value_wire``): a pool worker makes no dataclass.
        """
        if report.__class__ is not tuple:
            report = report_wire(self._with_value(report))  # type: ignore[arg-type]
        self._report(worker_id, report, True)  # type: ignore[arg-type]

    def report_and_next(self, worker_id: str, report: tuple[Any, ...]) -> StepAssignment | None:
        """:meth:`send_report` then :meth:`get_step`, in one turn: how a pool worker reports a step and
        gets its next one (the same messages, the same answers, refusals raised the same way).

        With nothing else on the pipe (no steps in hand, no early ask, no held
        reports: a chain) the report leaves and its answer is read in one go,
        without the calls between: on one CPU each costs the kernel's time too.

        Examples
        --------
        >>> import multiprocessing
        >>> from fuseline_nb.worker._pipeforms import assignment_wire
        >>> a, b = multiprocessing.Pipe()
        >>> client = ChannelClient(b, wait=True)
        >>> nxt = StepAssignment("wf", "r1", "t", {}, 0.0, 60.0)
        >>> a.send_bytes(encode(("assignments", [assignment_wire(nxt)])))  # the kernel's answer, ahead
        >>> done = ("wf", "r1", "s", "SUCCEEDED", None, 1, None, None, None, 1.0, 2.0, None)
        >>> client.report_and_next("w1", done).step_name
        't'
        >>> decode(a.recv_bytes())[0]  # what the kernel received
        'report_and_get'
        """
        if not self.wait or self._next or self._asked or self._early is not None or self._held:
            self.send_report(worker_id, report)  # the general way
            return self.get_step(worker_id)
        with self._rt_lock:
            try:
                with self._send_lock:
                    send(self._conn, ("report_and_get", (worker_id, report, True)))
                self._asked = self._reported = True  # (as send_report leaves it, should the read fail)
                reply = self._spun() if self.spin.wanted() else pickle.loads(self._reader.next())
            except (EOFError, OSError) as exc:
                raise ChannelClosed("the kernel closed the worker channel") from exc
            self._asked = self._reported = False
        if reply[0] == "assignments" and len(reply) == 2 and len(reply[1]) == 1:  # one step, no refusal
            a = assignment_from(reply[1][0])
            self._ask_at = 0
            self._timed = a.timeout is not None
            return a
        self._early, self._reported = reply, True  # anything else: taken the general way
        return self.get_step(worker_id)

    @staticmethod
    def _with_value(report: StepReport) -> StepReport:
        """``report`` with its result a :class:`Value` (a caller that passed the object: made here, in the worker)."""
        if report.result is None or report.result.__class__ is Value:
            return report
        try:
            return replace(report, result=Value.of(report.result))
        except Exception as exc:  # an unpicklable result fails the step, not the worker
            return replace(report, state=Status.FAILED, result=None, action=None, error=(
                f"PicklingError: the result of step {report.step_name!r} (a "
                f"{type(report.result).__name__}) cannot be sent back to the kernel: {exc}"))

    def _report(self, worker_id: str, wire: tuple[Any, ...], later: bool) -> None:
        """Send the report ``wire`` (its pipe form): held while more steps are in hand, else with the asking
        for more (answer read now, or by the next request when ``later``), or alone when not waiting."""
        if self.wait and not self._next and (self._asked or self._early is not None):
            self._take_early()  # the early ask's answer decides whether more work is in hand
        if not self.wait:
            self._call("report_step", worker_id, wire)
        elif self._next:  # more work in hand: do not wait for the kernel
            self._hold(worker_id, wire)
        elif not later:
            self._fetch("report_and_get", worker_id, wire)
        else:
            ask = ("report_and_get", (worker_id, wire, True))
            with self._rt_lock:
                try:
                    with self._send_lock:
                        if self._held:  # held reports go first, in the same write
                            held, self._held = self._held, []
                            send_all(self._conn, [("reports", (self._held_by, held)), ask])
                        else:
                            send(self._conn, ask)
                except (EOFError, OSError) as exc:
                    raise ChannelClosed("the kernel closed the worker channel") from exc
                self._asked = self._reported = True

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
        self._reader.close()


__all__ = [
    "ONE_WAY",
    "PROTOCOL_VERSION",
    "REPLY_KINDS",
    "REQUEST_KINDS",
    "ChannelClient",
    "ChannelClosed",
    "WorkflowBlob",
    "decode",
    "encode",
    "rebuild_error",
]
