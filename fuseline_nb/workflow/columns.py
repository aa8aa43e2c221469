"""Column: many objects' values of one attribute, pickled as a plain list made while pickling.

A large workflow pickled as one tuple or dict per step makes millions of
short-lived containers, and the pickler's memo keeps every one of them
alive until the whole pickle is written: ~1 KB per step above what is kept
(~1 GB for a 1,000,000-step workflow). A :class:`Column` instead pickles as
a ``list`` of one attribute's values, made while the pickler writes it (8
bytes an item, one column at a time), and as one object and a count when
every item holds the same object (a shared function, a default, an empty
tuple: most attributes of a large workflow). The receiving process gets an
ordinary list; ``map(make, *columns)`` turns columns back into objects.

Examples
--------
>>> import pickle
>>> from operator import itemgetter
>>> rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
>>> pickle.loads(pickle.dumps(Column(rows, itemgetter("a"))))
[1, 2]
>>> list(Column(rows, itemgetter("b")))
['x', 'y']
>>> same = [{"f": len}] * 1000
>>> len(pickle.dumps(Column(same, itemgetter("f")))) < 100
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from operator import is_
from typing import Any


class Column:
    """``getter(item)`` for each of ``items``, pickled as a plain list read lazily from them.

    ``through`` (e.g. ``vars``) is applied to each item first, so a C-level
    getter such as ``itemgetter("name")`` reads instance dictionaries.
    ``by_value``: the values are immutable (strings, booleans, tuples of
    them), so a column of equal values travels as one value (found by a
    C-level count); otherwise only one object throughout does.

    Examples
    --------
    >>> import pickle
    >>> from operator import attrgetter
    >>> pickle.loads(pickle.dumps(Column([1 + 2j, 3 + 4j], attrgetter("real"))))
    [1.0, 3.0]
    >>> from operator import itemgetter
    >>> class Box:
    ...     def __init__(self, size):
    ...         self.size = size
    >>> list(Column([Box(1), Box(2)], itemgetter("size"), through=vars))
    [1, 2]
    """

    __slots__ = ("by_value", "getter", "items", "through")

    def __init__(self, items: Sequence[Any], getter: Callable[[Any], Any], *,
                 through: Callable[[Any], Any] | None = None, by_value: bool = False) -> None:
        self.items = items
        self.getter = getter
        self.through = through  # applied to each item before getter (``vars``: read the instance dict)
        # The values are immutable (strings, booleans, tuples of strings): a column of equal values
        # travels as one, found by a C-level count (by identity otherwise: equal objects that are
        # not the same one must come back apart, as a step's two equal lists)
        self.by_value = by_value

    def __iter__(self) -> Iterator[Any]:
        items = self.items if self.through is None else map(self.through, self.items)
        return map(self.getter, items)

    def __reduce__(self) -> tuple[Any, ...]:
        values = iter(self)
        if self.by_value:  # immutable values: equal is as good as the same (a C-level count)
            column = list(values)
            if column and column.count(column[0]) == len(column):
                return _repeat, (column[0], len(column))  # one value throughout: written once
            return list, (), None, iter(column)
        for first in values:  # one pass, no list: most columns hold one object throughout
            if all(map(is_, values, repeat(first))):
                return _repeat, (first, len(self.items))  # one object throughout: written once
            break  # (a column of distinct values stops at its second item)
        # (list, no arguments, no state, list items from an iterator): the pickler appends the
        # items in batches as it reads them from the items
        return list, (), None, iter(self)

    def __repr__(self) -> str:
        return f"<Column of {len(self.items)} items by {self.getter!r}>"


def _repeat(value: Any, n: int) -> list[Any]:
    """A column holding one object ``n`` times (as pickled when every item was that object).

    Stored definitions (a history file's ``fl_definitions``) name this
    function: it keeps its module and name.
    """
    return [value] * n


__all__ = ["Column"]
