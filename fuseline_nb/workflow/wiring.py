"""How a step holds its links (``a >> b``, ``(a - "x") >> b``, ``(a | b) >> c``): compactly, in two attributes.

A workflow of a million steps is mostly steps with one link in and one out,
so a step stores its links without a container when it has one:

- ``_out``: ``None``, one *entry*, or a list of entries. An entry is the
  target step itself for a plain edge (action ``"default"``, no OR group),
  else the tuple ``(target, action, group)``.
- ``_in``: ``None``, the one source step, or a list of the source steps
  (each once, whatever the number of edges between the two).

A repeated edge is a no-op, found in O(1) for the usual shapes: whether
``source`` already links to ``target`` is answered by the shorter of the
source's out-links and the target's in-links (a fan-out's hub has many,
each spoke one), and only a step whose links are long on both sides — or
that repeats an edge to one of its many targets — gets an index of its
out-links (``_out_keys``).

Examples
--------
>>> from fuseline_nb import FunctionStep
>>> a, b = FunctionStep(len, name="a"), FunctionStep(len, name="b")
>>> link(a, b, "default", None); link(a, b, "default", None); link(a, b, "other", None)
>>> [(t.name, action) for t, action, _ in out_edges(a)], [s.name for s in sources(b)]
([('b', 'default'), ('b', 'other')], ['a'])
"""

from __future__ import annotations

from typing import Any

from .schema import DEFAULT_ACTION

#: Attributes the model keeps on a step instance to wire it into graphs (edges,
#: names, cached signatures, states, policies). They do not change what the step
#: computes, and some hold object ids, so code fingerprints leave them out: a new
#: attribute of this kind belongs here.
WIRING_ATTRIBUTES = frozenset({
    "_out", "_in", "_out_keys", "_auto_name",
    "name", "state", "policies", "code_version", "cache",
    # set by building (Fuseline's depth) and by running (the attempt counter)
    "execution_group", "cur_retry",
})


#: Link lists up to this long are scanned; a longer one on both sides gets an index.
_SCAN = 8


def link(source: Any, target: Any, action: str, group: str | None) -> None:
    """Add the edge ``source -> target`` taken on ``action`` in OR group ``group`` (a repeat does nothing)."""
    entry = target if group is None and action == DEFAULT_ACTION else (target, action, group)
    out = source._out
    ins = target._in
    if out is None or (ins is None and source._out_keys is None):  # surely a first edge between the two
        # (the usual case, spelled out: building a million-step workflow makes a million of these)
        if out is None:
            source._out = entry
        elif type(out) is list:
            out.append(entry)
        else:
            source._out = [out, entry]
        if ins is None:
            target._in = source
        else:
            _add_source(target, source)
        return
    keys = source._out_keys
    if keys is None:
        first = not _linked(source, out, target)  # indexes the out-links when both sides are long
        keys = source._out_keys
        if keys is None and not first:
            if type(out) is not list or len(out) <= _SCAN:
                if _holds(out, target, action, group):
                    return
            else:  # a repeat among many out-links: index them once
                keys = _index(source, out)
    if keys is not None:
        pairs = keys.get(id(target))
        if pairs is not None and (action, group) in pairs:
            return
        keys[id(target)] = ((action, group),) if pairs is None else (*pairs, (action, group))
        first = pairs is None
    if type(out) is list:
        out.append(entry)
    else:
        source._out = [out, entry]
    if first:
        _add_source(target, source)


def _add_source(target: Any, source: Any) -> None:
    ins = target._in
    if ins is None:
        target._in = source
    elif type(ins) is list:
        ins.append(source)
    else:
        target._in = [ins, source]


def _target(entry: Any) -> Any:
    return entry[0] if type(entry) is tuple else entry


def _linked(source: Any, out: Any, target: Any) -> bool:
    """Whether ``source`` has some edge to ``target`` (out-links unindexed), reading the shorter side."""
    ins = target._in
    if ins is None:
        return False
    if type(ins) is not list:
        return ins is source
    if type(out) is not list:
        return _target(out) is target
    if len(ins) <= len(out):
        if len(ins) <= _SCAN:
            return any(s is source for s in ins)
    elif len(out) <= _SCAN:
        return any(_target(e) is target for e in out)
    return id(target) in _index(source, out)  # long on both sides: index the source's out-links once


def _holds(out: Any, target: Any, action: str, group: str | None) -> bool:
    """Whether the (few) out-links ``out`` hold this very edge to ``target``."""
    for e in out if type(out) is list else (out,):
        if type(e) is tuple:
            if e[0] is target and e[1] == action and e[2] == group:
                return True
        elif e is target and group is None and action == DEFAULT_ACTION:
            return True
    return False


def _index(source: Any, out: list[Any]) -> dict[int, tuple[tuple[str, str | None], ...]]:
    keys: dict[int, tuple[tuple[str, str | None], ...]] = {}
    for t, action, group in _triples(out):
        pairs = keys.get(id(t))
        keys[id(t)] = ((action, group),) if pairs is None else (*pairs, (action, group))
    source._out_keys = keys
    return keys


def _triples(out: Any) -> list[tuple[Any, str, str | None]]:
    if out is None:
        return []
    return [e if type(e) is tuple else (e, DEFAULT_ACTION, None) for e in (out if type(out) is list else (out,))]


def out_edges(step: Any) -> list[tuple[Any, str, str | None]]:
    """``step``'s outgoing edges as ``(target, action, group)``, in the order they were declared.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> a, b = FunctionStep(len, name="a"), FunctionStep(len, name="b")
    >>> out_edges(a)
    []
    >>> _ = (a - "big") >> b
    >>> out_edges(a) == [(b, "big", None)]
    True
    """
    return _triples(step._out)


def targets(step: Any) -> list[Any]:
    """The target of each of ``step``'s outgoing edges (a target twice when two edges go to it).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> a, b = FunctionStep(len, name="a"), FunctionStep(len, name="b")
    >>> _ = a >> b
    >>> targets(a) == [b]
    True
    """
    out = step._out
    if out is None:
        return []
    return [_target(e) for e in (out if type(out) is list else (out,))]


def sources(step: Any) -> list[Any]:
    """The steps with an edge into ``step``, each once, in the order they were linked.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> a, b = FunctionStep(len, name="a"), FunctionStep(len, name="b")
    >>> _ = a >> b
    >>> sources(b) == [a], sources(a)
    (True, [])
    """
    ins = step._in
    if ins is None:
        return []
    return list(ins) if type(ins) is list else [ins]


def is_linked(step: Any) -> bool:
    """Whether ``step`` has any edge, in or out.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> is_linked(FunctionStep(len))
    False
    """
    return step._out is not None or step._in is not None


__all__ = ["is_linked", "link", "out_edges", "sources", "targets"]
