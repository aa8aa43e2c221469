"""The pool's shipped workflow bytes: let go once every process has them, read back for a new one.

A pool keeps each workflow's pickled bytes (oldest first) for the processes
it starts later (a replacement after a crash or a timeout). A 1→1,000,000→1
fan-out ships ~40 MB. When the broker's history keeps the same bytes (a
DuckDB file does: ``store_definition``, checked by reading them back once,
when stored), the pool need not: once every live process has them,
:func:`let_go` drops them, and :func:`read_back` reads
them from the history again before a new process is served (or pickles the
workflow again if the history has lost them). A history that keeps nothing
(in memory) keeps the pool's bytes where they are.

Examples
--------
>>> kept = {("w", "1"): b"v2"}
>>> stored = lambda workflow_id, version: kept.get((workflow_id, version))   # the broker's stored_definition
>>> blobs = [(("w", "1"), b"v1"), (("w", "1"), b"v2")]
>>> let_go(blobs, {("w", "1"): True})
>>> blobs                                  # the older one and the one the history has: both let go
[(('w', '1'), None), (('w', '1'), None)]
>>> read_back(blobs, stored, lambda key: b"pickled again")
>>> blobs                                  # a new process needs only the last of each workflow
[(('w', '1'), None), (('w', '1'), b'v2')]
>>> let_go(blobs, {})                      # not known to be in the history: kept
>>> blobs[-1]
(('w', '1'), b'v2')
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

log = logging.getLogger(__name__)

Key = tuple[str, str]


def let_go(blobs: list[Any], in_history: dict[Key, bool]) -> None:
    """Drop the bytes in ``blobs`` (``(key, bytes)``, oldest first) every process already has.

    The last entry of a workflow goes only when ``in_history`` says the
    history has those bytes (checked when they were stored); older entries of
    the same workflow go anyway (a new process is sent only the last one).
    """
    last = {key: i for i, (key, _) in enumerate(blobs)}
    for i, (key, blob) in enumerate(blobs):
        if blob is not None and (last[key] != i or in_history.get(key, False)):
            blobs[i] = (key, None)


def pruned_by(key: Key, in_history: dict[Key, bool]) -> list[Key]:
    """The other versions of ``key``'s workflow the history was keeping: storing ``key`` may have
    deleted them (a history keeps the latest definition of each workflow id, and those its
    unfinished runs need).

    Examples
    --------
    >>> pruned_by(("w", "2"), {("w", "1"): True, ("w", "2"): True, ("v", "1"): True, ("w", "0"): False})
    [('w', '1')]
    """
    return [k for k, kept in in_history.items() if kept and k[0] == key[0] and k != key]


def serve(blobs: list[Any], shipped: list[int], stored: Callable[..., bytes | None],
          pickle_again: Callable[[Key], bytes], in_history: dict[Key, bool], pruned: Collection[Key],
          by_key: dict[Key, bytes | None]) -> None:
    """Ready ``blobs`` for the live processes, given how many of them each has (``shipped``).

    A new process (0 shipped) is sent the last bytes of each workflow: they
    are read back (:func:`read_back`). When every process has them all, the
    bytes the history keeps are let go (:func:`let_go`), in ``by_key`` too.

    Examples
    --------
    >>> blobs, by_key = [(("w", "1"), b"v1")], {("w", "1"): b"v1"}
    >>> serve(blobs, [1, 1], lambda w, v: b"v1", lambda key: b"again", {("w", "1"): True}, (), by_key)
    >>> blobs, by_key
    ([(('w', '1'), None)], {('w', '1'): None})
    >>> serve(blobs, [0, 1], lambda w, v: b"v1", lambda key: b"again", {("w", "1"): True}, (), by_key)
    >>> blobs
    [(('w', '1'), b'v1')]
    """
    if 0 in shipped:
        read_back(blobs, stored, pickle_again, pruned)
    elif shipped and min(shipped) >= len(blobs) and any(b is not None for _, b in blobs):
        let_go(blobs, in_history)
        for key, blob in list(by_key.items()):
            if blob is not None and in_history.get(key):
                by_key[key] = None


def keep(store: Callable[[str, str, bytes], Any], stored: Callable[..., bytes | None], key: Key, blob: bytes,
         in_history: dict[Key, bool], pruned: set[Key]) -> None:
    """Store ``blob`` in the history (``store(workflow_id, version, blob)``) and note whether it kept it.

    The bytes are read back once (``stored``): only bytes the history really
    keeps are let go later (:func:`let_go`). Storing ``key`` may prune older
    versions of its workflow id (:func:`pruned_by`): they are no longer kept,
    and ``pruned`` says so. A history that cannot keep them costs the resume of
    the workflow's unfinished runs, not the run: a warning, nothing raised.

    Examples
    --------
    >>> kept, in_history, pruned = {}, {("w", "1"): True}, set()
    >>> keep(lambda w, v, b: kept.__setitem__((w, v), b), lambda w, v: kept.get((w, v)),
    ...      ("w", "2"), b"v2", in_history, pruned)
    >>> in_history, pruned
    ({('w', '1'): False, ('w', '2'): True}, {('w', '1')})
    """
    try:
        store(key[0], key[1], blob)
        in_history[key] = stored(key[0], key[1]) == blob
        pruned.discard(key)
        for other in pruned_by(key, in_history):  # the history keeps the latest of a workflow id
            in_history[other] = False
            pruned.add(other)
    except Exception as exc:
        log.warning("could not keep workflow %r version %r in the history (%s: %s): its unfinished "
                    "runs will resume only when it is submitted again", key[0], key[1],
                    type(exc).__name__, exc)


def read_back(blobs: list[Any], stored: Callable[..., bytes | None], pickle_again: Callable[[Key], bytes],
              pruned: Collection[Key] = ()) -> None:
    """Give the last entry of each workflow in ``blobs`` its bytes again (for a new process).

    Read from the history; if it has lost them, the workflow is pickled again
    (``pickle_again(key)``), with a warning (unless ``pruned`` says the history
    let them go, as it does an older version of a workflow id).
    """
    last = {key: i for i, (key, _) in enumerate(blobs)}
    for key, i in last.items():
        if blobs[i][1] is not None:
            continue
        try:
            blob = stored(*key)
        except Exception:
            log.debug("reading workflow %r back from the history failed", key, exc_info=True)
            blob = None
        if blob is None:
            (log.debug if key in pruned else log.warning)("workflow %r version %r is no longer in the history: pickled again for a new "
                        "worker process", key[0], key[1])
            blob = pickle_again(key)
        blobs[i] = (key, blob)


__all__ = ["keep", "let_go", "pruned_by", "read_back", "serve"]
