"""The user's own modules on disk, against what a process has loaded of them: reloaded, or said stale.

A workflow travels to the workers by value for what the notebook defines,
but a step that calls ``helpers.f`` of the user's own module ``helpers.py``
takes ``helpers`` by reference: a worker imports it once and keeps it. When
the user edits ``helpers.py`` and reloads it in the notebook
(``importlib.reload(helpers)``, ``%autoreload``), the step's fingerprint
changes and the workflow is shipped again — yet a worker that had imported
``helpers`` before ran its old code, and the cache stored that result under
the new code's key.

- In a pool's worker process (:data:`ACTIVE`), :func:`refresh` is called before
  workflows are loaded and before the first step of each run: a user module
  (not an installed library, not the standard library) whose file changed
  since this process saw it is reloaded, the modules seen last first (a
  module's imports before it). A module whose new file cannot be run keeps
  its old code (the notebook's reload failed too); the log says why. In any
  other process (the notebook's own, a Dask worker thread in it) it does
  nothing: only the user reloads the notebook's modules.
- In the notebook, :func:`unreloaded` (called by ``Session.submit``) names
  the user modules whose file changed since the notebook saw them while the
  notebook did not reload them: the workers would load the file as it is now
  and the notebook runs what it imported, so the submit warns, saying to
  reload them.

Both look for new modules only when ``sys.modules`` changed (its size or its
last module), then
``stat`` each user module's file: a few µs for a few modules.

Examples
--------
>>> refresh(), unreloaded()  # nothing of the user's changed in this process
([], ([], False))
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from types import ModuleType
from typing import Any

from ..workflow._fingerprint_code import is_user
from ..workflow.stale import StaleDefinitionWarning

log = logging.getLogger(__name__)

#: Whether this process is a pool's worker process (set by its entry point): only there does :func:`refresh` reload.
ACTIVE = False


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # gone (the module stays as it is)
        return None
    return st.st_mtime_ns, st.st_size


class _Files:
    """The user modules a process has, each with its file's stamp and ``__spec__`` when last (re)loaded."""

    def __init__(self) -> None:
        #: module name -> [module, its file, the file's (mtime ns, size), its __spec__] when seen or reloaded
        #: (and the file's stamp when it was last said to be stale)
        self.entries: dict[str, list[Any]] = {}
        self.others: set[str] = set()  # names of modules that are not user module files
        #: how many modules ``sys.modules`` had at the last look for new ones, and the last one imported
        self.modules: tuple[int, str | None] = (-1, None)

    def look(self) -> dict[str, list[Any]]:
        """The user modules, new ones noted with their file as it is now."""
        modules = sys.modules
        now = (len(modules), next(reversed(modules), None))  # (a module imported is the last one in it)
        if now != self.modules:
            entries, others = self.entries, self.others
            for name in [n for n, e in entries.items() if modules.get(n) is not e[0]]:  # gone (or replaced)
                del entries[name]
            for name, module in list(modules.items()):
                if name in entries or name in others:
                    continue
                path = getattr(module, "__file__", None)
                if (not isinstance(path, str) or not path.endswith(".py") or name in ("__main__", "__mp_main__")
                        or not is_user(name)):
                    others.add(name)
                    continue
                entries[name] = [module, path, _stamp(path), getattr(module, "__spec__", None)]
            self.modules = now
        return self.entries


_FILES = _Files()


def refresh() -> list[str]:
    """In a pool's worker process: reload the user modules whose file changed since this process saw them.

    Returns the names of the modules reloaded (see the module docstring).

    Examples
    --------
    >>> import json
    >>> "json" in refresh() or "json" in _FILES.entries
    False
    """
    if not ACTIVE:
        return []
    stale: list[tuple[str, list[Any], tuple[int, int]]] = []
    for name, entry in _FILES.look().items():
        now = _stamp(entry[1])
        if now is not None and now != entry[2]:
            stale.append((name, entry, now))
    reloaded: list[str] = []
    for name, entry, now in reversed(stale):  # seen last first: what a module imports is fresh before it
        entry[2] = now
        module: ModuleType = entry[0]
        if sys.modules.get(name) is not module:
            continue
        try:
            importlib.reload(module)
        except Exception as exc:
            log.warning("module %s changed on disk but cannot be reloaded (%s: %s): its old code stays",
                        name, type(exc).__name__, exc)
            continue
        entry[3] = getattr(module, "__spec__", None)
        reloaded.append(name)
    if reloaded:
        log.info("reloaded modules changed on disk: %s", ", ".join(reloaded))
    return reloaded


def unreloaded() -> tuple[list[tuple[str, str]], bool]:
    """In the notebook: ``(module, file)`` of each user module whose file changed since this process
    saw it while the module was not reloaded (``importlib.reload`` gives a module a new ``__spec__``),
    and whether one of them changed since the last call said so (a warning is due).

    Examples
    --------
    >>> unreloaded()
    ([], False)
    """
    out: list[tuple[str, str]] = []
    due = False
    for name, entry in _FILES.look().items():
        module = entry[0]
        spec = getattr(module, "__spec__", None)
        now = _stamp(entry[1])
        if spec is not entry[3]:  # reloaded: what it runs is its file as it was then
            entry[2], entry[3] = now, spec
        elif now is not None and now != entry[2] and sys.modules.get(name) is module:
            out.append((name, entry[1]))
            if len(entry) == 4 or entry[4] != now:  # (said once per change of the file)
                entry[4:] = [now]
                due = True
    return out, due


def unreloaded_message(stale: list[tuple[str, str]]) -> str:
    """The warning ``Session.submit`` gives for :func:`unreloaded` modules.

    Examples
    --------
    >>> unreloaded_message([("helpers", "/home/me/helpers.py")])[:68]
    "module 'helpers' (/home/me/helpers.py) changed on disk since this no"
    """
    names = ", ".join(f"{name!r} ({path})" for name, path in stale)
    calls = "; ".join(f"importlib.reload({name})" for name, _ in stale)
    return (f"module{'s' if len(stale) > 1 else ''} {names} changed on disk since this notebook imported "
            f"{'them' if len(stale) > 1 else 'it'} and {'were' if len(stale) > 1 else 'was'} not reloaded: "
            "worker processes load the file as it is now, while this notebook (wf.run, the code "
            f"fingerprints and the cache keys) has the code it imported; runs submitted meanwhile do not use "
            f"the cache. Run {calls} (or %autoreload 2) and submit again")


def check_modules(cache: bool | None, stacklevel: int = 2) -> bool | None:
    """What ``Session.submit`` does about :func:`unreloaded` modules: warn (once per change of a file,
    :class:`~fuseline_nb.workflow.stale.StaleDefinitionWarning`) and answer ``False`` (the run neither
    reads nor stores cached results) while one is not reloaded, else ``cache`` as it was.

    Examples
    --------
    >>> check_modules(None), check_modules(True)
    (None, True)
    """
    stale, due = unreloaded()
    if not stale:
        return cache
    if due:
        warnings.warn(unreloaded_message(stale), StaleDefinitionWarning, stacklevel=stacklevel + 1)
    return False


__all__ = ["check_modules", "refresh", "unreloaded", "unreloaded_message"]
