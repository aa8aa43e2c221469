"""A Session and its history file: one open Session per file in a process, and the runs it resumes.

Running the notebook cell that creates ``Session("runs.duckdb")`` again
closes the earlier Session on that file (:class:`SessionReplacedWarning`)
and the new one takes the file over; at start a Session ships the stored
definitions of the runs the file left unfinished, so they resume at once.

Examples
--------
>>> file_key(None), file_key(":memory:")
(None, None)
"""

from __future__ import annotations

import logging
import os
import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import PicklingError

if TYPE_CHECKING:
    from .broker.base import Broker
    from .session import Session

log = logging.getLogger("fuseline_nb.session")


class SessionReplacedWarning(UserWarning):
    """A new :class:`Session` on a history file closed this process's earlier Session on that file.

    This is what running the notebook cell that creates a Session again does:
    the earlier session's workers stop, and the runs it left unfinished resume
    in the new one (their definitions are stored in the file).

    Examples
    --------
    >>> issubclass(SessionReplacedWarning, UserWarning)
    True
    """


# The open session of each history file in this process (by real path): re-running the notebook
# cell that creates a Session on the same file takes the file over from the earlier one.
_HOLDERS: dict[str, weakref.ReferenceType[Session]] = {}


def file_key(path: str | None) -> str | None:
    """The key of a history file among this process's sessions (its real path); ``None`` for none."""
    return None if path is None or path == ":memory:" else os.path.realpath(path)


def take_over(key: str | None) -> None:
    """Close the earlier, still open Session of this process on the same history file, saying so."""
    earlier = _HOLDERS.pop(key, None) if key is not None else None
    session = earlier() if earlier is not None else None
    if session is None or session.closed:
        return
    warnings.warn(
        f"closed the earlier Session on {session.path!r} in this process (a notebook cell creating it was "
        "run again); runs it left unfinished resume here. Call session.close() first to stop them instead.",
        SessionReplacedWarning, stacklevel=3)
    session.close(timeout=1.0)


def hold(key: str | None, session: Session) -> None:
    """Record ``session`` as the open Session on the file ``key``."""
    if key is not None:
        _HOLDERS[key] = weakref.ref(session)


def let_go(key: str | None, session: Session) -> None:
    """Forget ``session`` as the open Session on the file ``key`` (if it still is)."""
    if key is not None and (ref := _HOLDERS.get(key)) is not None and ref() is session:
        del _HOLDERS[key]


def ship_stored(broker: Broker, pool: Any, path: str | None) -> None:
    """Ship the stored definitions of the runs the history left unfinished, so they resume now.

    A definition that is missing or cannot be loaded here is named with
    its runs in a warning; those runs resume at the next ``submit`` of
    their workflow. With no pool that takes definitions (``workers=0``)
    nothing here can run them: one warning names them and says how to
    resume them.
    """
    unfinished = broker.unfinished_runs()
    if not unfinished:
        return
    add_blob = getattr(pool, "add_blob", None)
    if add_blob is None:
        shown = ", ".join(f"{run_id} ({wf!r})" for run_id, wf, _ in unfinished[:10])
        more = f" and {len(unfinished) - 10} more" if len(unfinished) > 10 else ""
        log.warning("%d unfinished runs in %s wait for workers, and this session has none (workers=0): "
                    "%s%s; open the file with fl.Session(%r, workers=2) (or dask=...) to resume them, "
                    "or connect workers to session.broker", len(unfinished), path, shown, more, path)
        return
    why: dict[tuple[str, str], str | None] = {}
    for run_id, workflow_id, version in unfinished:
        key = (workflow_id, version)
        if key not in why:
            why[key] = _ship_one(broker, add_blob, key)
        if why[key] is not None:
            log.warning("run %s of workflow %r version %r cannot resume yet: %s; it resumes when "
                        "the workflow is submitted again (session.submit)", run_id, workflow_id,
                        version, why[key])
    log.info("%d unfinished runs in %s: resumed where their definitions could be loaded", len(unfinished), path)


def _ship_one(broker: Broker, add_blob: Callable[[tuple[str, str], bytes], Any],
              key: tuple[str, str]) -> str | None:
    """Ship one stored definition; ``None`` when it went, else why it could not."""
    blob = broker.stored_definition(*key)
    if blob is None:
        return "the history file holds no definition of it (it was not run from a Session's workers)"
    try:
        add_blob(key, blob)
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc, PicklingError) and exc.__cause__ is not None else exc
        return f"its stored definition cannot be loaded ({type(cause).__name__}: {cause})"
    return None
