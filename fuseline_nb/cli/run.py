"""``fuseline-nb run MODULE:ATTR``: run a workflow on worker processes from a terminal.

Shows progress while the run goes (a live line of counts per state on a
terminal, at most 10 updates a second; plain lines otherwise), then prints a
summary of the run queried from its history (SQL over the ``steps`` view
when ``--db`` names a DuckDB file). The exit code is 0 when the run
SUCCEEDED, 1 when it FAILED.

Examples
--------
>>> parse_inputs(["n=10", "name=tour", 'opts={"a": 1}'])
{'n': 10, 'name': 'tour', 'opts': {'a': 1}}
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from ..errors import FuselineError
from ..workflow.events import Event
from ..workflow.graph import Workflow
from ..workflow.status import Status
from ..workflow.value import preview
from .loader import load_workflow

_ORDER = (Status.SUCCEEDED, Status.RUNNING, Status.PENDING, Status.SKIPPED, Status.CANCELLED, Status.FAILED)
_COLOURS = {Status.SUCCEEDED: "32", Status.RUNNING: "33", Status.PENDING: "37", Status.SKIPPED: "90",
            Status.CANCELLED: "35", Status.FAILED: "31"}
_MARKS = {Status.SUCCEEDED: "✔", Status.FAILED: "✘", Status.SKIPPED: "↷", Status.CANCELLED: "⊘"}
_ASCII_MARKS = {Status.SUCCEEDED: "+", Status.FAILED: "x", Status.SKIPPED: "~", Status.CANCELLED: "-"}
#: Workflows with more steps than this get a line per failure only, not per step.
_STEP_LINES_UP_TO = 40


def add_parser(subparsers: Any) -> None:
    """Register ``run`` on the ``fuseline-nb`` parser."""
    p = subparsers.add_parser(
        "run", help="run a workflow on worker processes with live progress and a summary",
        description="Run a workflow on worker processes, show its progress, then print a summary "
                    "queried from the run history.",
    )
    p.add_argument("target", metavar="MODULE:ATTR",
                   help="a Workflow (or a function returning one), e.g. fuseline_nb.examples:tour")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="worker processes (default: 2)")
    p.add_argument("--db", metavar="PATH", default=None,
                   help="DuckDB file for the run history (default: kept in memory)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="KEY=VALUE",
                   help="a run input; VALUE is parsed as JSON when it can be (repeatable)")
    p.add_argument("--cache", action="store_true",
                   help="reuse the results of steps whose code and inputs were seen before (with --db, "
                        "across invocations; see docs/caching.md)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="give up waiting after this many seconds (exit code 2)")
    p.set_defaults(handler=main)


def parse_inputs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["k=v", ...]`` to a dict; each value is JSON when it parses, else the string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"an input must look like KEY=VALUE, not {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _read_inputs(wf: Workflow) -> list[str]:
    """The run inputs the steps of ``wf`` read by name, sorted.

    Examples
    --------
    >>> from fuseline_nb.examples import tour
    >>> _read_inputs(tour)
    ['delay', 'n']
    """
    return sorted({name for s in wf.to_schema().steps for name in (s.reads or ())})


def _unread_inputs(wf: Workflow, inputs: dict[str, Any]) -> list[str]:
    """The names in ``inputs`` no step of ``wf`` reads (none when a step may read every input).

    A misspelt ``--input`` would otherwise run with the step's default, without a word.

    Examples
    --------
    >>> from fuseline_nb.examples import tour
    >>> _unread_inputs(tour, {"n": 5, "N": 5})
    ['N']
    """
    steps = wf.to_schema().steps
    if any(s.reads is None for s in steps):
        return []
    read = {name for s in steps for name in s.reads or ()}
    return [name for name in inputs if name not in read]


class Progress:
    """Counts step states from broker events and draws them on ``out``.

    Examples
    --------
    >>> import io
    >>> from fuseline_nb.examples import tour
    >>> p = Progress(tour, io.StringIO(), tty=False)
    >>> p.on_event(Event("step_finished", "r1", 1, 0.0, "Validate", Status.SUCCEEDED))
    >>> p.counts()[Status.SUCCEEDED], p.counts()[Status.PENDING]
    (1, 7)
    """

    def __init__(self, wf: Workflow, out: TextIO, *, tty: bool, names: dict[str, str] | None = None) -> None:
        self.wf = wf
        self.out = out
        self.tty = tty
        self.names = names if names is not None else {}
        self.run_id: str | None = None
        self.states = dict.fromkeys(wf.step_names, Status.PENDING)
        self._started: dict[str, float] = {}
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._last_plain = ""
        self._last_plain_at = 0.0
        utf8 = (getattr(out, "encoding", None) or "").lower().replace("-", "") == "utf8"
        self._marks = _MARKS if utf8 or not tty else _ASCII_MARKS
        self._bar = ("█", "░") if utf8 else ("#", ".")

    def on_event(self, e: Event) -> None:
        """Broker event hook: quick, under the broker's lock."""
        if e.step is None or (self.run_id is not None and e.run_id != self.run_id) or e.step not in self.states:
            return
        with self._lock:
            if e.kind == "step_started":
                self.states[e.step] = Status.RUNNING
                self._started[e.step] = e.at
            elif e.kind == "step_queued":
                self.states[e.step] = Status.PENDING
            elif e.kind == "step_finished" and e.state is not None:
                self.states[e.step] = e.state
                if len(self.states) <= _STEP_LINES_UP_TO or e.state is Status.FAILED:
                    self._lines.append(self._step_line(e))

    def counts(self) -> dict[Status, int]:
        """Steps per state now."""
        out = dict.fromkeys(Status, 0)
        for s in list(self.states.values()):
            out[s] += 1
        return out

    def _paint(self, text: str, state: Status) -> str:
        return f"\x1b[{_COLOURS[state]}m{text}\x1b[0m" if self.tty else text

    def _step_line(self, e: Event) -> str:
        state = e.state or Status.PENDING
        took = e.at - self._started[e.step] if e.step in self._started else None
        worker = self.names.get(e.worker or "", e.worker or "")
        detail = (e.detail or {}).get("error") or ""
        mark = self._marks.get(state, " ")
        seconds = f"{took:7.2f}s" if took is not None else " " * 8
        return (f"  {self._paint(mark, state)} {e.step:<24} {self._paint(f'{state.value:<9}', state)} "
                f"{seconds}  {worker:<4} {detail}").rstrip()

    def line(self) -> str:
        """One line: a bar, done/total and the count of each state."""
        counts = self.counts()
        total = len(self.states)
        done = sum(n for s, n in counts.items() if s.is_final)
        width = 20
        filled = round(width * done / total) if total else width
        bar = self._bar[0] * filled + self._bar[1] * (width - filled)
        parts = [self._paint(f"{counts[s]} {s.value.lower()}", s) for s in _ORDER if counts[s]]
        return f"{self.wf.workflow_id} [{bar}] {done}/{total}  " + "  ".join(parts) + \
            f"  {time.monotonic() - self._t0:.1f}s"

    def render(self, final: bool = False) -> None:
        """Print finished-step lines, then the counts line (redrawn in place on a terminal)."""
        with self._lock:
            lines, self._lines = self._lines, []
        if self.tty:
            for text in lines:
                self.out.write("\r\x1b[2K" + text + "\n")
            self.out.write("\r\x1b[2K" + self.line() + ("\n" if final else ""))
        else:
            for text in lines:
                self.out.write(text + "\n")
            line = self.line()
            now = time.monotonic()
            counts_only = line.rsplit("  ", 1)[0]
            if final or (counts_only != self._last_plain and now - self._last_plain_at >= 1.0):
                self.out.write(line + "\n")
                self._last_plain, self._last_plain_at = counts_only, now
        self.out.flush()


