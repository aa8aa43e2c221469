"""Refuse to start worker processes from a script's unguarded top level.

A ``spawn`` (or ``forkserver``) worker re-imports the script that started it.
Code at the script's top level that starts workers would run again in every
worker, and multiprocessing kills each of them with a long traceback. Said
once, in the parent, before any worker starts, naming the line to guard.

Examples
--------
>>> check_main_guard("spawn")  # a doctest is not a script: nothing to say
"""

from __future__ import annotations

import ast
import os
import sys
from types import FrameType


def check_main_guard(context: str | None, what: str = "Session(...)") -> None:
    """Raise ``RuntimeError`` when worker processes would be started by a script's unguarded top level."""
    if context is None:
        import multiprocessing

        context = multiprocessing.get_start_method()
    if context == "fork":
        return
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path or not os.path.isfile(path):
        return  # a notebook, `python -c`, an interactive prompt: nothing is re-imported
    frame = _top_level_frame(main.__dict__)
    if frame is None:
        return
    line = frame.f_lineno
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    if _guarded(tree, line):
        return
    raise RuntimeError(
        f"{what} starts worker processes, and {os.path.basename(path)} does so at its top level "
        f"(line {line}): each worker re-imports {path} and would start workers again. "
        "Put the code that starts the session under a main guard:\n\n"
        'if __name__ == "__main__":\n'
        "    session = fl.Session(...)\n"
        "    ...\n"
    )


def _top_level_frame(main_globals: dict[str, object]) -> FrameType | None:
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        if frame.f_globals is main_globals and frame.f_code.co_name == "<module>":
            return frame
        frame = frame.f_back
    return None


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and consts)


def _guarded(tree: ast.Module, line: int) -> bool:
    """Whether ``line`` lies inside an ``if __name__ == "__main__":`` body (at any depth)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test):
            first = node.body[0].lineno
            last = max(getattr(n, "end_lineno", first) or first for n in node.body)
            if first <= line <= last:
                return True
    return False


__all__ = [
    "check_main_guard",
]
