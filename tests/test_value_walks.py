"""The two walks Value.of makes over a result (which pickler; whether it has a JSON text) answer as the
plain recursive definitions do, for every kind of odd value (they are written as loops that judge scalar items
without a call: a result's Value is made once per step in its worker)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fuseline_nb.workflow import _valuewalk as w
from fuseline_nb.workflow import value as v
from fuseline_nb.workflow._previews import _SCALARS


def _builtin_only_def(obj: Any, depth: int = 0) -> bool:
    t = type(obj)
    if t in _SCALARS:
        return True
    if t not in w._BUILTIN_CONTAINERS or depth > 8 or len(obj) > 256:
        return False
    if t is dict:
        return all(_builtin_only_def(k, depth + 1) and _builtin_only_def(x, depth + 1) for k, x in obj.items())
    return all(_builtin_only_def(x, depth + 1) for x in obj)


def _plain_json_def(x: Any, depth: int = 0) -> bool:
    t = type(x)
    if t is str:
        return x.isascii() or w._utf8(x)
    if x is None or t is bool:
        return True
    if t is int:
        return -(2**53) <= x <= 2**53
    if t is float:
        return math.isfinite(x)
    if depth >= 64:
        return False
    if t is list:
        return all(_plain_json_def(y, depth + 1) for y in x)
    if t is dict:
        return all(type(k) is str and _plain_json_def(y, depth + 1) for k, y in x.items())
    return False


class Rows(list):  # type: ignore[type-arg]
    pass


def _nested(depth: int, leaf: Any) -> Any:
    out = leaf
    for i in range(depth):
        out = [out] if i % 2 else {"k": out}
    return out


ODD: list[Any] = [
    None, True, 0, -1, 2**53, 2**53 + 1, -(2**53) - 1, 10**100, 1.5, math.nan, math.inf, -math.inf, 1j, b"x",
    "text", "café", "\udcff", "", [], {}, (), set(), frozenset(),
    [1, "a", None, 2.5], [2**53 + 1], ["ok", "\udcff"], [math.nan], [b"bytes"], [1j],
    {"a": 1, "b": [1, 2]}, {"a": "é"}, {"a": "\udcff"}, {1: "int key"}, {True: 1}, {None: 1}, {(1, 2): "tuple key"},
    {"t": (1, 2)}, {"s": {1, 2}}, {"big": 10**30}, {"nan": math.nan}, (1, "a", None), {1, 2, "x"}, frozenset({1}),
    list(range(256)), list(range(257)), {f"k{i}": i for i in range(257)}, [[1] * 300], ["x" * 10] * 256,
    _nested(8, 1), _nested(9, 1), _nested(10, "x"), _nested(63, 1), _nested(64, 1), _nested(65, 1),
    _nested(63, "\udcff"), _nested(64, [1]), [Rows([1, 2])], Rows([1]), {"r": Rows()}, [object()], {"o": object()},
    [{"id": i, "name": f"n{i}", "x": i * 0.5} for i in range(20)], [[[]]], [{}], {"": {"": {"": None}}},
]


@pytest.mark.parametrize("obj", ODD, ids=lambda o: type(o).__name__ + ":" + repr(o)[:30])
def test_the_walks_answer_as_their_definitions(obj: Any) -> None:
    assert w._builtin_only(obj) is _builtin_only_def(obj)
    assert w._plain_json(obj) is _plain_json_def(obj)


def test_the_walks_see_what_decides_them() -> None:
    """A few answers outright (the definitions above cannot both be wrong the same way unnoticed)."""
    assert w._builtin_only([1, "a", (2.5, None)]) and not w._builtin_only([object()])
    assert not w._builtin_only(list(range(257))) and not w._builtin_only(_nested(10, 1))
    assert w._plain_json({"a": [1, "é"]}) and not w._plain_json({"a": (1,)}) and not w._plain_json([2**53 + 1])
    assert not w._plain_json(["\udcff"]) and not w._plain_json({1: "x"}) and not w._plain_json(_nested(65, 1))
    made = v.Value.of({"a": 1, "b": [1, 2]})
    assert (made.json, made.preview, made.type_name) == ('{"a": 1, "b": [1, 2]}', "{'a': 1, 'b': [1, 2]}", "dict")