_SUMMARY_SQL = """
SELECT step, state, attempts, worker, duration_s,
       coalesce(error_type || ': ' || error_message, result_preview, skip_reason) AS detail
FROM steps WHERE run_id = ?
ORDER BY started_at NULLS LAST, finished_at NULLS LAST, step
"""


def _rows_from_history(session: Any, run: Any) -> tuple[list[tuple[Any, ...]], str]:
    if getattr(session.broker, "sql", None) is not None:
        return session.sql(_SUMMARY_SQL, [run.id]).fetchall(), "SQL over the steps view"
    info = run.info()
    rows = []
    for name, s in sorted(info.steps.items(), key=lambda kv: (kv[1].started_at is None, kv[1].started_at or 0)):
        detail = s.error or (preview(s.value, 60) if s.state is Status.SUCCEEDED else s.skip_reason)
        rows.append((name, s.state.value, s.attempts, s.worker, s.duration_s, detail))
    return rows, "the in-memory history"


def _table(rows: list[tuple[Any, ...]], names: dict[str, str]) -> list[str]:
    head = ("step", "state", "attempts", "worker", "seconds", "result / error")
    cells = [head] + [
        (str(step), str(state), str(att), names.get(w or "", w or "-"),
         f"{dur:.3f}" if dur is not None else "-", _clip(str(detail or ""), 60))
        for step, state, att, w, dur, detail in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head) - 1)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
            for r in cells]


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _summary(session: Any, run: Any, outputs: Any, elapsed: float, out: TextIO) -> None:
    info = run.info()
    names = session.pool.worker_names() if session.pool is not None else {}
    rows, source = _rows_from_history(session, run)
    n_cached = sum(1 for s in info.steps.values() if s.cached)
    cached = f" ({n_cached} of {len(info.steps)} steps cached)" if n_cached else ""
    out.write(f"\nrun {run.id} of workflow {info.workflow_id!r}: {info.state.value} in {elapsed:.2f} s "
              f"on {session.pool.processes if session.pool else 0} worker processes{cached}\n")
    if info.state is Status.SUCCEEDED:
        out.write(f"outputs: {_clip(repr(outputs), 200)}\n")
    out.write(f"\nsteps (from {source}):\n")
    for line in _table(rows, names):
        out.write(line + "\n")
    if getattr(session.broker, "sql", None) is not None:
        (n_runs, n_ok), = session.sql(
            "SELECT count(*), count(*) FILTER (WHERE state = 'SUCCEEDED') FROM runs").fetchall()
        plural = "run" if n_runs == 1 else "runs"
        out.write(f"\nhistory: {session.path} holds {n_runs} {plural} ({n_ok} succeeded); ask it more "
                  f"with DuckDB, e.g.\n  SELECT step, state, duration_s FROM steps WHERE run_id = '{run.id}'\n")


