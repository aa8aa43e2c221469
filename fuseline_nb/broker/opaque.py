"""An opaque pickled value: what the HTTP broker service holds instead of objects.

Step results and run inputs that are not plain JSON travel between workers
and clients as cloudpickle bytes. The broker service never unpickles bytes it
received over the network (a pickle can run code); it keeps them in a
:class:`Pickled` and hands the same bytes on. Only the clients — workers and
notebooks that chose to trust the broker they talk to — unpickle them.

Examples
--------
>>> p = Pickled.dump({"rows": 3})
>>> p
<pickled dict: {'rows': 3}>
>>> p.load()
{'rows': 3}
"""

from __future__ import annotations

from typing import Any

from ..limits import safe_repr

_PREVIEW = 200


def preview(value: Any, limit: int = _PREVIEW) -> str:
    """A short, safe text for ``value`` (its repr, cut to ``limit`` characters).

    Examples
    --------
    >>> preview("x" * 300, 10)
    "'xxxxxxxx…"
    """
    text = safe_repr(value)  # a broken __repr__ must not break a report
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Pickled:
    """cloudpickle bytes of a value, kept closed, with a text preview.

    ``repr`` shows the preview, so SQL previews and views stay readable
    while the bytes stay unopened.

    Examples
    --------
    >>> Pickled(b"not really a pickle", "x").data
    b'not really a pickle'
    >>> Pickled.dump((1, 2)) == Pickled.dump((1, 2))
    True
    """

    __slots__ = ("data", "preview", "type_name")

    def __init__(self, data: bytes, preview: str = "", type_name: str = "") -> None:
        self.data = bytes(data)
        self.preview = str(preview)
        self.type_name = str(type_name)

    @classmethod
    def dump(cls, value: Any) -> Pickled:
        """Pickle ``value`` with cloudpickle (by value, so notebook code travels)."""
        import cloudpickle

        return cls(cloudpickle.dumps(value), preview(value), type(value).__name__)

    def load(self) -> Any:
        """Unpickle the value. Only do this with bytes from a party you trust."""
        import cloudpickle

        return cloudpickle.loads(self.data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pickled) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        kind = self.type_name or "value"
        return f"<pickled {kind}: {self.preview}>" if self.preview else f"<pickled {kind}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Pickled, (self.data, self.preview, self.type_name))


__all__ = ["Pickled", "preview"]
