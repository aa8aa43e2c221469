"""A workflow's structure, built from its output steps: order, names, edges, depths.

:func:`build` is what ``Workflow(outputs=...)`` does first. It touches each
step and edge a small, fixed number of times (no networkx, no signature
walk per step), so building stays a few µs per step and linear.

Examples
--------
>>> from fuseline_nb import FunctionStep
>>> a, b, c = (FunctionStep(lambda: 1, name=n) for n in "abc")
>>> _ = (a - "left") >> b
>>> _ = (a - "right") >> c
>>> s = build([b])
>>> s.order, s.edges[("a", "c")], s.branching
(['a', 'b', 'c'], (('right',), None), True)
"""

from __future__ import annotations

import hashlib
import json
from operator import itemgetter
from typing import Any

from .binding import Shape, shape_of
from .collect import Resolver, assign_names, collect, topological
from .schema import DEFAULT_ACTION
from .steps import Step

#: ``json.dumps(body, sort_keys=True)`` (the same text) without the circularity check.
_ENCODE = json.JSONEncoder(sort_keys=True, check_circular=False).encode

#: An edge table's item's ``(source, target)``: what it is sorted by.
_SOURCE_TARGET = itemgetter(0)

#: An edge's facts: ``(actions, group)``.
Edge = tuple[tuple[str, ...], "str | None"]
#: The plain edge (``a >> b``), one object shared by all of them.
PLAIN: Edge = ((DEFAULT_ACTION,), None)


def edge(action: str, group: str | None) -> Edge:
    """The facts of an edge taken on ``action``, in OR group ``group`` (the plain one shared)."""
    return PLAIN if group is None and action == DEFAULT_ACTION else ((action,), group)


class Structure:
    """What :func:`build` finds; the :class:`~fuseline_nb.Workflow` keeps it.

    ``edges`` maps ``(source, target)`` to ``(actions, group)``; ``deps`` and
    ``group_param`` hold, for the steps that have ``Depends(...)``
    parameters only, each parameter's source steps and OR-group id;
    ``branching`` says whether any edge carries an action other than
    ``"default"`` (only then can an AND join be impossible). ``edges`` and
    ``shapes`` are ``None`` in a workflow unpickled in another process until
    :func:`~fuseline_nb.workflow.packing.complete` remakes them.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> s = build([FunctionStep(lambda: 1, name="one")])
    >>> s.order, s.output_names, s.acyclic
    (['one'], ['one'], True)
    """

    __slots__ = ("acyclic", "branching", "deps", "group_param", "items", "order", "output_names", "shapes",
                 "steps")

    def __init__(self, steps: dict[str, Step], order: list[str], edges: dict[tuple[str, str], Edge] | None,
                 deps: dict[str, dict[str, tuple[str, ...]]], group_param: dict[str, dict[str, str]],
                 shapes: list[Shape] | None, output_names: list[str], branching: bool, acyclic: bool) -> None:
        self.steps = steps
        self.order = order
        #: The edge table sorted by ``(source, target)``: ``((source, target), (actions, group))`` pairs
        #: (``None`` once the schema holds the edges, or in an unpickled workflow).
        self.items: list[tuple[tuple[str, str], Edge]] | None = None
        self.edges = edges
        self.deps = deps
        self.group_param = group_param
        self.shapes = shapes
        self.output_names = output_names
        self.branching = branching
        self.acyclic = acyclic

    @property
    def edges(self) -> dict[tuple[str, str], Edge] | None:
        """``{(source, target): (actions, group)}`` (a dict made from :attr:`items` on each read)."""
        return None if self.items is None else dict(self.items)

    @edges.setter
    def edges(self, edges: dict[tuple[str, str], Edge] | None) -> None:
        # Sorted once, here: the structure key and the schema read the edges in this order, and
        # reading them side by side beats looking each one up (a million-entry table read at random).
        self.items = None if edges is None else sorted(edges.items(), key=_SOURCE_TARGET)

    def structure_key(self) -> str:
        """:meth:`WorkflowSchema.structure_key` of this structure (the same digest).

        Examples
        --------
        >>> from fuseline_nb import FunctionStep
        >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema
        >>> key = build([FunctionStep(lambda: 1, name="one")]).structure_key()
        >>> key == WorkflowSchema("w", steps=(StepSchema("one", kind="function"),), outputs=("one",)).structure_key()
        True
        """
        assert self.shapes is not None and self.items is not None  # packing.complete() remakes them
        # names are unique: sorting the triples sorts by name
        steps = sorted(zip(self.order, [s.kind for s in self.steps.values()],
                           [shape.conditional for shape in self.shapes], strict=True))
        return canonical_digest({"steps": steps, "edges": self.key_edges(), "outputs": sorted(self.output_names)})

    def sorted_edges(self) -> list[tuple[tuple[str, str], Edge]]:
        """The edges sorted by ``(source, target)``: :attr:`items` (the schema reads them in this order)."""
        assert self.items is not None  # packing.complete() remakes them
        return self.items

    def key_edges(self) -> list[tuple[str, str, str, str]]:
        """The edges of the structure key: ``(source, target, action, group or "")``, sorted."""
        assert self.items is not None  # packing.complete() remakes them
        out: list[tuple[str, str, str, str]] = []
        add = out.append
        for (u, v), (actions, group) in self.items:  # sorted by (u, v), each pair once: only actions to sort
            if len(actions) == 1:
                add((u, v, actions[0], group or ""))
            else:
                g = group or ""
                out.extend((u, v, a, g) for a in sorted(actions))
        return out


