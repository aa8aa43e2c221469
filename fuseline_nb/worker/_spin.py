"""The spin of :mod:`fuseline_nb.worker.latency` (its measure 3): when, and how, a side waiting for a
quick reply looks for it without sleeping.

Examples
--------
>>> Spin(0.0).wanted()  # FUSELINE_NB_SPIN_US=0: never
False
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

_T = TypeVar("_T")

log = logging.getLogger(__name__)

#: Environment variable: microseconds a pool waits for a reply without sleeping (0: never).
SPIN_ENV: Final = "FUSELINE_NB_SPIN_US"
#: ...its default.
SPIN_DEFAULT_US: Final = 100.0
#: After failed spins, a waiting side skips up to this many waits before it spins again.
MAX_SKIP: Final = 64
#: A spin off its CPU this long at a stretch (seconds) has given its CPU away: it stops, and does not
#: count as caught. (Alone on its CPU a look and a yield take 0.5-2 us; the other side on the same CPU
#: takes 30 us or more to answer; another process's turn, a time slice: milliseconds.)
AWAY_SECONDS: Final = 20e-6
_give_way: Callable[[], Any] = getattr(os, "sched_yield", time.perf_counter)  # (no sched_yield: a no-op)


def spin_until(look: Callable[[], _T], seconds: float, spin: Spin | None = None) -> _T:
    """Call ``look()`` until it returns something true or ``seconds`` have passed; its last answer.

    Every few looks the CPU goes to whatever else is ready to run on it
    (``os.sched_yield``): maybe the side whose answer this spin waits for.
    A spin that comes back to its CPU after :data:`AWAY_SECONDS` or more
    away (given, or taken by the scheduler) and finds no answer stops
    there: whoever had the CPU was not answering it (another process, or
    the other side still at work), and each further yield would hand that
    process the CPU again (a time slice each, under load). With ``spin``,
    the longest stretch between two looks is noted in ``spin.away`` for
    :meth:`Spin.took`.

    Examples
    --------
    >>> spin_until(lambda: [], 0.0001)
    []
    >>> spin_until(lambda: ["ready"], 10.0)
    ['ready']
    """
    clock = time.perf_counter
    then = clock()
    until = then + seconds
    give_way = _give_way
    looks = 0
    away = 0.0
    away_limit = AWAY_SECONDS
    while True:
        seen = look()
        now = clock()
        gap = now - then
        if gap > away:
            away = gap
        if seen or now >= until or gap >= away_limit:  # the last: back from away, and no answer
            break
        if not looks & 3:  # every 4th look (~2 us): a side alone on its CPU looks ~twice as often
            give_way()
        looks += 1
        then = now
    if spin is not None:
        spin.away = away
    return seen


def spin_seconds() -> float:
    """How long the kernel and pool workers look for a quick reply before they sleep.

    Set ``FUSELINE_NB_SPIN_US=0`` to turn spinning off (read when a pool
    starts its workers).

    Examples
    --------
    >>> import os
    >>> os.environ.get(SPIN_ENV) is not None or spin_seconds() == SPIN_DEFAULT_US / 1e6
    True
    """
    raw = os.environ.get(SPIN_ENV, "")
    try:
        micros = float(raw) if raw.strip() else SPIN_DEFAULT_US
    except ValueError:
        log.warning("ignoring %s=%r (not a number of microseconds)", SPIN_ENV, raw)
        micros = SPIN_DEFAULT_US
    return max(0.0, micros) / 1e6


class Spin:
    """When the side waiting for a reply should spin, and for how long (one per waiting side).

    :meth:`wanted` says whether to spin for the next reply; :meth:`took` is
    told how each spin went. A spin that missed its reply doubles the number
    of waits skipped before the next try (up to :data:`MAX_SKIP`); one that
    caught it resets it. A reply that came only after the spin was off its
    CPU for :data:`AWAY_SECONDS` or more at a stretch (``away``, noted by
    :func:`spin_until`) counts as missed: the spin gave its CPU away (to the
    other side on the same CPU, or to another process) and sleeping would
    have done as well, without holding a CPU that others wait for.
    ``seconds=0`` never spins.

    Examples
    --------
    >>> spin = Spin(0.0001)
    >>> spin.wanted()
    True
    >>> spin.took(0.5)  # the reply came after the spin gave up: skip the next wait
    >>> [spin.wanted() for _ in range(2)]
    [False, True]
    >>> spin.took(0.5)  # missed again: skip two
    >>> [spin.wanted() for _ in range(3)]
    [False, False, True]
    >>> spin.took(0.00002)  # caught it: spin at every wait again
    >>> spin.wanted(), spin.skipped
    (True, 3)
    >>> spin.away = 0.00006  # the reply came after 60 us off the CPU: not caught
    >>> spin.took(0.00008)
    >>> spin.wanted(), spin.caught, spin.gave_way
    (False, 1, 1)
    """

    __slots__ = ("_backoff", "_skip", "away", "caught", "gave_way", "seconds", "skipped")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._backoff = 0  # waits skipped after the last failed spin (doubled per failure)
        self._skip = 0  # waits still to skip
        self.away = 0.0  # the current spin's longest time off its CPU (set by spin_until)
        self.skipped = 0  # waits skipped so far (for benchmarks and tests)
        self.caught = 0  # spins that caught their reply
        self.gave_way = 0  # spins whose reply came in time, but only after the spin was away from its CPU

    def wanted(self) -> bool:
        """Whether to spin for the next reply (each call that says no counts one skipped wait)."""
        if not self.seconds:
            return False
        if self._skip:
            self._skip -= 1
            self.skipped += 1
            return False
        return True

    def took(self, seconds: float) -> None:
        """A spin ended; its reply came ``seconds`` after the spin began (call it only after a spin)."""
        away, self.away = self.away, 0.0
        if seconds < self.seconds:
            if away < AWAY_SECONDS:
                self.caught += 1
                self._backoff = 0
                return
            self.gave_way += 1
        self._skip = self._backoff = min(max(1, 2 * self._backoff), MAX_SKIP)


__all__ = ["AWAY_SECONDS", "MAX_SKIP", "SPIN_DEFAULT_US", "SPIN_ENV", "Spin", "spin_seconds", "spin_until"]
