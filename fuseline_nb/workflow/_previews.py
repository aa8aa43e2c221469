"""Previews of any object, without unpickling or importing anything: a short safe
``repr`` (:func:`text_preview`) and, for arrays and tables, shape, dtypes and the
first rows as HTML (:func:`rich_preview`).

:mod:`.value` builds a :class:`~fuseline_nb.workflow.value.Value`'s previews with
these and re-exports them; its :func:`~fuseline_nb.workflow.value.preview` also
takes a Value (its own preview, nothing unpickled).

Examples
--------
>>> text_preview({"b": 1, "a": 2})
"{'b': 1, 'a': 2}"
>>> text_preview("x" * 300, 10)
"'xxxxxxxx…"
"""

from __future__ import annotations

import html
import itertools
import reprlib
from typing import Any, Final

#: Longest preview text, in characters.
PREVIEW_CHARS: Final = 200
#: Rows a rich preview shows.
RICH_ROWS: Final = 5

_SCALARS: Final = frozenset({type(None), bool, int, float, complex, str, bytes})


class _Repr(reprlib.Repr):
    """``reprlib.Repr`` that keeps a dict's own key order (reprlib sorts keys; ``repr`` does not)."""

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
                  for k, v in itertools.islice(x.items(), self.maxdict)]
        if len(x) > self.maxdict:
            pieces.append("...")
        return "{" + ", ".join(pieces) + "}"

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


_REPR = _Repr()
_REPR.maxstring = _REPR.maxother = PREVIEW_CHARS
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxdict = 40


def text_preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A short, safe text of ``value``: its ``repr`` (long containers elided), cut to ``limit``.

    A ``__repr__`` that raises is said, not raised.

    Examples
    --------
    >>> class Broken:
    ...     def __repr__(self): raise RuntimeError("no")
    >>> text_preview(Broken())
    '<Broken object: no preview, repr failed with RuntimeError>'
    """
    try:
        text = repr(value) if type(value) in _SCALARS and not isinstance(value, str | bytes) \
            else _REPR.repr(value)
    except Exception as exc:  # a user __repr__ may raise; a preview must not, and says so
        if type(value) is int:  # over Python's digit limit for str()
            text = f"<int of {_digits(value)} digits>"
        else:
            text = f"<{type(value).__name__} object: no preview, repr failed with {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _digits(n: int) -> int:
    """The number of decimal digits of ``n`` (without making its text)."""
    n = abs(n)
    d = max(1, int(n.bit_length() * 0.30102999566398120))
    return d + 1 if n >= 10 ** d else d


def _kind(obj: Any) -> str | None:
    """``"numpy"``, ``"pandas"``, ``"arrow"`` or ``None``, without importing any of them."""
    module = type(obj).__module__ or ""
    name = type(obj).__name__
    if module.startswith("pandas") and name in ("DataFrame", "Series"):
        return "pandas"
    if module == "numpy" and name == "ndarray":
        return "numpy"
    if module.startswith("pyarrow") and name in ("Table", "RecordBatch"):
        return "arrow"
    return None


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(text_preview(x, 60))}</td>" for x in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def rich_preview(obj: Any) -> dict[str, Any] | None:
    """Shape, dtypes and the first rows as HTML of an array or table; ``None`` for other values.

    Examples
    --------
    >>> rich_preview([1, 2]) is None
    True
    """
    kind = _kind(obj)
    try:
        if kind == "pandas":
            head = obj.head(RICH_ROWS)
            dtypes = {str(obj.name): str(obj.dtype)} if obj.ndim == 1 else \
                {str(c): str(d) for c, d in obj.dtypes.items()}
            return {"shape": list(obj.shape), "dtypes": dtypes,
                    "html": head.to_frame().to_html(max_cols=20) if obj.ndim == 1 else head.to_html(max_cols=20)}
        if kind == "numpy":
            rows = obj[:RICH_ROWS].tolist() if obj.ndim else [obj.tolist()]
            rows = [r if isinstance(r, list) else [r] for r in rows]
            width = len(rows[0]) if rows else 0
            return {"shape": list(obj.shape), "dtypes": {"": str(obj.dtype)},
                    "html": _html_table([str(i) for i in range(width)], [r[:20] for r in rows])}
        if kind == "arrow":
            names = list(obj.schema.names)
            head = obj.slice(0, RICH_ROWS).to_pylist()
            return {"shape": [obj.num_rows, obj.num_columns],
                    "dtypes": {n: str(obj.schema.field(n).type) for n in names},
                    "html": _html_table(names[:20], [[r[n] for n in names[:20]] for r in head])}
    except Exception:  # a rich preview is a courtesy; the text preview is always there
        return None
    return None


__all__ = ["PREVIEW_CHARS", "RICH_ROWS", "rich_preview", "text_preview"]
