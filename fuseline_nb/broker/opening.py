"""One way to open a broker from a path: memory, or a DuckDB history file.

:func:`open_broker` is what :class:`~fuseline_nb.session.Session`,
``fuseline-nb run`` and ``fuseline-nb broker`` use. A path it cannot use
is refused before DuckDB is asked, with a message naming the path and what
to do.

Examples
--------
>>> type(open_broker(None)).__name__
'MemoryBroker'
>>> open_broker(".")
Traceback (most recent call last):
fuseline_nb.errors.StorageError: the run history '.' is a folder: pass a file in it, e.g. './history.duckdb'
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StorageError
from .base import Broker
from .core import MemoryBroker


def open_broker(path: str | os.PathLike[str] | None = None, *, lease_seconds: float = 60.0,
                worker_ttl: float | None = None, cache: bool = False) -> Broker:
    """A :class:`MemoryBroker` (``path`` None) or a :class:`~fuseline_nb.broker.DuckDBBroker` on ``path``.

    ``":memory:"`` is a DuckDB database in memory (SQL over the history,
    nothing written). A file that does not exist is created; an existing one
    is resumed (its unfinished runs go on).

    Raises
    ------
    StorageError
        ``path`` is a folder, its folder does not exist, or it is not a
        DuckDB file; :class:`~fuseline_nb.errors.StorageLockedError` when
        another process holds it.

    Examples
    --------
    >>> open_broker(None, lease_seconds=5).lease_seconds
    5.0
    >>> open_broker("/no/such/folder/h.duckdb")
    Traceback (most recent call last):
    fuseline_nb.errors.StorageError: cannot create the run history '/no/such/folder/h.duckdb': the folder '/no/such/folder' does not exist (create it first, or pass another path)
    """
    if path is None:
        return MemoryBroker(lease_seconds=lease_seconds, worker_ttl=worker_ttl, cache=cache)
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"a run history path must be a str or a path, not {type(path).__name__} {path!r}")
    if text != ":memory:":
        p = Path(text)
        if p.is_dir():
            raise StorageError(f"the run history {text!r} is a folder: pass a file in it, e.g. "
                               f"{os.path.join(text, 'history.duckdb')!r}")
        folder = p.parent
        if not p.exists() and not folder.is_dir():
            raise StorageError(f"cannot create the run history {text!r}: the folder {str(folder)!r} does not "
                               "exist (create it first, or pass another path)")
    from .duckdb_broker import DuckDBBroker  # imports duckdb: only when history goes to a file

    return DuckDBBroker(text, lease_seconds=lease_seconds, worker_ttl=worker_ttl, cache=cache)


__all__ = ["open_broker"]
