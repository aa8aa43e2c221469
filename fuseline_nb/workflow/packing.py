"""How a built :class:`~fuseline_nb.Workflow` pickles: compact, and without what another process can remake.

A workflow travels to worker processes (and into a DuckDB file's
definitions) as its steps and its schema. What building derived — the
wiring between step objects, per-step caches holding this process's object
ids and signatures, the edge table, the shapes — stays behind: the steps go
as ``(class, attributes)`` pairs without their links (a worker runs a step
by name, not by following ``>>``), the schema carries the edges, and the
receiving process remakes the rest on first use. A 1→1,000,000→1 fan-out
then pickles in a few seconds and without a deep recursion along the links.

Examples
--------
>>> import pickle
>>> from fuseline_nb import FunctionStep, Workflow
>>> a, b = FunctionStep(lambda: 1, name="a"), FunctionStep(lambda: 2, name="b")
>>> _ = a >> b
>>> wf = Workflow(outputs=[b])
>>> wf.to_schema() is not None
True
"""

from __future__ import annotations

import copy
from array import array
from operator import itemgetter
from typing import Any

from .columns import Column
from .schema import WorkflowSchema
from .steps import Step
from .structure import Edge, Structure, edge
from .wiring import link

#: What a step holds only to be wired and built in this process.
_LINKS = frozenset({"_out", "_in", "_out_keys"})
#: How steps held their links before ``wiring``: remade from ``_edges`` when older bytes load.
_OLD_LINKS = ("_edges", "_incoming", "_edge_keys", "_incoming_ids", "_params")
#: Derived by the kernel's workflow, remade where needed.
_DERIVED = ("_graph", "_bindings", "_plan", "_last_run", "_side_by_side")
_new = object.__new__
_set = object.__setattr__


def _plain(cls: type) -> bool:
    """Whether instances of ``cls`` pickle as ``(class, __dict__)`` (no reduce or state hook of their own)."""
    return (cls.__reduce_ex__ is object.__reduce_ex__ and cls.__reduce__ is object.__reduce__
            and getattr(cls, "__getstate__", object.__getstate__) is object.__getstate__
            and not hasattr(cls, "__setstate__") and "__slots__" not in cls.__dict__)


def pack_step(step: Step, plain: dict[type, bool]) -> Any:
    """``(class, attributes without links)``, or a stripped copy for a class with its own pickling."""
    cls = type(step)
    ok = plain.get(cls)
    if ok is None:
        ok = plain[cls] = _plain(cls)
    d = step.__dict__
    state = {k: v for k, v in d.items() if k not in _LINKS}
    if ok:
        return (cls, state)
    clone = copy.copy(step)
    clone.__dict__ = state
    return clone


def unpack_step(packed: Any) -> Step:
    """The step :func:`pack_step` packed."""
    if type(packed) is tuple:
        cls, state = packed
        step: Step = _new(cls)
        _set(step, "__dict__", state)
        return step
    return packed  # type: ignore[no-any-return]


def pack_steps(steps: list[Step]) -> tuple[Any, ...]:
    """Steps as columns: ``("columns", group of each step or None, groups)``.

    Steps of one class holding the same attributes (links aside) form a
    group: ``(class, attribute names, one Column per attribute)``, pickled
    without a container per step. Steps of a class with its own pickling
    go as stripped copies (:func:`pack_step`) in a group ``(None, None, copies)``.

    Examples
    --------
    >>> import pickle
    >>> from fuseline_nb import FunctionStep
    >>> steps = [FunctionStep(len, name="a"), FunctionStep(len, name="b")]
    >>> [s.name for s in unpack_steps(pickle.loads(pickle.dumps(pack_steps(steps))))]
    ['a', 'b']
    """
    plain: dict[type, bool] = {}
    if steps:  # most workflows: steps of one plain class holding the same attributes, one group
        cls = type(steps[0])
        names = list(map(tuple, map(vars, steps)))  # C-level passes, no Python code per step
        if (plain.setdefault(cls, _plain(cls)) and names.count(names[0]) == len(names)
                and list(map(type, steps)).count(cls) == len(steps)):
            keys = tuple(k for k in names[0] if k not in _LINKS)
            del names
            return ("columns", None, [(cls, keys, tuple(Column(steps, itemgetter(k), through=vars) for k in keys))])
        del names
    index: dict[tuple[type, tuple[str, ...]], int] = {}  # (class, every attribute name) -> group
    keyed: dict[tuple[type, tuple[str, ...]], int] = {}  # (class, attribute names sans links) -> group
    members: list[list[Any]] = []
    kinds: list[tuple[type, tuple[str, ...]] | None] = []
    gids: array[int] | None = None
    for i, step in enumerate(steps):
        cls = type(step)
        raw = (cls, tuple(step.__dict__))
        g = index.get(raw)
        if g is None:
            ok = plain.get(cls)
            if ok is None:
                ok = plain[cls] = _plain(cls)
            kind = (cls, tuple(k for k in raw[1] if k not in _LINKS)) if ok else None
            g = keyed.get(kind) if kind is not None else None  # type: ignore[arg-type]
            if g is None:
                g = len(members)
                members.append([])
                kinds.append(kind)
                if kind is not None:
                    keyed[kind] = g
            index[raw] = g
        if g and gids is None:
            gids = array("I", bytes(4 * i))  # every earlier step was in group 0
        if gids is not None:
            gids.append(g)
        members[g].append(step if kinds[g] is not None else pack_step(step, plain))
    groups: list[tuple[Any, ...]] = []
    for kind, group in zip(kinds, members, strict=True):
        if kind is None:
            groups.append((None, None, group))
        else:
            cls, keys = kind
            groups.append((cls, keys, tuple(Column(group, itemgetter(k), through=vars) for k in keys)))
    return ("columns", gids, groups)


