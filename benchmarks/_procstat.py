"""What the scheduler did to some processes and threads, from ``/proc`` (Linux; zeros elsewhere).

Used by ``bench_workers.py`` to say, next to each wall-clock figure, how much
CPU each side used, how often it slept, and where it ran: on a 2-core
machine a round trip between two processes costs very different times
when both sides share one core (each hand-off is a switch on that core) or
run on two (each side can wait for the other on its own core).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _per_thread(pids: Iterable[int], name: str, read: Callable[[Any], int]) -> int:
    """Sum ``read(f)`` over ``/proc/<pid>/task/<tid>/<name>`` of every thread of ``pids`` (0 where missing)."""
    total = 0
    for pid in pids:
        for task in _tasks(pid):
            try:
                with open(f"/proc/{pid}/task/{task}/{name}") as f:
                    total += read(f)
            except (OSError, ValueError, IndexError, StopIteration):
                pass
    return total


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds the processes ``pids`` used so far, all threads (0 where /proc is missing)."""
    return _per_thread(pids, "schedstat", lambda f: int(f.read().split()[0])) / 1e9


def sleeps(pids: Iterable[int]) -> int:
    """How often the processes ``pids`` went to sleep so far, all threads (voluntary context switches).

    A wait that a spin catches costs none; one that sleeps costs one here and
    a wake-up by the other side.
    """
    return _per_thread(pids, "status",
                       lambda f: next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt")))


def where(tid: int) -> tuple[int, int, float]:
    """(the CPU thread ``tid`` last ran on, its migrations so far, its CPU seconds so far); (-1, 0, 0) if gone.

    ``tid`` is a thread id (``threading.get_native_id()``) or a process id
    (its main thread).
    """
    try:
        with open(f"/proc/{tid}/stat") as f:
            cpu = int(f.read().rsplit(")", 1)[1].split()[36])
        with open(f"/proc/{tid}/schedstat") as f:
            used = int(f.read().split()[0]) / 1e9
        moves = 0
        with open(f"/proc/{tid}/sched") as f:
            for line in f:
                if line.startswith("se.nr_migrations"):
                    moves = int(line.split(":")[1])
                    break
    except (OSError, ValueError, IndexError):
        return -1, 0, 0.0
    return cpu, moves, used


class Placement:
    """Whether the busiest two of some threads shared one CPU over a stretch of time.

    ``start()`` before, ``stop()`` after: ``"one cpu"`` when the two threads
    that used the most CPU in between both ended on the same CPU and neither
    moved, ``"two cpus"`` when they ended on different ones and neither moved,
    ``"moved"`` otherwise (``"?"`` without ``/proc``).
    """

    def __init__(self, tids: Callable[[], list[int]]) -> None:
        self._tids = tids
        self._before: dict[int, tuple[int, int, float]] = {}

    def start(self) -> None:
        self._before = {t: where(t) for t in self._tids()}

    def stop(self) -> str:
        after = {t: where(t) for t in self._tids()}
        used = sorted(((after[t][2] - self._before.get(t, (0, 0, 0.0))[2], t) for t in after), reverse=True)
        busy = [t for _, t in used[:2]]
        if len(busy) < 2 or any(after[t][0] < 0 for t in busy):
            return "?"
        if any(after[t][1] != self._before.get(t, (0, after[t][1], 0.0))[1] for t in busy):
            return "moved"
        return "one cpu" if after[busy[0]][0] == after[busy[1]][0] else "two cpus"


def pin(pids: Iterable[int], cpus: set[int]) -> int:
    """Keep every thread of the processes ``pids`` on ``cpus``; returns how many threads were pinned.

    ``os.sched_setaffinity(pid, ...)`` moves only the thread whose id is
    ``pid``; this moves them all (as ``taskset -a`` does). Threads and
    processes started later inherit the mask of the thread that starts them.
    """
    done = 0
    for pid in pids:
        for task in _tasks(pid):
            try:
                os.sched_setaffinity(int(task), cpus)
                done += 1
            except OSError:  # the thread ended meanwhile
                pass
    return done