def _drive(session: Any, wf: Workflow, inputs: dict[str, Any], args: argparse.Namespace,
           out: TextIO, t0: float, started: list[Any], ctrl_c: _CtrlC | None = None) -> int:
    ctrl_c = ctrl_c or _CtrlC()
    names = session.pool.worker_names if session.pool is not None else dict
    progress = Progress(wf, out, tty=out.isatty())
    session.subscribe(progress.on_event)
    with ctrl_c.deferred():  # a run is dispatched whole (then cancelled whole) or not at all
        run = session.submit(wf, inputs)
        started.append(run)
    progress.run_id = run.id
    out.write(f"running {wf.workflow_id!r} ({len(wf)} steps) on {args.workers} worker processes, "
              f"run {run.id}\n")
    deadline = None if args.timeout is None else t0 + args.timeout
    while not run.done():
        ctrl_c.check()
        progress.names = names()
        progress.render()
        if deadline is not None and time.monotonic() > deadline:
            progress.render(final=True)
            sys.stderr.write(f"fuseline-nb run: run {run.id} still running after {args.timeout} s\n")
            return 2
        if session.pool is not None:
            session.pool.check()
        time.sleep(0.1)  # at most 10 redraws a second
    progress.names = names()
    progress.render(final=True)
    outputs = run.wait()
    _summary(session, run, outputs, time.monotonic() - t0, out)
    return 0 if run.info().state is Status.SUCCEEDED else 1