def unpack_steps(packed: Any) -> list[Step]:
    """The steps :func:`pack_steps` packed, in their order (a list of :func:`pack_step` results too)."""
    if isinstance(packed, list):  # pickled a step at a time (before columns)
        return list(map(unpack_step, packed))
    _, gids, groups = packed
    made = [list(columns) if cls is None else _made(cls, keys, columns) for cls, keys, columns in groups]
    if gids is None:
        return made[0] if made else []
    its = [iter(m) for m in made]
    return [next(its[g]) for g in gids]


def _made(cls: type, keys: tuple[str, ...], columns: tuple[list[Any], ...]) -> list[Step]:
    new, put = _new, _set
    steps: list[Step] = []
    add = steps.append
    for values in zip(*columns, strict=True):  # one value per key: a column per key
        step: Step = new(cls)
        put(step, "__dict__", dict(zip(keys, values, strict=False)))
        add(step)
    return steps


def pack(wf: Any) -> dict[str, Any]:
    """The pickled state of a workflow (``Workflow.__getstate__``)."""
    state = dict(wf.__dict__)
    for key in _DERIVED:
        state.pop(key, None)
    st: Structure = wf._structure
    state["steps"] = pack_steps(list(st.steps.values()))
    state["outputs"] = None  # the output steps, by name (output_names)
    keep_edges = wf._schema_cache is None  # the schema carries the edges; without it, they travel
    state["_structure"] = (st.order, st.deps, st.group_param, st.output_names, st.branching, st.acyclic,
                           st.edges if keep_edges else None)
    return state


def unpack(wf: Any, state: dict[str, Any]) -> None:
    """Restore a workflow from :func:`pack`'s state (``Workflow.__setstate__``)."""
    if not isinstance(state.get("_structure"), tuple):  # pickled before packing existed: as it was
        wf.__dict__.update(state)
        if not isinstance(state.get("_structure"), Structure):  # an older layout: build it again
            cache = state.get("_schema_cache")
            _relink(wf.outputs)
            wf._build()
            wf._schema_cache = cache
        return
    order, deps, group_param, output_names, branching, acyclic, edges = state.pop("_structure")
    steps = dict(zip(order, unpack_steps(state.pop("steps")), strict=True))
    wf.__dict__.update(state)
    wf.steps = steps
    wf.outputs = [steps[n] for n in output_names]
    wf._structure = Structure(steps, order, edges, deps, group_param, None, output_names, branching, acyclic)
    wf._graph = wf._bindings = wf._plan = None


def _relink(outputs: list[Step]) -> None:
    """Give steps pickled with their links in ``_edges`` lists (before ``wiring``) today's links."""
    seen: set[int] = set()
    work = list(outputs)
    while work:
        s = work.pop()
        if id(s) in seen:
            continue
        seen.add(id(s))
        d = s.__dict__
        old = d.get("_edges") or ()
        work.extend(d.get("_incoming") or ())
        for key in _OLD_LINKS:
            d.pop(key, None)
        for t, action, group in old:
            link(s, t, action, group)
            work.append(t)


def complete(st: Structure, schema: WorkflowSchema | None) -> Structure:
    """Remake what :func:`pack` left behind (shapes; edges from the schema) before they are read.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> from fuseline_nb.workflow.structure import build
    >>> s = build([FunctionStep(len, name="n")])
    >>> complete(s, None) is s
    True
    """
    if st.shapes is None:
        from .binding import shape_of

        st.shapes = [shape_of(st.steps[n]) for n in st.order]
    if st.items is None:
        if schema is None:
            raise RuntimeError("a workflow unpickled without its schema has no edges")  # pack keeps them then
        edges: dict[tuple[str, str], Edge] = {}
        for e in schema.edges:
            found = edges.get((e.source, e.target))
            if found is None:
                edges[(e.source, e.target)] = edge(e.action, e.group)
            elif e.action not in found[0]:
                edges[(e.source, e.target)] = ((*found[0], e.action), found[1])
        st.edges = edges
    return st


__all__ = ["complete", "pack", "pack_step", "pack_steps", "unpack", "unpack_step", "unpack_steps"]
