"""What Value.of asks of a result by walking it: which pickler writes it, and whether it has a JSON text.

Both walks are loops that judge a scalar item without a call (a result's value is made once per step, in
its worker); ``tests/test_value_walks.py`` checks them against their plain recursive definitions.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from ._previews import _SCALARS

_MAX_JSON_INT: Final = 2**53
_MAX_DEPTH: Final = 64
_json_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain_json(v: Any, depth: int = 0) -> bool:
    t = type(v)
    if t is str:  # a lone surrogate (an undecodable file name) is not JSON text: it travels pickled
        return v.isascii() or _utf8(v)
    if v is None or t is bool:
        return True
    if t is int:
        return -_MAX_JSON_INT <= v <= _MAX_JSON_INT
    if t is float:
        return math.isfinite(v)
    if depth >= _MAX_DEPTH:
        return False
    # (loops, not all() over a generator; an ASCII str or a small int item is judged here, without a call)
    if t is list:
        for x in v:
            tx = type(x)
            if not ((tx is str and x.isascii()) or (tx is int and -_MAX_JSON_INT <= x <= _MAX_JSON_INT)
                    or _plain_json(x, depth + 1)):
                return False
        return True
    if t is dict:
        for k, x in v.items():
            if type(k) is not str:
                return False
            tx = type(x)
            if not ((tx is str and x.isascii()) or (tx is int and -_MAX_JSON_INT <= x <= _MAX_JSON_INT)
                    or _plain_json(x, depth + 1)):
                return False
        return True
    return False


def _scalar_json(obj: Any) -> str | None:
    """The JSON text of a plain scalar that round-trips exactly (same text as ``json.dumps``), else ``None``
    (complex, bytes, a big int, a float that is not finite, a str with a lone surrogate)."""
    if obj is None:
        return "null"
    t = type(obj)
    if t is bool:
        return "true" if obj else "false"
    if t is int:
        return int.__repr__(obj) if -_MAX_JSON_INT <= obj <= _MAX_JSON_INT else None
    if t is float:
        return float.__repr__(obj) if math.isfinite(obj) else None
    if t is str and (obj.isascii() or _utf8(obj)):
        return _json_str(obj)  # type: ignore[no-any-return]
    return None


_BUILTIN_CONTAINERS: Final = frozenset({dict, list, tuple, set, frozenset})


def _builtin_only(obj: Any, depth: int = 0) -> bool:
    """Whether ``obj`` is builtin scalars in builtin containers (stdlib pickle writes the same bytes)."""
    t = type(obj)
    if t in _SCALARS:
        return True
    if t not in _BUILTIN_CONTAINERS or depth > 8 or len(obj) > 256:
        return False
    # (loops, not all() over a generator; a scalar item is judged here, without a call)
    if t is dict:
        for k, v in obj.items():
            if not ((type(k) in _SCALARS or _builtin_only(k, depth + 1))
                    and (type(v) in _SCALARS or _builtin_only(v, depth + 1))):
                return False
        return True
    for x in obj:
        if type(x) not in _SCALARS and not _builtin_only(x, depth + 1):
            return False
    return True