class _CtrlC:
    """SIGINT remembered as well as raised.

    A library may swallow the ``KeyboardInterrupt`` (DuckDB does when a Ctrl-C
    lands while one of its queries imports a module); the run loop looks at
    ``pressed`` on every turn, so the CLI never misses a Ctrl-C.
    """

    def __init__(self) -> None:
        self.pressed = False
        self.deferring = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.pressed = True
        if not self.deferring:
            raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a Ctrl-C back until the block is done (then raise it), so it never cuts a broker call in half."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        self.check()

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed (even if something swallowed it)."""
        if self.pressed:
            raise KeyboardInterrupt


def _interrupted(session: Any, started: list[Any]) -> int:
    """Ctrl-C: cancel the run (the history shows it CANCELLED), then stop the workers."""
    note = "workers stopped"
    for run in started:
        try:
            if run.cancel("interrupted (Ctrl-C)"):
                note = f"run {run.id} cancelled; workers stopped"
        except Exception as exc:  # a second Ctrl-C or a closed history: still stop the workers
            note = f"could not cancel run {run.id} ({type(exc).__name__}: {exc}); workers stopped"
    session.close(timeout=0.5)
    sys.stderr.write(f"\nfuseline-nb run: interrupted; {note}\n")
    return 130


def main(args: argparse.Namespace) -> int:
    """Run ``args.target``; returns 0 (SUCCEEDED), 1 (FAILED) or 2 (error or timeout)."""
    from ..session import Session

    out = sys.stdout
    if args.timeout is not None and not 0 < args.timeout < float("inf"):  # nan, inf, 0 and less: no timeout
        sys.stderr.write(f"fuseline-nb run: --timeout must be a number of seconds > 0, not {args.timeout}\n")
        return 2
    if args.workers < 1:  # with no worker process nothing would run the steps: the run would wait forever
        sys.stderr.write(f"fuseline-nb run: --workers must be >= 1 (the worker processes that run the steps), "
                         f"not {args.workers}\n")
        return 2
    try:
        wf = load_workflow(args.target)
        inputs = parse_inputs(args.input)
    except (ImportError, ValueError, TypeError) as exc:
        sys.stderr.write(f"fuseline-nb run: {exc}\n")
        return 2
    missing = wf.to_schema().missing_inputs(inputs)
    if missing:  # said here, in the command's words, before any worker starts
        needs = ", ".join(f"{name!r} (needed by {', '.join(map(repr, steps))})" for name, steps in missing.items())
        example = " ".join(f"--input {name}=VALUE" for name in missing)
        sys.stderr.write(f"fuseline-nb run: missing run input(s) {needs}: give each with --input, e.g. {example}\n")
        return 2
    unread = _unread_inputs(wf, inputs)
    if unread:
        sys.stderr.write(f"fuseline-nb run: warning: no step of {wf.workflow_id!r} reads the input(s) "
                         f"{', '.join(map(repr, unread))} (its steps read: {', '.join(_read_inputs(wf)) or 'none'}); "
                         f"check the name after --input\n")
    t0 = time.monotonic()
    ctrl_c = _CtrlC()
    try:
        before = signal.signal(signal.SIGINT, ctrl_c)
    except ValueError:  # not the main thread (called from code): Ctrl-C stays as it is
        before = None
    try:
        with Session(args.db, workers=args.workers, cache=getattr(args, "cache", False)) as session:
            started: list[Any] = []
            try:
                ctrl_c.check()
                return _drive(session, wf, inputs, args, out, t0, started, ctrl_c)
            except KeyboardInterrupt:
                return _interrupted(session, started)
    except KeyboardInterrupt:  # Ctrl-C while the session started: it stopped its workers on the way out
        sys.stderr.write("\nfuseline-nb run: interrupted while starting; nothing ran, workers stopped\n")
        return 130
    except FuselineError as exc:
        sys.stderr.write(f"fuseline-nb run: {type(exc).__name__}: {exc}\n")
        return 2
    finally:
        if before is not None:
            signal.signal(signal.SIGINT, before)


__all__ = [
    "Progress",
    "add_parser",
    "main",
    "parse_inputs",
]
