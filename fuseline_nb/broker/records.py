"""The step records of one live run, compact: arrays keyed by step index, a ``StepInfo`` only while in use.

A run of a million steps cannot afford a :class:`~fuseline_nb.workflow.runinfo.StepInfo`
(an object and its dict, ~265 bytes, two objects the garbage collector walks)
per step for as long as it runs. :class:`StepRecords` keeps each field in an
array indexed by the step's position in the plan (``Compiled.index``):
the state, attempts, three times, the worker (an index into the run's
labels), the action (an index into its actions), the result (one list
slot), and the rare fields (error, traceback, skip reason, cache source,
recovered) in a dict of the few steps that have them — about 45 bytes a
step and nothing per step for the collector.

A transition asks :meth:`StepRecords.open` for a step's ``StepInfo`` (made
from the arrays, or the one already open), changes it and hands it to the
storage; the broker :meth:`~StepRecords.close` s the open records after
applying the transition (their fields go back into the arrays), except those
of running steps, which stay open until their outcome. So a step's record
is a ``StepInfo`` only while a transition or a worker has it in hand.

Examples
--------
>>> from fuseline_nb.workflow.status import Status
>>> recs = StepRecords(["a", "b"], {"a": 0, "b": 1})
>>> info = recs.open("a"); info.state, info.queued_at = Status.RUNNING, 2.0
>>> recs.close(), "a" in recs, "b" in recs
(None, True, False)
>>> recs["a"].state, recs["a"].queued_at, recs["a"].started_at, len(recs)
(<Status.RUNNING: 'RUNNING'>, 2.0, None, 1)
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..workflow.runinfo import StepInfo
from ..workflow.status import Status

_STATES: tuple[Status, ...] = tuple(Status)
_CODE: dict[Status, int] = {s: i for i, s in enumerate(_STATES)}
#: a state's code in :attr:`StepRecords.state` (a step's state without a ``StepInfo``: see ``state_of``)
STATE_CODES: dict[Status, int] = _CODE
_SUCCEEDED_CODE = _CODE[Status.SUCCEEDED]
_RUNNING = Status.RUNNING
_SUCCEEDED = Status.SUCCEEDED
_NAN = math.nan
#: a PENDING record's fields: a new record's __dict__ is a copy (quicker than setting fourteen fields)
_PENDING_FIELDS: dict[str, Any] = dict(StepInfo().__dict__)
_new = object.__new__
_RARE = ("error", "traceback", "skip_reason", "cached", "cached_from", "recovered")
_NO_RARE = (None, None, None, False, None, False)


class StepRecords(Mapping[str, StepInfo]):
    """The records of one run's steps (see the module docstring); reads as ``{step: StepInfo}``.

    Only steps with a record (queued, decided or cancelled at least once)
    are in the mapping; reading one gives a ``StepInfo`` (the open one, or a
    snapshot made from the arrays).
    """

    __slots__ = ("_actions", "_at", "_attempts", "_dirty", "_has", "_label_code", "_labels", "_times", "_touched", "action",
                 "index", "names", "opened", "rare", "result", "state", "worker")

    def __init__(self, names: list[str], index: dict[str, int], dirty: list[StepRecords] | None = None) -> None:
        n = len(names)
        self.names = names
        self.index = index
        self._has = bytearray(n)
        self.state = bytearray(n)  # code into _STATES (0: PENDING)
        self._attempts = array("I", bytes(4 * n))
        self._times = array("d", [_NAN]) * (3 * n)  # queued, started, finished (NaN: None)
        self.worker = array("H", bytes(2 * n))  # index into _labels (0: None)
        self._labels: list[str | None] = [None]
        self._label_code: dict[str | None, int] = {None: 0}
        self.action = array("H", bytes(2 * n))  # index into _actions (0: None)
        self._actions: list[str | None] = [None]
        self.result: list[Any] = [None] * n
        self.rare: dict[int, tuple[Any, ...]] = {}
        #: step -> its StepInfo while a transition or a worker has it in hand
        self.opened: dict[str, StepInfo] = {}
        self._at: dict[str, int] = {}  # an open step -> its index (a small table: close() needs no big lookup)
        self._touched: list[str] = []  # opened since the last close
        self._dirty = dirty  # the broker's list of records to close after a transition

    def set_result(self, step: str, value: Any) -> None:
        """Replace the result the step's record holds (a resumed run's result made a ``Value``)."""
        info = self.opened.get(step)
        if info is not None:
            info.__dict__["result"] = value
        else:
            self.result[self.index[step]] = value

    def put(self, step: str, info: StepInfo) -> None:
        """Take ``info`` as the step's record (a stored run being resumed)."""
        self.opened.pop(step, None)
        self._at.pop(step, None)
        self._store(self.index[step], info)

    def queue(self, step: str, now: float) -> None:
        """The step is queued at ``now`` (its record made PENDING if it has none): no ``StepInfo`` made."""
        info = self.opened.get(step)
        if info is not None:
            info.queued_at = now
            return
        i = self.index[step]
        self._has[i] = 1
        self._times[3 * i] = now

    def queue_all(self, steps: list[str], now: float) -> bool:
        """:meth:`queue` each of ``steps``; whether each was fresh (no record before: PENDING, queued at ``now``)."""
        opened, index, has, times = self.opened, self.index, self._has, self._times
        fresh = True
        for step in steps:
            if opened:
                info = opened.get(step)
                if info is not None:
                    info.queued_at = now
                    fresh = False
                    continue
            i = index[step]
            if has[i]:
                fresh = False
            else:
                has[i] = 1
            times[3 * i] = now
        return fresh

    def pending(self, now: float) -> StepInfo:
        """A new PENDING record queued at ``now``: what a fresh step queued then reads as.

        Examples
        --------
        >>> StepRecords([], {}).pending(3.0).queued_at
        3.0
        """
        info = _fresh()
        info.queued_at = now
        return info

    def record(self, step: str) -> StepInfo:
        """The step's record for the storage to save: the open ``StepInfo``, or one made from the arrays."""
        info = self.opened.get(step)
        if info is not None:
            return info
        i = self.index[step]
        return self._made(i) if self._has[i] else _fresh()

    def copy(self, step: str) -> StepInfo:
        """A ``StepInfo`` of the step the caller may keep: a copy of the open one, or made from the arrays."""
        info = self.opened.get(step)
        if info is not None:
            made = object.__new__(StepInfo)
            made.__dict__.update(info.__dict__)
            return made
        i = self.index[step]
        return self._made(i) if self._has[i] else _fresh()

    # -- the mapping (reads) ----------------------------------------------------------
    def __getitem__(self, step: str) -> StepInfo:
        info = self.opened.get(step)
        if info is not None:
            return info
        i = self.index[step]
        if not self._has[i]:
            raise KeyError(step)
        return self._made(i)

    def __contains__(self, step: object) -> bool:
        if step in self.opened:
            return True
        i = self.index.get(step)  # type: ignore[call-overload]
        return i is not None and bool(self._has[i])

    def __iter__(self) -> Iterator[str]:
        names, has, opened = self.names, self._has, self.opened
        return (names[i] for i in range(len(names)) if has[i] or names[i] in opened)

    def __len__(self) -> int:
        opened = self.opened
        return self._has.count(1) + sum(1 for s in opened if not self._has[self.index[s]])

    # -- open and close ---------------------------------------------------------------
    def open(self, step: str) -> StepInfo:
        """The step's record as a ``StepInfo`` to change (PENDING when it has none yet); stays open until closed."""
        info = self.opened.get(step)
        if info is None:
            i = self.index[step]
            info = self._made(i) if self._has[i] else _fresh()
            self.opened[step] = info
            self._at[step] = i
        touched = self._touched
        if not touched and self._dirty is not None:
            self._dirty.append(self)
        touched.append(step)
        return info

    def start(self, step: str, worker: str | None, now: float) -> StepInfo:
        """:meth:`open` the step's record as a new attempt: RUNNING on ``worker`` since ``now``, attempts + 1.

        Examples
        --------
        >>> recs = StepRecords(["a"], {"a": 0})
        >>> info = recs.start("a", "w1", 5.0)
        >>> info.state, info.attempts, info.worker, info.started_at
        (<Status.RUNNING: 'RUNNING'>, 1, 'w1', 5.0)
        """
        # open()'s lookup written out again, not called: start runs once per step handed out (a call
        # there is ~0.1 µs of the chain's critical path); keep the two in step when changing either
        info = self.opened.get(step)
        if info is None:
            i = self.index[step]
            if not self._has[i]:
                info = _fresh()
            elif self._attempts[i] or self.state[i] or self.result[i] is not None or i in self.rare:
                info = self._made(i)
            else:  # queued, never run (a step's usual first hand-out): PENDING with its queued_at only
                info = _new(StepInfo)
                info.__dict__ = d = _PENDING_FIELDS.copy()
                q = self._times[3 * i]
                if q == q:
                    d["queued_at"] = q
            self.opened[step] = info
            self._at[step] = i
        d = info.__dict__
        d["attempts"] += 1
        d["state"] = _RUNNING
        d["worker"] = worker
        d["started_at"] = now
        d["finished_at"] = None
        touched = self._touched
        if not touched and self._dirty is not None:
            self._dirty.append(self)
        touched.append(step)
        return info

    def close(self) -> None:
        """Write the records opened since the last close back into the arrays; RUNNING ones stay open."""
        opened, at, store, touched = self.opened, self._at, self._store, self._touched
        for step in touched:
            info = opened.get(step)
            if info is not None and info.state is not _RUNNING:
                store(at.pop(step), info)
                del opened[step]
        if not opened and len(touched) > 256:
            self.opened = {}  # a dict keeps its size once grown (a fan-out opens all its steps at once)
            self._at = {}
        touched.clear()

    def state_of(self, step: str) -> Status:
        """The step's state (PENDING without a record): no ``StepInfo`` made."""
        info = self.opened.get(step)
        return info.state if info is not None else _STATES[self.state[self.index[step]]]

    def _made(self, i: int) -> StepInfo:
        info = _new(StepInfo)
        info.__dict__ = d = _PENDING_FIELDS.copy()
        state = self.state[i]
        if state:
            d["state"] = _STATES[state]
        d["attempts"] = self._attempts[i]
        worker = self.worker[i]
        if worker:
            d["worker"] = self._labels[worker]
        d["result"] = self.result[i]
        action = self.action[i]
        if action:
            d["action"] = self._actions[action]
        t = self._times
        j = 3 * i
        q, s, f = t[j], t[j + 1], t[j + 2]
        if q == q:  # not NaN
            d["queued_at"] = q
        if s == s:
            d["started_at"] = s
        if f == f:
            d["finished_at"] = f
        rare = self.rare.get(i)
        if rare is not None:
            d.update(zip(_RARE, rare, strict=True))
        return info

    def _store(self, i: int, info: StepInfo) -> None:
        d = info.__dict__
        self._has[i] = 1
        self.state[i] = _CODE[d["state"]]
        self._attempts[i] = d["attempts"]
        label = d["worker"]
        code = self._label_code.get(label)
        if code is None:
            code = self._label_code[label] = len(self._labels)
            self._labels.append(label)
        self.worker[i] = code
        self.result[i] = d.get("result")
        action = d["action"]
        if action is None:
            self.action[i] = 0
        else:
            actions = self._actions
            try:
                self.action[i] = actions.index(action)
            except ValueError:
                self.action[i] = len(actions)
                actions.append(action)
        t = self._times
        q, s, f = d["queued_at"], d["started_at"], d["finished_at"]
        t[3 * i] = _NAN if q is None else q
        t[3 * i + 1] = _NAN if s is None else s
        t[3 * i + 2] = _NAN if f is None else f
        rare = (d["error"], d["traceback"], d["skip_reason"], d["cached"], d["cached_from"], d["recovered"])
        if rare != _NO_RARE:
            self.rare[i] = rare
        elif i in self.rare:
            del self.rare[i]


