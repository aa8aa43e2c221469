"""Running a coroutine to completion from synchronous code.

A model-level helper: a step's own call (``FunctionStep`` of an ``async def``,
an ``AsyncStep`` driven synchronously) needs it, whichever engine runs the step.

Examples
--------
>>> async def two():
...     return 2
>>> run_coro(two())
2
"""

from __future__ import annotations

import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

R = TypeVar("R")


def run_coro(coro: Coroutine[Any, Any, R]) -> R:
    """Run ``coro`` to completion from synchronous code and return its result.

    Uses ``asyncio.run``; when this thread already runs an event loop (a
    Jupyter cell), runs it on a new loop in a helper thread instead.

    Examples
    --------
    >>> async def two():
    ...     return 2
    >>> run_coro(two())
    2
    >>> import asyncio
    >>> async def nested():  # called from inside a running loop
    ...     return run_coro(two())
    >>> asyncio.run(nested())
    2
    """
    import asyncio  # only when a coroutine runs: `import fuseline_nb` stays free of asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread below
            box["error"] = exc

    t = threading.Thread(target=target, name="fuseline-run-coro", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


__all__ = [
    "run_coro",
]
