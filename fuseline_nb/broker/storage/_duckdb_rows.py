"""Turning broker records into DuckDB rows and back (no duckdb import here).

The write side snapshots a :class:`StepInfo` into a plain tuple on the hot
path (:func:`step_row`), and does the expensive parts — pickling, previews,
splitting errors — later, on the flusher thread (:func:`result_row`,
:func:`inputs_columns`, :func:`split_error`).

Examples
--------
>>> split_error("ValueError: bad row")
('ValueError', 'bad row')
>>> split_error("lease expired")
(None, 'lease expired')
>>> preview(list(range(100)))[:20]
'[0, 1, 2, 3, 4, 5, 6'
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import reprlib
from typing import Any, Final

import cloudpickle

from ...limits import safe_repr, safe_text
from ...workflow.runinfo import StepInfo
from ...workflow.status import Status

log = logging.getLogger(__name__)

#: Longest ``result_preview`` text, in characters.
PREVIEW_CHARS: Final = 200
#: Results whose pickle is larger than this are stored but not previewed.
PREVIEW_MAX_BYTES: Final = 1_000_000

_SCALARS: Final = frozenset({type(None), bool, int, float, complex, str, bytes})
_ERROR = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*): (.*)", re.DOTALL)
class _Repr(reprlib.Repr):
    def repr_instance(self, x: Any, level: int) -> str:
        try:
            s = repr(x)
        except Exception as exc:  # reprlib would say '<X instance at 0x...>': say why instead
            return f"<{type(x).__name__} object: no preview, repr failed with {type(exc).__name__}>"
        if len(s) > self.maxother:
            i = max(0, (self.maxother - 3) // 2)
            j = max(0, self.maxother - 3 - i)
            s = s[:i] + "..." + s[len(s) - j:]
        return s


_repr = _Repr()
_repr.maxstring = _repr.maxother = PREVIEW_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 40

#: A step snapshot: state, skip_reason, action, attempts, worker, queued_at,
#: started_at, finished_at, error, traceback.
StepRow = tuple[str, str | None, str | None, int, str | None, float | None, float | None,
                float | None, str | None, str | None]


def step_row(info: StepInfo) -> StepRow:
    """Snapshot the fields of ``info`` the history keeps (cheap: called per change).

    Examples
    --------
    >>> step_row(StepInfo(Status.RUNNING, attempts=1, worker="w1"))[:5]
    ('RUNNING', None, None, 1, 'w1')
    """
    # ``_value_`` (a plain str) is the quickest read of a Status, and a tuple of plain
    # values is soon untracked by the garbage collector: buffers of them cost no GC time
    return (info.state._value_, info.skip_reason, info.action, info.attempts, info.worker,
            info.queued_at, info.started_at, info.finished_at, info.error, info.traceback)


def split_error(error: str | None) -> tuple[str | None, str | None]:
    """``"Type: message"`` → ``("Type", "message")``; other text is all message.

    Examples
    --------
    >>> split_error(None)
    (None, None)
    """
    if error is None:
        return None, None
    m = _ERROR.fullmatch(error)
    return (m.group(1), m.group(2)) if m else (None, error)


def preview(value: Any) -> str:
    """A short repr of ``value`` (at most :data:`PREVIEW_CHARS` characters).

    Examples
    --------
    >>> preview("approve")
    "'approve'"
    >>> len(preview("x" * 1000)) <= PREVIEW_CHARS
    True
    """
    try:
        text = safe_text(_repr.repr(value)) or ""
    except Exception as exc:  # a user __repr__ may raise; the preview must not, and says so
        text = f"<{type(value).__name__} object: no preview, repr failed with {type(exc).__name__}>"
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def result_row(key: tuple[str, str], value: Any) -> tuple[str | None, bytes | None, int | None]:
    """(preview, pickle, size) of a step result; ``pickle`` is ``None`` if it cannot be pickled.

    Examples
    --------
    >>> p, blob, size = result_row(("r", "s"), {"n": 1})
    >>> p, pickle.loads(blob), size == len(blob)
    ("{'n': 1}", {'n': 1}, True)
    >>> result_row(("r", "s"), b"x" * 2_000_000)[0].endswith("bytes: not previewed>")
    True
    """
    try:
        # builtin scalars pickle the same either way; plain pickle is ten times quicker
        blob: bytes = (pickle.dumps(value, protocol=5) if type(value) in _SCALARS
                       else cloudpickle.dumps(value))
    except Exception as exc:
        log.warning("result of step %r of run %s cannot be pickled (%s): it is kept in memory only, "
                    "and lost when the broker stops", key[1], key[0], exc)
        return preview(value), None, None
    if len(blob) > PREVIEW_MAX_BYTES:
        return f"<{len(blob)} bytes: not previewed>", blob, len(blob)
    if len(blob) < PREVIEW_CHARS and type(value) in _SCALARS:
        return safe_text(repr(value)), blob, len(blob)
    return preview(value), blob, len(blob)


def inputs_columns(run_id: str, inputs: dict[str, Any]) -> tuple[str, bytes | None]:
    """(JSON text, pickle) of a run's inputs; values JSON cannot hold appear as their repr.

    Examples
    --------
    >>> text, blob = inputs_columns("r", {"x": 2, "when": {1, 2}})
    >>> text, pickle.loads(blob)["when"]
    ('{"when": "{1, 2}", "x": 2}', {1, 2})
    """
    text = to_json(inputs)
    try:
        blob: bytes | None = cloudpickle.dumps(inputs)
    except Exception as exc:
        log.warning("inputs of run %s cannot be pickled (%s): only their JSON text is stored", run_id, exc)
        blob = None
    return text, blob


def load_inputs(text: str | None, blob: bytes | None) -> dict[str, Any]:
    """The inputs back from :func:`inputs_columns` output (the pickle when there is one).

    Examples
    --------
    >>> load_inputs('{"x": 2}', None)
    {'x': 2}
    """
    if blob is not None:
        try:
            return pickle.loads(blob)
        except Exception as exc:  # e.g. a class this process cannot import
            log.warning("stored inputs cannot be unpickled here (%s): returning their JSON text", exc)
    return json.loads(text) if text else {}


def load_result(run_id: str, step: str, blob: bytes) -> Any:
    """A stored result back; ``None`` (and a warning) if this process cannot unpickle it.

    Examples
    --------
    >>> load_result("r", "s", pickle.dumps([1]))
    [1]
    """
    try:
        return pickle.loads(blob)
    except Exception as exc:  # e.g. a class this process cannot import: the history stays readable
        log.warning("result of step %r of run %s cannot be unpickled here (%s): read as None",
                    step, run_id, exc)
        return None


def to_json(value: Any) -> str:
    """JSON text of ``value``; what JSON cannot hold appears as its ``repr``.

    Examples
    --------
    >>> to_json({"b": 1, "a": {2, 3}})
    '{"a": "{2, 3}", "b": 1}'
    >>> json.loads(to_json({1: "x", "k": 2}))  # mixed key types: every value as its repr
    {'1': "'x'", 'k': '2'}
    """
    try:
        return json.dumps(value, sort_keys=True, default=safe_repr)
    except Exception:  # mixed key types, a cycle, too deep: fall back to reprs, never fail a flush
        if isinstance(value, dict):
            return json.dumps({k if isinstance(k, str) else safe_repr(k): _short_repr(v) for k, v in value.items()}, sort_keys=True)
        return json.dumps(_short_repr(value))


def _short_repr(value: Any) -> str:
    try:
        return safe_text(_repr.repr(value)) or ""
    except Exception:  # a repr that raises, or a value too deep to show
        return safe_repr(value) if not isinstance(value, (dict, list, tuple)) else \
            f"<{type(value).__name__} that cannot be shown>"


def step_info(row: tuple[Any, ...], result: Any) -> StepInfo:
    """A :class:`StepInfo` from a ``SELECT_STEPS`` row (without its name) and its result.

    Examples
    --------
    >>> step_info(("SUCCEEDED", 1, "w", None, None, "default", None, 0.0, 1.0, 2.0), 7).state
    <Status.SUCCEEDED: 'SUCCEEDED'>
    """
    state, attempts, worker, error, tb, action, skip, queued, started, finished = row
    return StepInfo(Status(state), attempts, worker, result, error, tb, action, skip,
                    queued, started, finished)
