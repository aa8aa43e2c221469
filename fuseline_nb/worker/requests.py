"""Requests from worker processes, as the kernel's channel server reads and answers them.

:class:`Requests` is the half of :class:`~fuseline_nb.worker.server.ChannelServer`
that turns a message from a worker's pipe into a broker call and a reply:
reading frames (:meth:`Requests._readable`), the handler of each request
kind (:data:`~fuseline_nb.worker.channel.REQUEST_KINDS`), and sending the
answer. Handing out assignments, parking and the loop itself stay in the
server.

Examples
--------
>>> from fuseline_nb.worker.channel import REQUEST_KINDS
>>> "report_and_get" in REQUEST_KINDS
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..broker.base import StepReport
from ..broker.clients import BrokerClient
from ._channelwire import PROTOCOL_VERSION, REQUEST_KINDS, decode
from ._pipeforms import report_from
from ._watch import Watch
from .endpoint import Endpoint, Reply, Supervisor
from .latency import send

log = logging.getLogger(__name__)

#: Messages carrying a report: consecutive ones read together are recorded with one broker call.
_REPORTS = frozenset({"reports", "report_and_get"})


class Requests:
    """What the channel server does with each request (a mixin of :class:`ChannelServer`)."""

    client: BrokerClient
    supervisor: Supervisor
    names: dict[str, str]
    _sel: Watch
    _handlers: dict[str, Callable[..., Reply]]
    _deferred: Callable[[], AbstractContextManager[None]]  # the client's deferred_events
    _block: AbstractContextManager[None] | None  # what it answers, when that is one reusable object

    if TYPE_CHECKING:  # the server's own (handing out work, tracking reports, closing a pipe)
        def _offer(self, ep: Endpoint, kind: str, worker_id: str | None, wait: bool,
                   reports: list[StepReport] | None = None) -> Reply: ...
        def remove(self, ep: Endpoint) -> None: ...

    def handlers(self) -> dict[str, Callable[..., Reply]]:
        """The handler of each request kind: ``handler(endpoint, *args) -> reply`` (``None``: no reply now)."""
        handlers: dict[str, Callable[..., Reply]] = {
            "hello": self._hello, "load_error": self._load_error,
            "register_worker": self._register, "unregister_worker": self._unregister,
            "get_step": self._get, "report_and_get": self._report_and_get,
            "report_step": self._report_only, "reports": self._reports_oneway,
            "keep_alive": self._keep_alive,
            "dispatch_workflow": self._dispatch,
            "list_workers": lambda ep: ("ok", self.client.list_workers()),
            "list_workflows": lambda ep: ("ok", self.client.list_workflows()),
            "get_run": lambda ep, run_id: ("ok", self.client.get_run(run_id)),
            "list_runs": lambda ep: ("ok", self.client.list_runs()),
            "status": lambda ep: ("ok", self.client.status()),
        }
        assert set(handlers) == set(REQUEST_KINDS)
        return handlers

    def _readable(self, ep: Endpoint) -> bool:
        try:
            frames = ep.reader.read()
        except (EOFError, OSError):  # the process is going away; its sentinel follows
            try:
                self._sel.unregister(ep.conn)
            except (KeyError, ValueError, OSError):
                pass
            return False
        if not frames:  # part of a message: the rest comes with a later read
            return True
        frames.reverse()
        # answers leave before the broker writes its history and its events reach the listeners
        with self._block if self._block is not None else self._deferred():
            self._requests(ep, frames)
        return True

    def _requests(self, ep: Endpoint, frames: list[bytes]) -> None:
        """Handle the messages read together from ``ep`` (in reverse order), answering each as it goes."""
        reports: list[StepReport] = []  # one-way reports read together: one broker call for all of them
        wid: str | None = None
        while frames:  # each frame handed over: freed once decoded (a big result is not held twice)
            try:
                kind, args = decode(frames.pop())
            except Exception as exc:
                self._flush_reports(ep, wid, reports)
                self._send(ep, ("error", type(exc).__name__, str(exc)))
                continue
            if kind in _REPORTS and len(args) >= 2 and (not reports or args[0] == wid):
                wid = args[0]
                try:  # reports travel in their pipe form (_pipeforms)
                    got = [report_from(r) for r in args[1]] if kind == "reports" else [report_from(args[1])]
                except Exception as exc:
                    self._flush_reports(ep, wid, reports)  # those read before it still count
                    why = f"a report from worker {ep.label} cannot be read: {type(exc).__name__}: {exc}"
                    if kind == "reports":  # one-way: nobody waits for an answer
                        log.warning("%s", why)
                    else:
                        self._send(ep, ("error", "ValueError", why))
                    continue
                reports.extend(got)
                if kind == "reports":
                    continue
                try:  # the hot path of every worker: straight to the broker, no handler lookup
                    reply = self._offer(ep, "get_step", wid, args[2], reports) if len(args) == 3 \
                        else self._reports_and_get(ep, wid, reports, *args[2:])
                except Exception as exc:  # the worker gets the broker's error as a value
                    reply = ("error", type(exc).__name__, str(exc))
                reports = []
                if reply is not None:
                    self._send(ep, reply)
                continue
            self._flush_reports(ep, wid, reports)
            self._handle(ep, kind, args)
        self._flush_reports(ep, wid, reports)

    def _handle(self, ep: Endpoint, kind: str, args: tuple[Any, ...]) -> None:
        handler = self._handlers.get(kind)
        if handler is None:
            self._send(ep, ("error", "ValueError",
                            f"unknown message kind: {kind!r} (must be one of {list(REQUEST_KINDS)})"))
            return
        self._answer(ep, handler, *args)

    def _answer(self, ep: Endpoint, handler: Callable[..., Reply], *args: Any) -> None:
        try:
            reply = handler(ep, *args)
        except Exception as exc:  # the worker gets the broker's error as a value
            reply = ("error", type(exc).__name__, str(exc))
        if reply is not None:
            self._send(ep, reply)

    def _flush_reports(self, ep: Endpoint, worker_id: str | None, reports: list[StepReport]) -> None:
        """Record one-way reports (nobody waits for an answer: a refused one is logged, as ProcessEngine would)."""
        if not reports or worker_id is None:
            return
        try:
            refused = self._take_reports(ep, worker_id, reports)
        except Exception as exc:
            refused = [exc]
        reports.clear()  # recorded (or refused): never twice
        for why in refused:
            if why is not None:
                log.warning("report from worker %s refused: %s", ep.label, why)

    def _send(self, ep: Endpoint, reply: tuple[Any, ...]) -> None:
        try:
            send(ep.conn, reply)
        except (OSError, ValueError):  # the process died; its sentinel tells the pool
            pass

    def _died(self, ep: Endpoint) -> None:
        while not ep.conn.closed and self._poll(ep):  # a report sent just before dying still counts
            if not self._readable(ep):
                break
        self.remove(ep)
        self.supervisor.on_exit(ep)

    @staticmethod
    def _poll(ep: Endpoint) -> bool:
        try:
            return bool(ep.conn.poll())
        except (OSError, EOFError):
            return False

    def _hello(self, ep: Endpoint, pid: int, version: int) -> Reply:
        if version != PROTOCOL_VERSION:
            raise ValueError(f"worker speaks channel protocol {version!r}, the kernel {PROTOCOL_VERSION}")
        ep.pid = int(pid)
        return self._offer(ep, "hello", None, True)

    def _load_error(self, ep: Endpoint, text: str, key: tuple[str, str] | None = None) -> Reply:
        self.supervisor.on_load_error(ep, text, key)
        return ("ok", None)

    def _register(self, ep: Endpoint, schemas: Any, name: str | None) -> Reply:
        wid = self.client.register_worker(schemas, name)
        old, ep.worker_id = ep.worker_id, wid
        self.names[wid] = ep.label
        if old is not None and old != wid:  # re-registered with more workflows
            self.client.unregister_worker(old)
        return ("ok", wid)

    def _unregister(self, ep: Endpoint, worker_id: str) -> Reply:
        self.client.unregister_worker(worker_id)
        return ("ok", None)

    def _get(self, ep: Endpoint, worker_id: str, wait: bool) -> Reply:
        return self._offer(ep, "get_step", worker_id, wait)

    def _report_and_get(self, ep: Endpoint, worker_id: str, report: Any, wait: bool) -> Reply:
        return self._reports_and_get(ep, worker_id, [report_from(report)], wait)

    def _reports_and_get(self, ep: Endpoint, worker_id: str, reports: list[StepReport], wait: bool) -> Reply:
        """Record ``reports`` (the one-way ones read with it, then its own) and hand out the next work.

        A refused one-way report is logged; a refused last report is told to
        the worker, as a lone ``report_step`` would raise it (see
        :meth:`~fuseline_nb.worker.server.ChannelServer._offer`).
        """
        return self._offer(ep, "get_step", worker_id, wait, reports)

    def _record(self, ep: Endpoint, worker_id: str | None, reports: list[StepReport]) -> None:
        """Record a ``report_and_get``'s reports alone; a refusal of the last one is raised (the answer)."""
        if worker_id is None:
            raise ValueError("reports need the worker id they come from")
        last = self._refusal(ep, self._take_reports(ep, worker_id, reports))
        if last is not None:
            raise last

    @staticmethod
    def _refusal(ep: Endpoint, refused: list[Exception | None]) -> Exception | None:
        """Log the refused one-way reports; why the last report was refused, or ``None``."""
        for exc in refused[:-1]:
            if exc is not None:
                log.warning("report from worker %s refused: %s", ep.label, exc)
        return refused[-1] if refused else None

    def _take_reports(self, ep: Endpoint, worker_id: str, reports: list[StepReport]) -> list[Exception | None]:
        """Record ``reports`` with one broker call; for each, ``None`` or why it was refused."""
        ep.step_seconds = self._longest(reports)
        return self.client.report_steps(worker_id, reports)

    @staticmethod
    def _longest(reports: list[StepReport]) -> float:
        """The longest step of ``reports`` in seconds (0 when none says): sizes its worker's next batch."""
        longest = 0.0
        for r in reports:
            started, finished = r.started_at, r.finished_at
            if started is not None and finished is not None and finished - started > longest:
                longest = finished - started
        return longest

    def _reports_oneway(self, ep: Endpoint, worker_id: str, reports: list[Any]) -> Reply:
        self._flush_reports(ep, worker_id, [report_from(r) for r in reports])
        return None

    def _report_only(self, ep: Endpoint, worker_id: str, report: Any) -> Reply:
        refused = self._take_reports(ep, worker_id, [report_from(report)])
        if refused[0] is not None:
            raise refused[0]
        return ("ok", None)

    def _keep_alive(self, ep: Endpoint, worker_id: str) -> Reply:
        self.client.keep_alive(worker_id)
        return ("ok", None)

    def _dispatch(self, ep: Endpoint, schema: Any, inputs: Any) -> Reply:
        return ("ok", self.client.dispatch_workflow(schema, inputs))


__all__ = ["Requests"]
