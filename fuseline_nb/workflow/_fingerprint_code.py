"""Where a step's code comes from, and a digest of its code objects (for :mod:`.fingerprint`).

A code object's digest covers its bytecode, constants and names, not line
numbers or its docstring, and is cached per code object. A module is the
user's when it is ``__main__`` or lives outside the standard library and
site-packages; a library counts by its distribution's version.

Examples
--------
>>> def f(x):
...     return x + 1
>>> len(code_digest(f.__code__)), "x" in global_names(f.__code__)
(32, False)
>>> is_user("__main__"), is_user("json"), library("json").startswith("python==")
(True, False, True)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import sys
import sysconfig
import types
from typing import Any

# -- code objects (cached: the same code object always gives the same text) -----------------
_CODE: dict[int, tuple[types.CodeType, str, tuple[str, ...]]] = {}


def _code_entry(code: types.CodeType) -> tuple[types.CodeType, str, tuple[str, ...]]:
    entry = _CODE.get(id(code))
    if entry is None or entry[0] is not code:
        names: dict[str, None] = {}
        h = hashlib.blake2b(digest_size=16)
        _feed_code(code, h, names, top=True)
        entry = _CODE[id(code)] = (code, h.hexdigest(), tuple(names))
    return entry


def code_digest(code: types.CodeType) -> str:
    return _code_entry(code)[1]


def global_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name the code (and its nested code) looks up: globals and attributes."""
    return _code_entry(code)[2]


def _feed_code(code: types.CodeType, h: Any, names: dict[str, None], top: bool) -> None:
    h.update(code.co_code)
    h.update(repr((code.co_argcount, code.co_kwonlyargcount, code.co_posonlyargcount, code.co_flags,
                   code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)).encode())
    names.update(dict.fromkeys(code.co_names))
    consts = code.co_consts
    for i, const in enumerate(consts):
        if isinstance(const, types.CodeType):
            h.update(b"code:")
            _feed_code(const, h, names, top=False)
        elif i == 0 and top and (const is None or isinstance(const, str)) and code.co_name != "<lambda>":
            # CPython puts a function's docstring first among its constants (a
            # function without one has None there): documentation, not behaviour
            h.update(b"doc")
        else:
            h.update(f"{type(const).__name__}:{const!r}".encode("utf-8", "surrogatepass"))


# -- where code comes from ---------------------------------------------------------------------
@functools.cache
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return tuple(sorted(os.path.realpath(r) + os.sep for r in roots))


@functools.cache
def is_user(module_name: str | None) -> bool:
    """Whether a module is the user's (``__main__``, a notebook, their own files)."""
    if not module_name or module_name == "__main__":
        return True
    top = module_name.partition(".")[0]
    if top in ("fuseline_nb", "builtins") or top in sys.stdlib_module_names:
        return False
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path is None:
        return module is None or not hasattr(module, "__path__")  # an unknown: hash it, to be safe
    return not os.path.realpath(path).startswith(_library_roots())


@functools.cache
def library(module_name: str) -> str:
    """``package==version`` of an installed module (``python==3.x.y`` for the standard library)."""
    top = module_name.partition(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return "python==" + ".".join(map(str, sys.version_info[:3]))
    for dist in _distributions().get(top, [top]):
        try:
            return f"{dist}=={importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    version = getattr(sys.modules.get(top), "__version__", None)
    return f"{top}=={version}" if isinstance(version, str) else top


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


__all__: list[str] = ["code_digest", "global_names", "is_user", "library"]