class Results(Mapping[str, Any]):
    """A run's results read from its step records: ``{step: result}`` of the steps that SUCCEEDED.

    The records hold each result once (their ``result`` slot, or the open
    ``StepInfo``): the run keeps no name-keyed table of its results beside them.

    Examples
    --------
    >>> recs = StepRecords(["a", "b"], {"a": 0, "b": 1})
    >>> info = recs.open("a"); info.state, info.result = Status.SUCCEEDED, 7
    >>> res = Results(recs)
    >>> "a" in res, "b" in res, res["a"], res.of(["a", "b"])
    (True, False, 7, {'a': 7})
    >>> recs.close(); dict(res)
    {'a': 7}
    """

    __slots__ = ("_recs",)

    def __init__(self, records: StepRecords) -> None:
        self._recs = records

    def __contains__(self, step: object) -> bool:
        r = self._recs
        info = r.opened.get(step)  # type: ignore[call-overload]
        if info is not None:
            return info.state is _SUCCEEDED
        i = r.index.get(step)  # type: ignore[call-overload]
        return i is not None and r.state[i] == _SUCCEEDED_CODE

    def __getitem__(self, step: str) -> Any:
        r = self._recs
        info = r.opened.get(step)
        if info is not None:
            if info.state is _SUCCEEDED:
                return info.__dict__.get("result")
        else:
            i = r.index.get(step)
            if i is not None and r.state[i] == _SUCCEEDED_CODE:
                return r.result[i]
        raise KeyError(step)

    def of(self, steps: Iterable[str]) -> dict[str, Any]:
        """``{step: result}`` for those of ``steps`` that SUCCEEDED (one call for a step's sources)."""
        r = self._recs
        opened, index, codes, results = r.opened, r.index, r.state, r.result
        out: dict[str, Any] = {}
        for step in steps:
            info = opened.get(step) if opened else None
            if info is not None:
                if info.state is _SUCCEEDED:
                    out[step] = info.__dict__.get("result")
                continue
            i = index.get(step)
            if i is not None and codes[i] == _SUCCEEDED_CODE:
                out[step] = results[i]
        return out

    def __iter__(self) -> Iterator[str]:
        return (step for step in self._recs if step in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _fresh() -> StepInfo:
    info = _new(StepInfo)
    info.__dict__ = _PENDING_FIELDS.copy()
    return info


__all__ = ["STATE_CODES", "Results", "StepRecords"]
