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
>>> refresh()  # not a pool's worker process: nothing is reloaded here
[]
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import types
import warnings
import weakref
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from ..workflow._fingerprint_code import is_user
from ..workflow._fingerprint_walk import _Walker
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


def unreloaded(names: Iterable[str] | None = None) -> list[tuple[str, str, tuple[int, int]]]:
    """In the notebook: ``(module, file, the file's stamp)`` of each user module (of ``names``, when
    given) whose file changed since this process saw it while the module was not reloaded
    (``importlib.reload`` gives a module a new ``__spec__``).

    Examples
    --------
    >>> all(name in sys.modules for name, _, _ in unreloaded())
    True
    """
    out: list[tuple[str, str, tuple[int, int]]] = []
    files = _FILES.look()
    for name, entry in files.items() if names is None else [(n, files[n]) for n in names if n in files]:
        module: ModuleType = entry[0]
        spec = getattr(module, "__spec__", None)
        now = _stamp(entry[1])
        if spec is not entry[3]:  # reloaded: what it runs is its file as it was then
            entry[2], entry[3] = now, spec
        elif now is not None and now != entry[2] and sys.modules.get(name) is module:
            if _autoreloaded(name, module):  # IPython's %autoreload patched it in place (same __spec__)
                entry[2] = now
            else:
                out.append((name, entry[1], now))
    return out


def _autoreloaded(name: str, module: ModuleType) -> bool:
    """Whether IPython's ``%autoreload`` (on in this kernel) has the module's file as it is now: it
    reloads before each cell, often by patching the module's functions in place (``deduperreload``),
    which leaves its ``__spec__`` as it was. Read from the extension's own record (its reload
    times); ``False`` outside IPython or without the extension."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
        magics = shell.magics_manager.registry.get("AutoreloadMagics") if shell is not None else None
        reloader = getattr(magics, "_reloader", None)
        if reloader is None or not reloader.enabled:
            return False
        path, mtime = reloader.filename_and_mtime(module)
        return bool(path is not None and reloader.modules_mtimes.get(name) == mtime
                    and reloader.failed.get(path) != mtime)
    except Exception:  # another IPython than the one this reads: the __spec__ rule alone
        return False


class _ModuleWalk(_Walker):
    """The fingerprint's walk (:class:`~fuseline_nb.workflow._fingerprint_walk._Walker`), noting the
    module of every function and class it counts and every user module it reads from."""

    def __init__(self) -> None:
        super().__init__([])
        self.modules: set[str] = set()

    def function(self, fn: types.FunctionType) -> None:
        self.modules.add(fn.__module__)
        super().function(fn)

    def cls(self, cls: type, own: bool = False) -> None:
        self.modules.add(cls.__module__)
        super().cls(cls, own)

    def user_module(self, module: ModuleType, code: types.CodeType) -> None:
        self.modules.add(module.__name__)
        super().user_module(module, code)


def modules_of(steps: Iterable[Any]) -> set[str]:
    """The modules whose code the fingerprints of ``steps`` count (their functions, classes, the user
    modules they read from).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> def f(x):
    ...     return x
    >>> sorted(modules_of([FunctionStep(f)]))
    ['fuseline_nb.worker._freshmods']
    """
    walk = _ModuleWalk()
    seen: set[tuple[type, int]] = set()
    for step in steps:
        kind = (type(step), id(step.__dict__.get("function")))
        if kind not in seen:
            seen.add(kind)
            walk.step(step)
    return walk.modules


_told: set[tuple[str, tuple[int, int]]] = set()  # (module, its file's stamp) warned about


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


def check_modules(wf: Any, cache: bool | None, stacklevel: int = 2) -> bool | None:
    """What ``Session.submit`` does about :func:`unreloaded` modules whose code the workflow ``wf``'s
    steps count: warn (once per change of a file,
    :class:`~fuseline_nb.workflow.stale.StaleDefinitionWarning`) and answer ``False`` (the run neither
    reads nor stores cached results); else ``cache`` as it was. A module none of the steps reaches
    (another one being edited) changes nothing.

    Cheap when nothing changed: the modules a workflow reaches are found once per schema it makes
    (:func:`modules_of`), and only their files are looked at (a ``stat`` each).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> wf = Workflow(outputs=[FunctionStep(abs, name="a")])
    >>> check_modules(wf, None), check_modules(wf, True)
    (None, True)
    """
    if not _FILES.look():  # no module of the user's has a file here (a notebook's own code only)
        return cache
    schema = wf.to_schema()
    known = _REACHED.get(wf)
    if known is None or known[0] is not schema:
        known = _REACHED[wf] = (schema, frozenset(modules_of(wf.steps.values())))
    stale = unreloaded(known[1])
    if not stale:
        return cache
    if any((name, stamp) not in _told for name, _, stamp in stale):
        _told.update((name, stamp) for name, _, stamp in stale)
        warnings.warn(unreloaded_message([(name, path) for name, path, _ in stale]), StaleDefinitionWarning,
                      stacklevel=stacklevel + 1)
    return False


#: workflow -> (the schema it had, the modules its steps reach): found again when it makes another schema
_REACHED: weakref.WeakKeyDictionary[Any, tuple[Any, frozenset[str]]] = weakref.WeakKeyDictionary()


__all__ = ["check_modules", "modules_of", "refresh", "unreloaded", "unreloaded_message"]
