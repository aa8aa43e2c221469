"""Bounds on what fuseline_nb accepts and stores, and text that is always writable.

One place for the limits every edge shares — the HTTP service (422 naming
the field), the DuckDB history writer (rows written in a safe form) and the
worker's reports — so one odd value never stops a history, a service or a
worker fleet:

* :data:`MAX_DEPTH`: how deeply JSON values, policy configurations and
  inputs may nest (deeper ones hit Python's recursion limit somewhere);
* :data:`TIME_MIN` / :data:`TIME_MAX`: the wall-clock range of timestamps
  (seconds since the epoch; DuckDB's ``TIMESTAMP`` cannot show ``-1e18``);
* :func:`safe_text`: a ``str`` that encodes as UTF-8 (lone surrogates, as
  ``os.listdir`` returns for undecodable file names, become ``\\udcff``);
* :func:`safe_repr` / :func:`safe_str`: a repr / str that never raises;
* :class:`Bound` and the aliases built on it (:data:`Name`, :data:`Label`,
  :data:`Time`, ...): the field bounds of the messages, written in the
  messages' own dataclasses (``step_name: Name``). They are plain
  ``Annotated`` metadata for Python; pydantic (the HTTP edge validates the
  dataclasses with ``TypeAdapter`` s) reads them as field constraints.

Examples
--------
>>> safe_text("bad \\udcff name")
'bad \\\\udcff name'
>>> depth_error({"a": [[1]]}, "inputs", limit=2)
'inputs.a[0]: nested deeper than 2 levels'
>>> time_error(-1e18, "report.started_at")
'report.started_at: -1e+18 is not a time between 0 and 32503680000 (seconds since 1970)'
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final

#: How many levels of lists/objects a value may nest at an edge.
MAX_DEPTH: Final = 64
#: Earliest accepted timestamp (seconds since the epoch).
TIME_MIN: Final = 0.0
#: Latest accepted timestamp: the year 3000.
TIME_MAX: Final = 32_503_680_000.0
#: Longest text kept for an error message or traceback (characters).
MAX_TEXT: Final = 1_000_000


class Bound:
    """Bounds of a message field, as ``Annotated`` metadata: pydantic checks them at the HTTP edge.

    Takes the keywords of ``pydantic.Field`` (``max_length``, ``ge``,
    ``allow_inf_nan``...). Nothing is imported or checked in Python code
    that builds messages; only a ``TypeAdapter`` over a message reads them
    (pydantic is the service extra's, so this module does not import it).

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> from pydantic import TypeAdapter
    >>> @dataclass
    ... class Ping:
    ...     who: Name
    >>> TypeAdapter(Ping).validate_python({"who": "w1"})
    Ping(who='w1')
    >>> from pydantic import ValidationError
    >>> try:
    ...     TypeAdapter(Ping).validate_python({"who": ""})
    ... except ValidationError as exc:
    ...     print(exc.errors()[0]["msg"])
    String should have at least 1 character
    """

    __slots__ = ("constraints",)

    def __init__(self, **constraints: Any) -> None:
        self.constraints = constraints

    def __repr__(self) -> str:
        return f"Bound({', '.join(f'{k}={v!r}' for k, v in self.constraints.items())})"

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic import Field

        return handler(Annotated[source, Field(**self.constraints)])


#: A name: a step, workflow, run or worker id (1 to 512 characters).
Name = Annotated[str, Bound(min_length=1, max_length=512)]
#: A label that may be empty (a display name, a workflow id in a report): at most 512 characters.
Label = Annotated[str, Bound(max_length=512)]
#: A short identifier (a fingerprint, a version): at most 128 characters.
Short = Annotated[str, Bound(max_length=128)]
#: A wall-clock time in seconds since the epoch: finite (the range is checked by :func:`time_error`).
Time = Annotated[float, Bound(allow_inf_nan=False)]


def safe_text(text: Any) -> str | None:
    """``text`` as a ``str`` that encodes as UTF-8; ``None`` stays ``None``.

    Lone surrogates are escaped (``\\udcff``); a non-``str`` becomes its
    :func:`safe_repr`.

    Examples
    --------
    >>> safe_text("café"), safe_text(None), safe_text(3)
    ('café', None, '3')
    """
    if text is None:
        return None
    if not isinstance(text, str):
        return safe_repr(text)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def safe_repr(value: Any) -> str:
    """``repr(value)`` that never raises: a failing ``__repr__`` is named instead.

    Examples
    --------
    >>> class Odd:
    ...     def __repr__(self):
    ...         raise RuntimeError("no")
    >>> safe_repr(Odd())
    '<Odd object: repr failed with RuntimeError>'
    """
    try:
        text = repr(value)
        if not isinstance(text, str):
            raise TypeError("__repr__ returned a non-string")
    except Exception as exc:
        return f"<{type(value).__name__} object: repr failed with {type(exc).__name__}>"
    return safe_text(text) or ""


def safe_str(exc: BaseException) -> str:
    """``str(exc)`` that never raises (a failing ``__str__`` is named instead).

    Examples
    --------
    >>> class Odd(Exception):
    ...     def __str__(self):
    ...         raise RuntimeError("__str__ exploded")
    >>> safe_str(ValueError("bad")), safe_str(Odd())
    ('bad', '<str() of the Odd failed with RuntimeError: __str__ exploded>')
    """
    try:
        text = str(exc)
        if not isinstance(text, str):
            raise TypeError("__str__ returned a non-string")
    except Exception as inner:
        try:
            why = f"{type(inner).__name__}: {inner}"
        except Exception:
            why = type(inner).__name__
        return safe_text(f"<str() of the {type(exc).__name__} failed with {why}>") or ""
    return safe_text(text) or ""


def depth_error(value: Any, where: str, limit: int = MAX_DEPTH) -> str | None:
    """The path of the first place ``value`` nests deeper than ``limit``, else ``None``.

    Walks lists, tuples and dicts without recursion (a deep value cannot
    blow the stack here).

    Examples
    --------
    >>> depth_error([1, {"k": 2}], "x") is None
    True
    """
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, dict):
            children: Any = ((f"{path}.{k}", c) for k, c in v.items())
        elif isinstance(v, (list, tuple)):
            children = ((f"{path}[{i}]", c) for i, c in enumerate(v))
        else:
            continue
        if depth >= limit:
            if len(path) > 120:  # the field, then where it got too deep
                path = f"{path[:80]}…{path[-30:]}"
            return f"{path}: nested deeper than {limit} levels"
        stack.extend((c, p, depth + 1) for p, c in children)
    return None


def time_error(t: Any, where: str) -> str | None:
    """Why ``t`` is not an accepted timestamp, or ``None`` (``None`` itself is fine).

    Examples
    --------
    >>> time_error(1_700_000_000.0, "at") is None, time_error(None, "at") is None
    (True, True)
    """
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) \
            or not TIME_MIN <= t <= TIME_MAX:
        return (f"{where}: {t!r} is not a time between {TIME_MIN:.0f} and {TIME_MAX:.0f} "
                "(seconds since 1970)")
    return None


__all__ = ["MAX_DEPTH", "MAX_TEXT", "TIME_MAX", "TIME_MIN", "Bound", "Label", "Name", "Short", "Time", "depth_error", "safe_repr", "safe_str",
           "safe_text", "time_error"]
