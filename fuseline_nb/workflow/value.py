"""A value made once: pickled bytes, a data fingerprint, a size and previews.

A step result (or a run input) becomes a :class:`Value` where it is born —
in the worker that ran the step, in the kernel or client that submitted the
input. From there it travels opaque: through brokers, storages, the process
pipe, HTTP and downstream assignments, nobody pickles it again; the bytes
are only unpickled (:meth:`Value.load`) where user code needs the object —
the worker running a consuming step, or the notebook when asked for a
result.

What a value carries, computed once:

``data``
    cloudpickle bytes (plain scalars: stdlib pickle, the same bytes faster).
``fingerprint``
    the data fingerprint (:func:`~fuseline_nb.workflow.datafingerprint.data_fingerprint`,
    a 128-bit xxHash), the cache key's ingredient: NumPy arrays, pandas
    objects and Arrow tables are hashed from their buffers, anything else
    from the pickle made here (never a second one).
``size``
    ``len(data)``.
``preview``
    a short, safe ``repr`` (:func:`preview`: at most 200 characters).
``rich``
    for tables and arrays, ``{"shape", "dtypes", "html"}``: the first rows
    as an HTML table; ``None`` for other values.
``json``
    the JSON text of the value when it is plain JSON that round-trips
    exactly (str/int/float/bool/None, lists and str-keyed dicts of them),
    else ``None``: the history's readable ``inputs`` column uses it.

Examples
--------
>>> v = Value.of({"rows": 3})
>>> v.preview, v.size == len(v.data), v.json
("{'rows': 3}", True, '{"rows": 3}')
>>> v.load()
{'rows': 3}
>>> Value.of({"rows": 3}).fingerprint == v.fingerprint
True
>>> import pickle
>>> pickle.loads(pickle.dumps(v)) == v  # travels as its bytes, never as the object
True
"""

from __future__ import annotations

import json
import pickle
from typing import Annotated, Any, Final

import cloudpickle

from ..errors import ValueLoadError
from ._previews import _SCALARS, PREVIEW_CHARS, RICH_ROWS, rich_preview, text_preview
from ._valuewalk import _BUILTIN_CONTAINERS, _builtin_only, _plain_json, _scalar_json
from .datafingerprint import data_fingerprint, scalar_fingerprint

#: Values pickled larger than this get no text preview (their repr may be slow), tables and arrays excepted.
PREVIEW_MAX_BYTES: Final = 1_000_000
#: Values pickled larger than this get no ``json`` text (walking them is not worth it).
JSON_MAX_BYTES: Final = 65_536