def canonical_digest(body: dict[str, list[Any]]) -> str:
    """``key_digest(json.dumps(body, sort_keys=True))`` for a dict of lists, hashed a slice of each
    list at a time: the same digest without the whole text (~100 bytes a step) and its bytes at once.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import key_digest
    >>> body = {"steps": [("a", "function", False)], "edges": [("a", "b", "é", "")], "outputs": []}
    >>> canonical_digest(body) == key_digest(json.dumps(body, sort_keys=True))
    True
    """
    h = hashlib.sha256()
    update = h.update
    update(b"{")
    for i, key in enumerate(sorted(body)):
        update(b'%s%s: [' % (b", " if i else b"", _ENCODE(key).encode()))
        items = body[key]
        for at in range(0, len(items), _SLICE):
            text = _ENCODE(items[at:at + _SLICE])[1:-1]  # the items without their brackets
            update(b"%s%s" % (b", " if at else b"", text.encode()))
        update(b"]")
    update(b"}")
    return h.hexdigest()


#: Items of a list encoded (and hashed) at a time by :func:`canonical_digest`.
_SLICE = 4096


def build(outputs: list[Step]) -> Structure:
    """Collect, order, name and wire the steps linked to ``outputs``.

    Sets each step's ``name`` (derived names) and ``execution_group`` (its
    depth: roots 0, else one more than its deepest parent). On a cycle the
    structure comes back with ``acyclic`` false and the steps in discovery
    order; the caller names the cycle.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> a, b = FunctionStep(lambda: 1, name="a"), FunctionStep(lambda: 2, name="b")
    >>> _ = a >> b
    >>> s = build([b])
    >>> s.order, b.execution_group
    (['a', 'b'], 1)
    """
    steps, index, shapes = collect(outputs)
    deps: dict[int, dict[str, tuple[Step, ...]]] = {}
    resolve: Resolver | None = None
    n_collected = len(steps)
    i = 0
    while i < len(steps):  # resolve may append instances of Step classes
        if i >= n_collected or shapes[i].depends:
            s = steps[i]
            if shape_of(s).depends:
                if resolve is None:
                    resolve = Resolver(steps)
                deps[id(s)] = {p: tuple(resolve(d, s, p) for d in dep.steps) for p, dep in s.dependencies()}
        i += 1
    if len(steps) > n_collected:  # Depends pulled in new steps: collect what they link to
        steps, index, shapes = collect(outputs + steps)
    at: list[int] = []
    ordered, depth = topological(steps, index, deps, at)
    acyclic = ordered is not None
    if ordered is not None:
        shapes = [shapes[k] for k in at]
        steps = ordered
    by_name = assign_names(steps)  # from here on, each step's name is its name in this workflow
    edges: dict[tuple[str, str], Edge] = {}
    raw_groups: set[str] = set()
    branching = False
    if depth is not None:
        for s, d in zip(steps, depth, strict=True):
            s.execution_group = d
    for s in steps:
        out = s._out
        if out is None:
            continue
        u: Any = s.name
        if type(out) is not list:
            if type(out) is not tuple:  # one plain edge: most steps
                edges[(u, out.name)] = PLAIN
                continue
            out = (out,)
        for e in out:
            if type(e) is not tuple:
                uv = (u, e.name)
                if uv not in edges:
                    edges[uv] = PLAIN
                elif DEFAULT_ACTION not in edges[uv][0]:
                    edges[uv] = ((*edges[uv][0], DEFAULT_ACTION), edges[uv][1])
                continue
            t, action, group = e
            uv = (u, t.name)
            found = edges.get(uv)
            if found is None:
                edges[uv] = edge(action, group)
            elif action not in found[0]:
                edges[uv] = ((*found[0], action), found[1])
            if group is not None:
                raw_groups.add(group)
            if action != DEFAULT_ACTION:
                branching = True
    if raw_groups:
        _name_groups(edges, raw_groups)
    dep_names: dict[str, dict[str, tuple[str, ...]]] = {}
    group_param: dict[str, dict[str, str]] = {}
    for s in steps if deps else ():
        found_deps = deps.get(id(s))
        if not found_deps:
            continue
        v: Any = s.name
        mine = dep_names[v] = {}
        groups = group_param[v] = {}
        for param, srcs in found_deps.items():
            src_names = tuple(d.name for d in srcs)
            mine[param] = src_names  # type: ignore[assignment]
            group = f"{v}.{param}" if len(src_names) > 1 else None
            if group:
                groups[param] = group
            for u in src_names:
                uv = (u, v)
                found = edges.get(uv)
                if found is None:
                    edges[uv] = edge(DEFAULT_ACTION, group)
                elif group is not None:
                    edges[uv] = (found[0], group)
    return Structure(by_name, [*by_name], edges, dep_names, group_param, shapes,
                     [o.name for o in outputs], branching, acyclic)  # type: ignore[misc]


def _name_groups(edges: dict[tuple[str, str], Edge], raw_groups: set[str]) -> None:
    """OR groups from ``(a | b) >> c`` get ids derived from their members, so the
    same code gives the same schema in every process."""
    into: dict[str, list[str]] = {}
    for u, v in edges:
        into.setdefault(v, []).append(u)
    members: dict[tuple[str, str], str] = {}
    canonical: dict[tuple[str, str], str] = {}
    for (u, v), e in edges.items():
        if e[1] in raw_groups:
            key = (v, e[1])
            if key not in members:
                inside = sorted(x for x in into[v] if edges[(x, v)][1] == e[1])
                members[key] = f"{v}:any({','.join(inside)})"
            canonical[(u, v)] = members[key]
    for uv, group in canonical.items():
        edges[uv] = (edges[uv][0], group)


__all__ = ["Structure", "build", "canonical_digest", "edge"]
