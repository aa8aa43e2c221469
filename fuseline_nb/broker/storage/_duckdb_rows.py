"""Turning broker records into DuckDB rows and back (no duckdb import here).

The write side snapshots a :class:`StepInfo` into a plain tuple on the hot
path (:func:`step_row`), and does the rest — result columns, splitting
errors — later, on the flusher thread (:func:`result_row`,
:func:`inputs_columns`, :func:`split_error`). Results and inputs arrive as
:class:`~fuseline_nb.workflow.value.Value` s and are written as their bytes,
never pickled again; reading back gives closed Values.

Examples
--------
>>> split_error("ValueError: bad row")
('ValueError', 'bad row')
>>> split_error("lease expired")
(None, 'lease expired')
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import xxhash

from ...limits import safe_repr, safe_text
from ...workflow.events import Event
from ...workflow.runinfo import RunInfo, StepInfo
from ...workflow.status import Status
from ...workflow.value import Value, preview
from ._duckdb_files import FILE_BYTES

log = logging.getLogger(__name__)

_ERROR = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*): (.*)", re.DOTALL)

#: A step snapshot: state, skip_reason, action, attempts, worker, queued_at,
#: started_at, finished_at, recovered, error, traceback.
StepRow = tuple[str, str | None, str | None, int, str | None, float | None, float | None,
                float | None, bool, str | None, str | None]


def step_row(info: StepInfo) -> StepRow:
    """Snapshot the fields of ``info`` the history keeps (cheap: called per change).

    Examples
    --------
    >>> step_row(StepInfo(Status.RUNNING, attempts=1, worker="w1"))[:5]
    ('RUNNING', None, None, 1, 'w1')
    """
    # ``_value_`` (a plain str) is the quickest read of a Status, and a tuple of plain
    # values is soon untracked by the garbage collector: buffers of them cost no GC time.
    # The other fields in one C call over the record's __dict__ (~0.2 µs a record less
    # than reading ten attributes)
    try:
        d = info.__dict__
        return (d["state"]._value_,) + SNAPSHOT_REST(d)  # type: ignore[no-any-return]  # noqa: RUF005 (faster)
    except (AttributeError, KeyError):  # not a plain StepInfo (slots, properties): its attributes
        return (info.state._value_, info.skip_reason, info.action, info.attempts, info.worker, info.queued_at,
                info.started_at, info.finished_at, info.recovered, info.error, info.traceback)


#: A ``StepInfo``'s fields after its state, in :data:`StepRow` order, read from its ``__dict__`` at once.
SNAPSHOT_REST = itemgetter("skip_reason", "action", "attempts", "worker", "queued_at", "started_at",
                           "finished_at", "recovered", "error", "traceback")


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


#: The stored columns of a result: preview, pickle, size, fingerprint, type name, rich preview JSON.
ResultRow = tuple[str | None, bytes | None, int | None, str | None, str | None, str | None]


def result_row(key: tuple[str, str], value: Any) -> ResultRow:
    """The stored columns of a step result (a :class:`Value`; its bytes are written as they are).

    An object that is not a Value (a direct storage caller's) is made one
    here; one that cannot be pickled gets ``None`` bytes (kept in memory
    only, with a warning).

    Examples
    --------
    >>> p, blob, size, fp, type_name, rich = result_row(("r", "s"), Value.of({"n": 1}))
    >>> p, pickle.loads(blob), size == len(blob), type_name, rich
    ("{'n': 1}", {'n': 1}, True, 'dict', None)
    >>> result_row(("r", "s"), b"x" * 2_000_000)[0].endswith("bytes: not previewed>")
    True
    """
    if value is None:  # what most steps return: always the same columns, made once
        return _NONE_ROW
    if value.__class__ is not Value:
        try:
            value = Value.of(value)
        except Exception as exc:
            log.warning("result of step %r of run %s cannot be pickled (%s): it is kept in memory only, "
                        "and lost when the broker stops", key[1], key[0], exc)
            return preview(value), None, None, None, type(value).__name__, None
    rich = None if value.rich is None else json.dumps(value.rich)
    return value.preview, value.data, value.size, value.fingerprint, value.type_name, rich


_NONE_ROW: ResultRow = result_row(("", ""), Value.of(None))


def result_value(blob: bytes, fingerprint: str | None, preview_text: str | None, type_name: str | None,
                 rich: str | None) -> Value:
    """The :class:`Value` of stored result columns (closed: nothing is unpickled).

    Examples
    --------
    >>> v = result_value(pickle.dumps([1]), None, "[1]", "list", None)
    >>> v.load(), v.preview, len(v.fingerprint)
    ([1], '[1]', 32)
    """
    fp = fingerprint or xxhash.xxh3_128_hexdigest(blob)  # a row written before fingerprints were kept
    return Value(blob, fp, preview_text or "", type_name or "", None if rich is None else json.loads(rich))


class StoredInput:
    """In the inputs pickle, a big input kept in a file beside the history (see ``_duckdb_files``).

    Examples
    --------
    >>> StoredInput("ab.pickle", Value.of(b"x")).value(lambda name: pickle.dumps(b"x")).load()
    b'x'
    """

    __slots__ = ("facts", "name")

    def __init__(self, name: str, value: Value) -> None:
        self.name = name
        self.facts = (value.fingerprint, value.preview, value.type_name, value.rich, value.json)

    def value(self, read: Callable[[str], bytes]) -> Value:
        """The input's :class:`Value`, its bytes read by ``read(name)``."""
        return Value(read(self.name), *self.facts)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_stored_input, (self.name, self.facts))