_NOT_LOADED: Final = object()
_to_json = json.JSONEncoder().encode  # json.dumps without its per-call keyword handling
def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A short, safe text of ``value``: its ``repr`` (long containers elided), cut to ``limit``.

    The one preview function: histories, traces and views all use it.

    Examples
    --------
    >>> preview("x" * 300, 10)
    "'xxxxxxxx…"
    >>> preview(list(range(100)))[:20]
    '[0, 1, 2, 3, 4, 5, 6'
    >>> class Broken:
    ...     def __repr__(self): raise RuntimeError("no")
    >>> preview(Broken())
    '<Broken object: no preview, repr failed with RuntimeError>'
    >>> preview(Value.of([1, 2]))  # a value's own preview: nothing is unpickled
    '[1, 2]'
    """
    if value.__class__ is Value:
        text = value.preview
        return text if len(text) <= limit else text[: limit - 1] + "…"
    return text_preview(value, limit)


def dumps(obj: Any) -> bytes:
    """The pickle of ``obj``: stdlib pickle for builtin data, cloudpickle (by value) otherwise.

    Examples
    --------
    >>> pickle.loads(dumps((1, "a")))
    (1, 'a')
    """
    if _builtin_only(obj):  # ten times quicker than cloudpickle, and the same bytes
        return pickle.dumps(obj, protocol=5)
    return cloudpickle.dumps(obj, protocol=5)


class Value:
    """A value made once: pickled bytes, fingerprint, size, previews; opened only on request.

    Make one with :meth:`Value.of` where the value is born. It pickles as
    its bytes and facts (never as the object), so it crosses processes and
    storages opaque; :meth:`load` unpickles it (once per process: the object
    is kept). A value made in this process loads as the object it was made
    from.

    Parameters
    ----------
    data:
        The pickled bytes.
    fingerprint:
        Hex data fingerprint (see :func:`~fuseline_nb.workflow.datafingerprint.data_fingerprint`).
    preview, type_name, rich, json:
        See the module docstring.

    Examples
    --------
    >>> v = Value.of((1, 2))
    >>> v
    <Value tuple: (1, 2)>
    >>> v.type_name, v.rich is None, v.json is None
    ('tuple', True, True)
    >>> Value(v.data, v.fingerprint, v.preview, v.type_name).load()
    (1, 2)
    """

    __slots__ = ("__weakref__", "_obj", "data", "fingerprint", "json", "origin", "preview", "rich", "type_name")

    def __init__(self, data: bytes, fingerprint: str, preview: str = "", type_name: str = "",
                 rich: dict[str, Any] | None = None, json: str | None = None) -> None:
        self.data = data
        self.fingerprint = fingerprint
        self.preview = preview
        self.type_name = type_name
        self.rich = rich
        self.json = json
        #: What the value is, for messages: "the result of step 'load' of run ..." where a broker
        #: knows it (this process only: it does not travel with the value).
        self.origin = ""
        self._obj: Any = _NOT_LOADED

    @classmethod
    def of(cls, obj: Any) -> Value:
        """Make the value of ``obj``: pickle it once and describe it.

        ``obj`` that is already a :class:`Value` is returned as it is.

        Raises
        ------
        pickle.PicklingError
            (or what the pickler raised) when ``obj`` cannot be pickled.

        Examples
        --------
        >>> Value.of(7).preview, Value.of(Value.of(7)).preview
        ('7', '7')
        """
        if obj.__class__ is Value:
            return obj  # type: ignore[no-any-return]
        t = type(obj)
        if t in _SCALARS:
            data = pickle.dumps(obj, protocol=5)
            if len(data) < PREVIEW_CHARS:  # one repr: the preview, and what a scalar's fingerprint hashes
                text = repr(obj)
                fingerprint = data_fingerprint(obj) if t is bytes or t is complex else scalar_fingerprint(obj, text)
            else:
                text = preview(obj) if len(data) <= PREVIEW_MAX_BYTES else f"<{len(data)} bytes: not previewed>"
                fingerprint = data_fingerprint(obj)
            plain = _scalar_json(obj)
            v = cls(data, fingerprint, text, t.__name__, None, plain)
        else:
            builtin = _builtin_only(obj)  # walked once: which pickler, and whether its repr is quick
            data = pickle.dumps(obj, protocol=5) if builtin else cloudpickle.dumps(obj, protocol=5)
            plain = _to_json(obj) if len(data) <= JSON_MAX_BYTES and _plain_json(obj) else None
            rich = rich_preview(obj) if t not in _BUILTIN_CONTAINERS else None
            if len(data) > PREVIEW_MAX_BYTES and rich is None:
                text = f"<{len(data)} bytes: not previewed>"
            elif len(data) < PREVIEW_CHARS and builtin:
                text = repr(obj)  # short builtin data: its repr is short and quick
            else:
                text = preview(obj)
            v = cls(data, data_fingerprint(obj, data), text, t.__name__, rich, plain)
        v._obj = obj
        return v

    @property
    def size(self) -> int:
        """``len(data)``: the pickled size in bytes."""
        return len(self.data)

    @property
    def loaded(self) -> bool:
        """Whether the object is at hand in this process (made here, or loaded already).

        Examples
        --------
        >>> v = Value.of([1]); v.loaded
        True
        >>> pickle.loads(pickle.dumps(v)).loaded
        False
        """
        return self._obj is not _NOT_LOADED

    def load(self) -> Any:
        """The object: unpickled on first call (only with bytes from a party you trust).

        Raises
        ------
        ValueLoadError
            (a ``ValueError``) When this process cannot unpickle the bytes (a
            class it cannot import or rebuild); the message names the value
            (:attr:`origin`, where a broker set it), its type, the unpickling
            error and what to do.

        Examples
        --------
        >>> Value.of({"a": 1}).load()
        {'a': 1}
        >>> v = Value(b"not a pickle", "0", "<Thing>", "Thing")
        >>> v.origin = "the result of step 'make'"
        >>> v.load()
        Traceback (most recent call last):
        fuseline_nb.errors.ValueLoadError: the result of step 'make' (a Thing: <Thing>) cannot be unpickled in this process: UnpicklingError: invalid load key, 'n'. (import or define Thing here first; its preview and size need no unpickling)
        """
        obj = self._obj
        if obj is _NOT_LOADED:
            try:
                obj = self._obj = pickle.loads(self.data)
            except Exception as exc:
                what = self.type_name or "value"
                raise ValueLoadError(
                    f"{self.origin or 'a value'} (a {what}: {self.preview[:80]}) cannot be unpickled in this "
                    f"process: {type(exc).__name__}: {exc} (import or define {what} here first; its preview "
                    "and size need no unpickling)"
                ) from exc
        return obj

    def __eq__(self, other: object) -> bool:
        return other.__class__ is Value and other.data == self.data  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"<Value {self.type_name or 'value'}: {self.preview}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Value, (self.data, self.fingerprint, self.preview, self.type_name, self.rich, self.json))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """How a value crosses JSON (the HTTP edge validates messages with pydantic): see :mod:`._value_wire`."""
        from ._value_wire import wire_schema

        return wire_schema()


class _OnTheWire:
    """``Annotated`` metadata: on the wire (pydantic) the field is a :class:`Value` (or a dict of them), or null.

    In Python the field may hold the object itself (an in-process run keeps
    results as they are); a message writer makes it a :class:`Value` then.
    """

    __slots__ = ("many",)

    def __init__(self, many: bool) -> None:
        self.many = many

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema as cs

        one = handler.generate_schema(Value)
        return cs.nullable_schema(cs.dict_schema(cs.str_schema(), one) if self.many else one)


#: A field holding a value: a :class:`Value` (or the object itself, in process) or ``None``.
MaybeValue = Annotated[Any, _OnTheWire(many=False)]
#: A field holding named values (run inputs): ``{name: Value}`` or ``None``.
MaybeValues = Annotated[dict[str, Any] | None, _OnTheWire(many=True)]


def values_of(objs: dict[str, Any] | None) -> dict[str, Value]:
    """Each entry made a :class:`Value` (entries that are Values already stay as they are).

    Examples
    --------
    >>> values_of({"x": 1})["x"].preview
    '1'
    """
    return {k: Value.of(v) for k, v in objs.items()} if objs else {}


def opened_all(values: dict[str, Any], what: str = "") -> dict[str, Any]:
    """Each entry opened (see :func:`opened`).

    ``what`` names the entries for an error (``"the result of step"``: a
    value that cannot be unpickled is then named by its key).

    Raises
    ------
    ValueLoadError
        An entry cannot be unpickled here.

    Examples
    --------
    >>> opened_all({"x": Value.of(1), "y": 2})
    {'x': 1, 'y': 2}
    >>> opened_all({"make": Value(b"?", "0", "?", "Thing")}, "the result of step")
    Traceback (most recent call last):
    fuseline_nb.errors.ValueLoadError: the result of step 'make' (a Thing: ?) cannot be unpickled in this process: UnpicklingError: invalid load key, '?'. (import or define Thing here first; its preview and size need no unpickling)
    """
    if not values:
        return {}
    out = {}
    for k, v in values.items():
        if v.__class__ is Value:
            if what and not v.origin and v._obj is _NOT_LOADED:
                v.origin = f"{what} {k!r}"
            v = v.load()
        out[k] = v
    return out


def opened(value: Any) -> Any:
    """``value.load()`` for a :class:`Value`, else ``value`` itself.

    Examples
    --------
    >>> opened(Value.of([1])), opened(3)
    ([1], 3)
    """
    return value.load() if value.__class__ is Value else value


__all__ = ["PREVIEW_CHARS", "PREVIEW_MAX_BYTES", "RICH_ROWS", "MaybeValue", "MaybeValues", "Value", "dumps", "opened", "opened_all", "preview", "rich_preview",
           "values_of"]
