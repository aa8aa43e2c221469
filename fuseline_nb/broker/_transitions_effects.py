"""The :class:`Effects` a transition fills: the storage writes and the events a change of the live state implies.

The transitions (:mod:`fuseline_nb.broker.transitions`, which re-exports
:class:`Effects`, :mod:`fuseline_nb.broker.leases`,
:mod:`fuseline_nb.broker.resume`) add to one; the broker
(:mod:`fuseline_nb.broker.core`) applies it: its ``ops`` in a few batch
storage calls, then its ``events``.
"""

from __future__ import annotations

from typing import Any

from ..workflow.events import Event, make_event
from ..workflow.status import Status
from .state import LiveRun


class Effects:
    """What transitions decided to write and publish, in order.

    ``writes`` holds ``(operation, args)`` pairs: a ``RuntimeStorage`` method
    name (``create_run``, ``enqueue``, ``save_step``, ``set_result``,
    ``finalize_run``) or a cache-store call (``cache_put``, ``cache_hit``,
    ``cache_mark``). ``events`` are recorded in the storage and published,
    after the writes.

    The broker applies ``ops``, the same writes kept compact, so that the
    storage gets them in a few batch calls:

    - :meth:`save` and :meth:`result` (a step's record, a step's result) go
      into a ``("steps", (run_id, results, records))`` entry shared with the
      neighbouring ones of the same run: one ``set_results`` and one
      ``save_steps`` call (a result is written before the records);
    - the steps :func:`~fuseline_nb.broker.transitions.enqueue` queues are one ``("queued", (run_id, steps,
      records, at))`` entry: an ``enqueue`` and a ``save_step`` per step (a
      fan-out's root queues a million steps: two write entries per step
      would be ~240 MB); ``at`` is the time when every one of them was
      queued fresh (one PENDING record stands for all), else ``None``.

    ``writes`` spells them out, one storage call per write.

    Examples
    --------
    >>> fx = Effects()
    >>> fx.write("enqueue", "r1", "a")
    >>> fx.writes
    [('enqueue', ('r1', 'a'))]
    >>> fx.ops.append(("queued", ("r1", ["b", "c"], "recs", None)))
    >>> fx.result("r1", "b", 2); fx.save("r1", "b", "info-b"); fx.save("r1", "c", "info-c")
    >>> [(op, args[1]) for op, args in fx.writes]
    [('enqueue', 'a'), ('enqueue', 'b'), ('save_step', 'b'), ('enqueue', 'c'), ('save_step', 'c'), \
('set_result', 'b'), ('save_step', 'b'), ('save_step', 'c')]
    >>> [op for op, _ in fx.ops]
    ['enqueue', 'queued', 'steps']

    ``Effects(raw=True)`` keeps each event as the arguments of
    :func:`~fuseline_nb.workflow.events.make_event` (the transitions add
    them so); :func:`made` makes them events.

    >>> from fuseline_nb.broker.state import Compiled, LiveRun
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> run = LiveRun("r1", Compiled(Workflow(outputs=[FunctionStep(abs, name="a")]).to_schema()), {}, 0.0)
    >>> lazy = Effects(raw=True); lazy.emit(run, 1.0, "run_dispatched", None, None, None, 0, None)
    >>> lazy.events[0][:3], made(lazy.events)[0].kind
    (('run_dispatched', 'r1', 1), 'run_dispatched')
    """

    __slots__ = ("_entry", "events", "ops", "raw")

    def __init__(self, events: list[Event] | None = None, raw: bool = False) -> None:
        self.ops: list[tuple[str, tuple[Any, ...]]] = []
        #: ``events`` given: the new events go after those (effects already written, not yet published)
        self.events: list[Event] = [] if events is None else events
        #: the events are kept as :func:`~fuseline_nb.workflow.events.make_event`'s arguments (a tuple each),
        #: made once the answer has left (a broker answering first: see ``broker/_applying.py``)
        self.raw = raw
        self._entry: tuple[str, tuple[str, list[tuple[str, Any]], list[tuple[str, Any]]]] | None = None

    @property
    def writes(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The storage calls in order, one per call (``ops`` with their compact entries spelled out)."""
        out: list[tuple[str, tuple[Any, ...]]] = []
        for op, args in self.ops:
            if op == "queued":
                run_id, steps, records = args[:3]
                for step in steps:
                    out.append(("enqueue", (run_id, step)))
                    out.append(("save_step", (run_id, step, records)))
            elif op == "steps":
                run_id, results, saves = args
                out.extend(("set_result", (run_id, step, value)) for step, value in results)
                out.extend(("save_step", (run_id, step, info)) for step, info in saves)
            else:
                out.append((op, args))
        return out

    def write(self, op: str, *args: Any) -> None:
        """Add a storage call."""
        self.ops.append((op, args))

    def save(self, run_id: str, step: str, info: Any) -> None:
        """Add a ``save_step`` (into the run's current ``steps`` entry)."""
        e = self._entry
        if e is None or self.ops[-1] is not e or e[1][0] != run_id:
            e = self._entry = ("steps", (run_id, [], []))
            self.ops.append(e)
        e[1][2].append((step, info))

    def result(self, run_id: str, step: str, value: Any) -> None:
        """Add a ``set_result`` (into the run's current ``steps`` entry)."""
        e = self._entry
        if e is None or self.ops[-1] is not e or e[1][0] != run_id:
            e = self._entry = ("steps", (run_id, [], []))
            self.ops.append(e)
        e[1][1].append((step, value))

    def emit(self, run: LiveRun, at: float, kind: Any, step: str | None, state: Status | None,
             worker: str | None, attempt: int, detail: dict[str, Any] | None) -> None:
        """Add the run's next event (numbers it: ``run.seq`` advances)."""
        run.seq = seq = run.seq + 1
        args = (kind, run.run_id, seq, at, step, state, worker, attempt, detail)
        self.events.append(args if self.raw else make_event(*args))  # type: ignore[arg-type]

    def written(self) -> None:
        """Its ``ops`` were carried out: later ones start a new list (its events stay, not published yet).

        Examples
        --------
        >>> fx = Effects(); fx.save("r1", "a", "info"); fx.written(); fx.save("r1", "b", "info")
        >>> [args[2] for _, args in fx.ops]
        [[('b', 'info')]]
        """
        self.ops = []
        self._entry = None

    def cut(self, ops: int, events: int) -> None:
        """Drop what was added after ``len(ops)`` was ``ops`` and ``len(events)`` was ``events`` (a refused change)."""
        del self.ops[ops:]
        del self.events[events:]
        self._entry = None


def made(events: list[Any]) -> list[Event]:
    """``events`` (of an ``Effects(raw=True)``) made :class:`Event` s, in place; the list is returned."""
    for i, e in enumerate(events):
        if e.__class__ is tuple:
            events[i] = make_event(*e)
    return events


__all__ = ["Effects", "made"]