def _stored_input(name: str, facts: tuple[Any, ...]) -> StoredInput:
    ref = StoredInput.__new__(StoredInput)
    ref.name, ref.facts = name, facts
    return ref


def inputs_columns(run_id: str, inputs: dict[str, Any],
                   spill: Callable[[tuple[str, str], bytes], str] | None = None) -> tuple[str, bytes | None]:
    """(JSON text, pickle) of a run's inputs (:class:`Value` s, written closed).

    The text shows a plain-JSON input as itself and any other as its preview.
    An input pickled bigger than ``FILE_BYTES`` goes to ``spill((run_id,
    "input:" + name), bytes)`` when given (a file beside the history); the
    pickle holds a :class:`StoredInput` naming it.

    Examples
    --------
    >>> text, blob = inputs_columns("r", {"x": Value.of(2), "when": Value.of({1, 2})})
    >>> text, pickle.loads(blob)["when"].load()
    ('{"when": "{1, 2}", "x": 2}', {1, 2})
    """
    try:
        values = {k: Value.of(v) for k, v in inputs.items()}
    except Exception as exc:
        log.warning("inputs of run %s cannot be pickled (%s): only their JSON text is stored", run_id, exc)
        return to_json(inputs), None
    parts = [f"{json.dumps(str(k))}: {v.json if v.json is not None else json.dumps(v.preview)}"
             for k, v in sorted(values.items(), key=lambda kv: str(kv[0]))]
    kept: dict[str, Any] = values
    if spill is not None and any(v.size > FILE_BYTES for v in values.values()):
        kept = {k: StoredInput(spill((run_id, f"input:{k}"), v.data), v) if v.size > FILE_BYTES else v
                for k, v in values.items()}
    return "{" + ", ".join(parts) + "}", pickle.dumps(kept, protocol=5)


def load_inputs(text: str | None, blob: bytes | None,
                read: Callable[[str], bytes] | None = None) -> dict[str, Any]:
    """The inputs back from :func:`inputs_columns` output: :class:`Value` s, closed.

    Files written before values were kept closed hold the objects' pickle;
    those are read as they are.

    Examples
    --------
    >>> load_inputs('{"x": 2}', None)
    {'x': 2}
    >>> load_inputs(*inputs_columns("r", {"x": Value.of(2)}))["x"].load()
    2
    """
    if blob is not None:
        try:
            inputs = pickle.loads(blob)
        except Exception as exc:  # e.g. an old file's class this process cannot import
            log.warning("stored inputs cannot be unpickled here (%s): returning their JSON text", exc)
        else:
            for k, v in inputs.items():
                if v.__class__ is StoredInput:
                    try:
                        if read is None:
                            raise OSError("no folder of big values for this history")
                        inputs[k] = v.value(read)
                    except OSError as exc:
                        log.warning("input %r is lost: its file %s is gone (%s); keep the folder of big "
                                    "values with the history file", k, v.name, exc)
                        inputs[k] = None
            return inputs  # type: ignore[no-any-return]
    return json.loads(text) if text else {}


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
            return json.dumps({k if isinstance(k, str) else safe_repr(k): _short_repr(v) for k, v in value.items()},
                              sort_keys=True)
        return json.dumps(_short_repr(value))


def _short_repr(value: Any) -> str:
    try:
        return safe_text(preview(value)) or ""
    except Exception:  # a repr that raises, or a value too deep to show
        return safe_repr(value) if not isinstance(value, (dict, list, tuple)) else \
            f"<{type(value).__name__} that cannot be shown>"


def run_info(row: tuple[Any, ...], read: Callable[[str], bytes] | None = None) -> RunInfo:
    """A :class:`RunInfo` (without its steps) from a ``SELECT_RUN(S)`` row; inputs closed.

    Examples
    --------
    >>> run_info(("r1", "wf", "1", "RUNNING", '{"x": 1}', None, 0.0, None)).inputs
    {'x': 1}
    """
    run_id, wf, version, state, text, blob, created, finished = row
    return RunInfo(run_id, wf, Status(state), {}, version, load_inputs(text, blob, read), created, finished)


def event_of(row: tuple[Any, ...]) -> Event:
    """An :class:`Event` from a ``SELECT_EVENTS`` row.

    Examples
    --------
    >>> event_of(("run_dispatched", "r1", 1, 0.0, None, "RUNNING", None, None, None)).kind
    'run_dispatched'
    """
    kind, run_id, seq, at, step, state, worker, attempt, detail = row
    return Event.from_dict({"kind": kind, "run_id": run_id, "seq": seq, "at": at, "step": step, "state": state,
                            "worker": worker, "attempt": attempt or 0,
                            "detail": None if detail is None else json.loads(detail)})


def step_info(row: tuple[Any, ...], result: Any) -> StepInfo:
    """A :class:`StepInfo` from a ``SELECT_STEPS`` row (without its name) and its result.

    Examples
    --------
    >>> step_info(("SUCCEEDED", 1, "w", None, None, "default", None, 0.0, 1.0, 2.0, False), 7).state
    <Status.SUCCEEDED: 'SUCCEEDED'>
    """
    state, attempts, worker, error, tb, action, skip, queued, started, finished, recovered = row
    return StepInfo(Status(state), attempts, worker, result, error, tb, action, skip,
                    queued, started, finished, recovered=bool(recovered))
