"""The DuckDB history's Arrow side: the batch tables' schemas, one column made writable, event details as JSON.

Every column of a flush goes through :func:`array`: text that Arrow refuses
(a lone surrogate, not a string) is made writable, times outside the range
DuckDB stores are stored as NULL (the earliest time for an event's) with a
warning, and in the safe form numbers are clamped. It never raises for a value.

Examples
--------
>>> array("batch_events", SCHEMAS["batch_events"].field("at"), [1.5, None], False).to_pylist()
[1.5, None]
>>> details_json([Event("step_finished", "r", 2, 0.0, detail={"x": [1, None]})])
['{"x": [1, null]}']
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ...limits import TIME_MAX, TIME_MIN, safe_repr, safe_text
from ...workflow.events import Event
from ...workflow.status import Status
from ._duckdb_rows import to_json

log = logging.getLogger(__name__)

ENCODER = json.JSONEncoder(default=safe_repr)

#: A flusher thread's Python work between two :func:`give_way` pauses, at most (seconds).
GIVE_WAY_EVERY = 0.0005
_PAUSE = 0.00005
_flusher = threading.local()  # .last: when this thread (a flusher) last gave way; unset on other threads


def flusher_thread() -> None:
    """Mark the calling thread as a flusher: :func:`give_way` pauses it (see there)."""
    _flusher.last = time.perf_counter()
    _flusher.small = True


def small_flush(small: bool) -> None:
    """Say whether the flush now being built is small (one part): only a small one pauses (see :func:`give_way`)."""
    _flusher.small = small


def give_way() -> None:
    """On a flusher thread, every :data:`GIVE_WAY_EVERY` of work: sleep 50 µs, so a thread waiting for the GIL runs.

    Building a flush's Arrow tables is Python work that holds the GIL for
    milliseconds; a broker thread that wants it meanwhile (a worker's report
    to answer) would otherwise wait for the interpreter's switch interval
    (5 ms) each time. Elsewhere (a read flushing on the caller's thread) a
    no-op, and in a big flush (written in parts: the flusher is behind, and
    pausing would let the buffer grow further) too.

    Examples
    --------
    >>> give_way()  # not a flusher thread: returns at once
    """
    last = getattr(_flusher, "last", None)
    if last is not None and _flusher.small and time.perf_counter() - last >= GIVE_WAY_EVERY:
        _pause()
        _flusher.last = time.perf_counter()


def _pause() -> None:
    time.sleep(_PAUSE)  # (not sleep(0): the GIL would mostly come straight back to this thread)


def _c_encoder() -> Callable[[Any, int], Any] | None:
    """A fresh C-made JSON encoder with ``ENCODER``'s settings (None on a Python without ``_json``).

    ``JSONEncoder.encode`` builds this object on every call (~3 µs, most of
    the cost of a small detail); a flush builds one and encodes every detail
    with it. Not shared between flushes: its circular-reference marks are
    per encoder, and two files' flushers may run at once.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    e = ENCODER
    return make({}, e.default, json.encoder.encode_basestring_ascii, None, e.key_separator,  # type: ignore[no-any-return]
                e.item_separator, e.sort_keys, e.skipkeys, e.allow_nan)


def details_json(events: list[Event]) -> list[str | None]:
    """Each event's detail as JSON text (None without one), as ``ENCODER.encode`` writes it.

    Most steps finish with the same detail (``{"action": "default", "error": null, ...}``):
    a flat detail of text, ``None``, ``bool`` and ``int`` values under text keys is
    encoded once per flush and its text reused. The key holds every value's type
    too (``True == 1``, not in JSON); floats are encoded each time (``0.0 == -0.0``).

    Examples
    --------
    >>> details_json([Event("step_queued", "r", 1, 0.0), Event("step_finished", "r", 2, 0.0, detail={"x": [1, None]})])
    [None, '{"x": [1, null]}']
    >>> details_json([Event("step_finished", "r", i, 0.0, detail={"x": v}) for i, v in enumerate((1, True, 1))])
    ['{"x": 1}', '{"x": true}', '{"x": 1}']
    """
    encode = _c_encoder()
    if encode is None:
        return [None if e.detail is None else _json(e.detail) for e in events]
    out: list[str | None] = []
    add, join = out.append, "".join
    memo: dict[tuple[Any, ...], str] = {}
    plain, text = _MEMO_VALUES.issuperset, _MEMO_KEYS.issuperset
    for i, e in enumerate(events):
        detail = e.detail
        if detail is None:
            add(None)
            continue
        if not i & 255:
            give_way()
        values = detail.values()
        types = (*map(type, values),)
        key = (*detail, *values, *types) if plain(types) and text(map(type, detail)) else None
        if key is not None:
            made = memo.get(key)
            if made is not None:
                add(made)
                continue
        try:
            made = join(encode(detail, 0))
        except Exception:  # the slow path says what it can; a new encoder: this one may keep marks
            made = _json(detail)
            encode = _c_encoder() or encode
        if key is not None and len(memo) < _MEMO_MAX:
            memo[key] = made
        add(made)
    return out


# A detail whose text is reused: values whose equal ones of the same type write the same JSON
# (not float: 0.0 == -0.0; not containers: (True,) == (1,)), under keys that are text.
_MEMO_VALUES = frozenset({str, type(None), bool, int})
_MEMO_KEYS = frozenset({str})
_MEMO_MAX = 1024  # distinct details remembered per flush


def _json(detail: dict[str, Any]) -> str:
    try:
        return ENCODER.encode(detail)
    except Exception:  # never let one odd detail block every later flush
        return to_json(detail)


_S, _F, _I, _B = pa.string(), pa.float64(), pa.int32(), pa.binary()
SCHEMAS = {
    "batch_runs": pa.schema([("run_id", _S), ("workflow_id", _S), ("version", _S), ("state", _S),
                             ("inputs_json", _S), ("inputs_pickle", _B), ("created_at", _F),
                             ("finished_at", _F)]),
    "batch_steps": pa.schema([("run_id", _S), ("step", _S), ("state", _S), ("skip_reason", _S),
                              ("action", _S), ("attempts", _I), ("worker", _S), ("queued_at", _F),
                              ("started_at", _F), ("finished_at", _F), ("recovered", pa.bool_()), ("error", _S), ("traceback", _S),
                              ("error_type", _S), ("error_message", _S), ("result_preview", _S),
                              ("result_pickle", _B), ("result_bytes", pa.int64()),
                              ("result_fingerprint", _S), ("result_type", _S), ("result_rich", _S), ("result_file", _S)]),
    "batch_results": pa.schema([("run_id", _S), ("step", _S), ("result_preview", _S),
                                ("result_pickle", _B), ("result_bytes", pa.int64()),
                                ("result_fingerprint", _S), ("result_type", _S), ("result_rich", _S), ("result_file", _S)]),
    "batch_events": pa.schema([("run_id", _S), ("seq", _I), ("at", _F), ("step", _S), ("kind", _S),
                               ("state", _S), ("worker", _S), ("attempt", _I), ("detail_json", _S)]),
    "batch_finals": pa.schema([("run_id", _S), ("state", _S), ("finished_at", _F)]),
}

SCHEMAS["batch_new_steps"] = SCHEMAS["batch_steps"]  # the steps of runs created in the same batch
WITH_ROWID = SCHEMAS["batch_steps"].append(pa.field("rid", pa.int64()))  # see _duckdb_places


def table(name: str, columns: list[Any], safe: bool = False) -> pa.Table:
    schema = SCHEMAS[name]
    arrays = []
    for c, f in zip(columns, schema, strict=True):
        arrays.append(array(name, f, c, safe))
        give_way()
    return pa.Table.from_arrays(arrays, schema=schema)


def _times_inside(column: Any, arr: pa.Array) -> bool:
    """Whether every time is NULL or within TIME_MIN..TIME_MAX (False: Arrow checks row by row).

    A pass in Python for a few rows (an Arrow compute call costs ~5 µs), three Arrow
    calls for many (a Python pass costs ~0.15 µs a row).
    """
    if len(column) < 200:
        try:
            return all(v is None or TIME_MIN <= v <= TIME_MAX for v in column)
        except Exception:  # a number Arrow took but Python cannot compare: Arrow decides
            return False
    if arr.null_count == len(arr):
        return True
    bounds = pc.min_max(arr)  # NaN is skipped unless all are NaN
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    inside: bool = TIME_MIN <= low and high <= TIME_MAX  # all NaN: False
    return inside and not pc.any(pc.is_nan(arr)).as_py()


_INT32 = (-(2**31), 2**31 - 1)


#: A column this long whose values are all one (``==``) plain value is made from that value once
#: (``pa.repeat``, ~2 ns a row) instead of converting every row (~25-70 ns a row): many columns of a
#: flush's step rows and events are (one run id, no error, the queued time of a fan-out ...).
CONSTANT_FROM = 64
_PLAIN = frozenset({str, int, float, bool, bytes, Status})


def array(table: str, field: pa.Field, column: Any, safe: bool) -> pa.Array:
    """One column as Arrow: text made writable, times kept in range (never raises for a value).

    Examples
    --------
    >>> f = SCHEMAS["batch_steps"].field("action")
    >>> col = array("batch_steps", f, ("default",) * 100, False)
    >>> col.type, len(col), col.unique().to_pylist()
    (DataType(string), 100, ['default'])
    """
    n = len(column)
    if n >= CONSTANT_FROM and column.__class__ in (list, tuple):
        first = column[0]
        try:  # an odd object's == may raise: then every row is converted (and made writable) as usual
            if first is None:
                if column.count(None) == n:
                    return _one(table, field, None, safe, n)
            elif first.__class__ in _PLAIN and column[-1] == first and column.count(first) == n:
                return _one(table, field, first, safe, n)
        except Exception:
            pass
    return _array(table, field, column, safe)


def _one(table: str, field: pa.Field, value: Any, safe: bool, n: int) -> pa.Array:
    """``n`` rows of ``value``, made writable and checked as one row would be."""
    one = _array(table, field, [value], safe)
    return pa.nulls(n, field.type) if one.null_count else pa.repeat(one[0], n)


def _array(table: str, field: pa.Field, column: Any, safe: bool) -> pa.Array:
    kind = field.type
    if kind == _S:
        try:
            return pa.array(column, type=_S)
        except Exception:  # a lone surrogate (undecodable file name), or not a str at all
            return pa.array([safe_text(v) for v in column], type=_S)
    if kind == _F:
        try:
            arr = pa.array(column, type=_F)
        except Exception:
            column = [v if type(v) in (int, float) else None for v in column]
            arr = pa.array(column, type=_F)
        if field.name.endswith("at") and not _times_inside(column, arr):
            inside = pc.and_(pc.greater_equal(arr, TIME_MIN), pc.less_equal(arr, TIME_MAX))
            if not pc.all(inside).as_py():  # NaN compares False: out too
                required = field.name == "at"  # an event's time is NOT NULL: the earliest time instead
                log.warning("%s.%s: times outside %g..%g seconds since 1970 stored as %s", table,
                            field.name, TIME_MIN, TIME_MAX, TIME_MIN if required else "NULL")
                fill = pa.scalar(TIME_MIN if required else None, type=_F)
                arr = pc.if_else(inside, arr, fill)
        return arr
    if safe and pa.types.is_integer(kind):
        low, high = _INT32 if kind == _I else (-(2**63), 2**63 - 1)
        return pa.array([v if type(v) is int and low <= v <= high else
                         (min(max(v, low), high) if type(v) is int else None) for v in column], type=kind)
    return pa.array(column, type=kind)


__all__ = ["ENCODER", "GIVE_WAY_EVERY", "SCHEMAS", "WITH_ROWID", "array", "details_json", "flusher_thread", "give_way",
           "small_flush", "table"]
