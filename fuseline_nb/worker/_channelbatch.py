"""How a pool worker's client holds reports and asks early: several steps per round trip.

:class:`Batching` is the part of :class:`~fuseline_nb.worker.channel.ChannelClient`
that deals with batches of assignments (``latency`` measure 2): while more
steps are in hand, a quick step's report is held and leaves with the next
message; half-way through a batch the next one is asked for early, and its
answer (or the answer to a report sent without waiting) is read when it is
needed. It also reads each reply from the kernel (a short spin first, see
:class:`~fuseline_nb.worker.latency.Spin`).

Examples
--------
>>> from fuseline_nb.worker.channel import ChannelClient
>>> issubclass(ChannelClient, Batching)
True
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..broker.base import StepAssignment
from ._channelwire import ChannelClosed, WorkflowBlob, rebuild_error
from ._pipeforms import assignments_from
from .latency import HOLD_SECONDS, FrameReader, Spin, send, send_all

log = logging.getLogger("fuseline_nb.worker.channel")


class Batching:
    """Held reports, early asks and reading replies: a mix-in of ``ChannelClient`` (whose ``__init__`` sets
    the fields below)."""

    _conn: Any
    spin: Spin
    _reader: FrameReader
    _rt_lock: threading.Lock
    _send_lock: threading.Lock
    wait: bool
    _next: deque[StepAssignment]
    _held: list[tuple[Any, ...]]
    _held_by: str
    _held_since: float
    _timed: bool
    _ask_at: int
    _asked: bool
    _early: tuple[Any, ...] | None
    _reported: bool
    on_workflows: Callable[[list[WorkflowBlob]], str] | None

    def _reply(self) -> tuple[Any, ...]:
        """The next message from the kernel (a short spin first, see latency.Spin); hold ``_rt_lock``."""
        if self.spin.wanted():
            return self._spun()
        return pickle.loads(self._reader.next())  # type: ignore[no-any-return]

    def _spun(self) -> tuple[Any, ...]:
        """:meth:`_reply` after a spin (``spin.wanted()`` said yes)."""
        spin = self.spin
        sent = time.perf_counter()
        self._reader.spin(spin.seconds, spin)
        reply = pickle.loads(self._reader.next())  # (decode)
        spin.took(time.perf_counter() - sent)
        return reply  # type: ignore[no-any-return]

    def _ask_early(self, worker_id: str) -> None:
        """Ask for the next batch while this one still runs (its answer is read when it is needed).

        The held reports leave in the same write. The kernel answers at once,
        with an empty batch if nothing is ready (it never parks this ask).
        """
        with self._rt_lock:
            try:
                with self._send_lock:
                    held, self._held = self._held, []
                    ask = ("get_step", (worker_id, False))
                    send_all(self._conn, [("reports", (self._held_by, held)), ask] if held else [ask])
            except (EOFError, OSError) as exc:
                raise ChannelClosed("the kernel closed the worker channel") from exc
            self._asked = True

    def _take_early(self) -> str | None:
        """Take the answer to the early ask or to :meth:`send_report` (waiting for it if it has not come yet).

        Returns the worker id to go on with when it brought workflows (the
        kernel ships them only to a worker holding no step), else ``None``.
        A report's refusal is raised here, after the steps that came with it
        are in hand; so are its error and the pool's stop.
        """
        if self._asked:
            with self._rt_lock:
                if self._asked:
                    try:
                        self._early = self._reply()
                        self._asked = False
                    except (EOFError, OSError) as exc:
                        raise ChannelClosed("the kernel closed the worker channel") from exc
        reply, self._early = self._early, None
        reported, self._reported = self._reported, False
        if reply is None:
            return None
        kind = reply[0]
        if kind == "assignments":
            self._took(reply[1])
            if reported and len(reply) > 2:  # the kernel refused the report it answers: the steps are in hand
                raise rebuild_error(*reply[2])
        elif kind == "workflows":
            if self.on_workflows is not None:
                return self.on_workflows(reply[1])  # registered now; the next get brings work
            if reported:
                raise ChannelClosed("the kernel sent workflows to a client that cannot take them")
        elif reported:  # the answer of a report: raised as report_step raises it
            if kind == "error":
                raise rebuild_error(reply[1], reply[2])
            raise ChannelClosed("the worker pool is stopping")
        elif kind == "error":  # asked again, and raised, when this worker's hands are empty
            log.warning("early ask for more work refused: %s: %s", reply[1], reply[2])
        # "stop" to an early ask: the steps in hand run and report first; the next request hears it again
        return None

    def _answer(self) -> tuple[Any, ...] | None:
        """The answer to :meth:`send_report`, read now (``None``: a request read it first, it is in ``_early``)."""
        with self._rt_lock:
            if not self._asked:
                return None
            try:  # (_reply, written out: a pool worker reads each step's answer here)
                reply = self._spun() if self.spin.wanted() else pickle.loads(self._reader.next())
            except (EOFError, OSError) as exc:
                raise ChannelClosed("the kernel closed the worker channel") from exc
            self._asked = self._reported = False
            return reply

    def _took(self, batch: list[Any]) -> None:
        self._next.extend(assignments_from(batch))
        n = len(batch)
        self._ask_at = n // 2 if n >= 4 else 0  # a batch: ask for the next one half-way through it

    def flush(self, older_than: float = 0.0) -> None:
        """Send the held reports now (one one-way message) if the oldest is ``older_than`` seconds old."""
        if not self._held or time.monotonic() - self._held_since < older_than:
            return
        with self._send_lock:
            held, self._held = self._held, []
            if held:
                try:
                    send(self._conn, ("reports", (self._held_by, held)))
                except (EOFError, OSError) as exc:
                    raise ChannelClosed("the kernel closed the worker channel") from exc

    def _hold(self, worker_id: str, wire: tuple[Any, ...]) -> None:
        """Keep a report (its pipe form) of a step done while more are in hand (see latency: measure 2)."""
        if self._held and self._held_by != worker_id:
            self.flush()
        with self._send_lock:
            if not self._held:
                self._held_since, self._held_by = time.monotonic(), worker_id
            self._held.append(wire)
        started, finished = wire[9], wire[10]  # (report_wire: started_at, finished_at)
        quick = started is not None and finished is not None and finished - started < HOLD_SECONDS
        self.flush(0.0 if self._timed or not quick else HOLD_SECONDS)  # a timed step's end is never held


__all__ = ["Batching"]
