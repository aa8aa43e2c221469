"""Draw a workflow with Graphviz: steps, labelled branches, OR groups, state colours.

:func:`draw` returns a :class:`graphviz.Digraph`; a notebook shows it as SVG,
and ``.source`` is its DOT text. Nodes are the step names. An edge taken
only for an action carries that action as its label. The members of an OR
group meet in a small dashed ``any of`` node before their target, so a
reader sees that one of them is enough. With ``states``, nodes are filled by
state and a legend counts them. A workflow larger than ``max_nodes`` draws
its first steps (in topological order) and folds the rest into one ``… N
more steps`` node, and the drawing says so.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow, draw
>>> a, b, c = (FunctionStep(lambda: 1, name=n) for n in ("review", "publish", "archive"))
>>> _ = (a - "approve") >> b
>>> _ = (a - "reject") >> c
>>> dot = draw(Workflow(outputs=[b]), states={"review": "SUCCEEDED"})
>>> 'n0 -> n1 [label=approve]' in dot.source  # nodes are n0, n1, ... labelled by name
True
>>> 'fillcolor="#8ce99a"' in dot.source
True
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..workflow.schema import DEFAULT_ACTION, WorkflowSchema
from .palette import FILL, NEUTRAL_FILL, VIEW_STATES, aggregate_state, count_states, normalize_states

#: Above this many steps a drawing folds the rest into one node.
DEFAULT_MAX_NODES: Final = 150
#: Ranks per row before a left-to-right drawing folds (long chains wrap).
DEFAULT_WRAP: Final = 10
RANKDIRS: Final = ("LR", "TB", "RL", "BT")
_FONT: Final = "Helvetica"


@dataclass
class Drawing:
    """What :func:`layout_plan` decided: which steps get a node, and the node ids.

    ``node_ids[k]`` is the SVG id of ``shown[k]``; ``more_id`` is the id of
    the folded node (``None`` when every step is shown).

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import StepSchema
    >>> s = WorkflowSchema("w", steps=tuple(StepSchema(n) for n in "abc"))
    >>> d = layout_plan(s, max_nodes=2, id_prefix="x")
    >>> d.shown, d.hidden, d.more_id
    (('a', 'b'), ('c',), 'xmore')
    """

    schema: WorkflowSchema
    shown: tuple[str, ...]
    hidden: tuple[str, ...]
    node_ids: tuple[str, ...]
    more_id: str | None
    id_prefix: str = "n"
    edges: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    groups: dict[tuple[str, str], str | None] = field(default_factory=dict)

    @property
    def paint_ids(self) -> tuple[str, ...]:
        """Ids of every node a state colours: the shown steps, then the folded node."""
        return self.node_ids + ((self.more_id,) if self.more_id else ())

    def fills(self, states: Mapping[str, str]) -> list[str]:
        """The fill of each node of :attr:`paint_ids` for ``states`` (name → view state)."""
        out = [FILL[states.get(n, "PENDING")] for n in self.shown]
        if self.more_id:
            out.append(FILL[aggregate_state(states.get(n, "PENDING") for n in self.hidden)])
        return out


def schema_of(obj: Any) -> WorkflowSchema:
    """The :class:`WorkflowSchema` of a workflow, or the schema itself.

    Examples
    --------
    >>> schema_of(WorkflowSchema("w")).workflow_id
    'w'
    """
    if isinstance(obj, WorkflowSchema):
        return obj
    to_schema = getattr(obj, "to_schema", None)
    if callable(to_schema):
        schema = to_schema()
        if isinstance(schema, WorkflowSchema):
            return schema
    raise TypeError(f"draw() takes a Workflow or a WorkflowSchema, not {obj!r}")


def layout_plan(schema: WorkflowSchema, *, max_nodes: int = DEFAULT_MAX_NODES, id_prefix: str = "n") -> Drawing:
    """Decide which steps get a node (the first ``max_nodes`` in topological order).

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import StepSchema
    >>> layout_plan(WorkflowSchema("w", steps=(StepSchema("a"),))).node_ids
    ('n0',)
    """
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, not {max_nodes!r}")
    names = schema.step_names
    shown, hidden = names[:max_nodes], names[max_nodes:]
    edges: dict[tuple[str, str], list[str]] = {}
    groups: dict[tuple[str, str], str | None] = {}
    for e in schema.edges:
        acts = edges.setdefault((e.source, e.target), [])
        if e.action not in acts:
            acts.append(e.action)
        groups[(e.source, e.target)] = e.group
    return Drawing(
        schema, shown, hidden, tuple(f"{id_prefix}{k}" for k in range(len(shown))),
        f"{id_prefix}more" if hidden else None, id_prefix, edges, groups,
    )


def _edge_label(actions: list[str]) -> str | None:
    named = [a for a in actions if a != DEFAULT_ACTION]
    if not named:
        return None
    return " | ".join(actions)


def _legend_label(states: Mapping[str, str], note: str = "") -> str:
    counts = count_states(states.values())
    cells = "".join(
        f'<TD BGCOLOR="{FILL[s]}">{s.lower()} {counts[s]}</TD>' for s in VIEW_STATES if counts[s]
    )
    extra = f'<TR><TD COLSPAN="{max(sum(1 for s in VIEW_STATES if counts[s]), 1)}" BORDER="0">{note}</TD></TR>' \
        if note else ""
    return (f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3"><TR>{cells}</TR>'
            f"{extra}</TABLE>>")


def depths(drawing: Drawing) -> dict[str, int]:
    """Longest-path depth of each shown step (its column in a left-to-right drawing).

    Examples
    --------
    >>> from fuseline_nb.examples import tour
    >>> d = depths(layout_plan(tour.to_schema()))
    >>> d["Validate"] < d["Total"]
    True
    """
    shown = set(drawing.shown)
    depth = dict.fromkeys(drawing.shown, 0)
    incoming: dict[str, list[str]] = {}
    for u, v in drawing.edges:
        if u in shown and v in shown:
            incoming.setdefault(v, []).append(u)
    for name in drawing.shown:  # topological order
        for u in incoming.get(name, ()):
            depth[name] = max(depth[name], depth[u] + 1)
    return depth


def wrapped_edges(drawing: Drawing, wrap: int) -> set[tuple[str, str]]:
    """Edges that cross from one row to the next when columns fold every ``wrap`` ranks.

    Graphviz lays them out without rank constraints, so a long chain folds
    into rows of ``wrap`` steps instead of one line thousands of pixels wide.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import EdgeSchema, StepSchema
    >>> names = [f"s{i}" for i in range(5)]
    >>> schema = WorkflowSchema("w", steps=tuple(StepSchema(n) for n in names),
    ...                         edges=tuple(EdgeSchema(a, b) for a, b in zip(names, names[1:])))
    >>> sorted(wrapped_edges(layout_plan(schema), 2))
    [('s1', 's2'), ('s3', 's4')]
    """
    if wrap < 1:
        raise ValueError(f"wrap must be >= 1, not {wrap!r}")
    depth = depths(drawing)
    if max(depth.values(), default=0) < wrap:
        return set()
    return {(u, v) for u, v in drawing.edges
            if u in depth and v in depth and depth[u] // wrap != depth[v] // wrap}


def build(
    drawing: Drawing,
    states: Mapping[str, str] | None = None,
    *,
    rankdir: str = "LR",
    legend: bool | None = None,
    wrap: int = DEFAULT_WRAP,
    show_inputs: bool = False,
) -> Any:
    """The :class:`graphviz.Digraph` of a :class:`Drawing` (see :func:`draw`).

    ``states`` maps step names to view states (``None``: no colours).

    Examples
    --------
    >>> from fuseline_nb.examples import tour
    >>> dot = build(layout_plan(tour.to_schema(), id_prefix="v"), {"Total": "RUNNING"}, legend=False)
    >>> 'v3 [label=Total fillcolor="#74c0fc"' in dot.source, "TABLE" in dot.source
    (True, False)
    """
    import graphviz

    if rankdir not in RANKDIRS:
        raise ValueError(f"unknown rankdir: {rankdir!r} (must be one of {list(RANKDIRS)})")
    schema = drawing.schema
    dot = graphviz.Digraph(schema.workflow_id)
    dot.attr(rankdir=rankdir, fontname=_FONT, fontsize="11", nodesep="0.25", ranksep="0.4")
    dot.attr("node", shape="box", style="rounded,filled", fontname=_FONT, fontsize="11",
             height="0.3", margin="0.12,0.04")
    dot.attr("edge", fontname=_FONT, fontsize="9", arrowsize="0.6")
    fills = drawing.fills(states) if states is not None else None
    kinds = {s.name: s for s in schema.steps}
    outputs = set(schema.outputs)
    for k, (name, node_id) in enumerate(zip(drawing.shown, drawing.node_ids, strict=True)):
        step = kinds[name]
        extra = {"peripheries": "2"} if name in outputs else {}
        kind = f"{step.kind}, conditional" if step.conditional else step.kind
        tip = f"{name} ({kind})" + (f" {step.target}" if step.target else "")
        # DOT names are the ids: a step name may hold ':' or quotes that DOT would misread.
        dot.node(node_id, name, id=node_id, fillcolor=fills[k] if fills else NEUTRAL_FILL, tooltip=tip,
                 **extra)
    note = ""
    if drawing.more_id:
        dot.node(drawing.more_id, f"… {len(drawing.hidden):,} more steps", id=drawing.more_id,
                 style="rounded,filled,dashed", fillcolor=fills[-1] if fills else NEUTRAL_FILL)
        note = (f"showing {len(drawing.shown):,} of {len(schema.steps):,} steps "
                f"(draw(..., max_nodes={len(schema.steps)}) shows all)")
    loose = wrapped_edges(drawing, wrap) if rankdir in ("LR", "RL") else set()
    _add_edges(dot, drawing, loose)
    if show_inputs:
        _add_inputs(dot, drawing)
    if states is not None and legend is not False:
        # The legend is the graph's label: below the drawing, outside the flow of nodes.
        every = {n: states.get(n, "PENDING") for n in schema.step_names}
        dot.attr(label=_legend_label(every, html.escape(note)), labelloc="b", labeljust="l", fontsize="10")
    elif note:
        dot.attr(label=note, labelloc="b", fontsize="10")
    return dot


def _add_inputs(dot: Any, drawing: Drawing) -> None:
    """Small input nodes, one per run input a shown step reads, with a dotted edge to each reader."""
    ids = dict(zip(drawing.shown, drawing.node_ids, strict=True))
    made: dict[str, str] = {}
    for step in drawing.schema.steps:
        if step.name not in ids:
            continue
        for name in step.reads if step.reads is not None else step.inputs:
            node = made.get(name)
            if node is None:
                node = made[name] = f"{drawing.id_prefix}in{len(made)}"
                dot.node(node, name, id=node, shape="cds", style="filled", fillcolor="#f1f3f5",
                         fontsize="9", height="0.2", margin="0.04,0.02", tooltip=f"run input {name}")
            dot.edge(node, ids[step.name], style="dotted", arrowsize="0.4")


def _add_edges(dot: Any, drawing: Drawing, loose: set[tuple[str, str]] | None = None) -> None:
    ids = dict(zip(drawing.shown, drawing.node_ids, strict=True))
    free = {"constraint": "false"}
    to_more: set[str] = set()
    junctions: dict[str, str] = {}
    for (u, v), actions in drawing.edges.items():
        if u not in ids:
            continue
        label = _edge_label(actions)
        if v not in ids:
            if drawing.more_id and u not in to_more:
                to_more.add(u)
                dot.edge(ids[u], drawing.more_id, style="dashed")
            continue
        group = drawing.groups.get((u, v))
        extra = free if loose and (u, v) in loose else {}
        if group is None:
            dot.edge(ids[u], ids[v], label=label, **extra)
            continue
        junction = junctions.get(group)
        if junction is None:
            junction = junctions[group] = f"{drawing.id_prefix}or{len(junctions)}"
            dot.node(junction, "any of", id=junction, style="rounded,dashed,filled", fillcolor="white",
                     fontsize="9", height="0.2", margin="0.05,0.02", tooltip=f"OR group {group}: any of")
            dot.edge(junction, ids[v], style="dashed")
        dot.edge(ids[u], junction, label=label, style="dashed", **extra)


def draw(
    workflow: Any,
    states: Any = None,
    *,
    rankdir: str = "LR",
    max_nodes: int = DEFAULT_MAX_NODES,
    legend: bool | None = None,
    wrap: int = DEFAULT_WRAP,
    show_inputs: bool = False,
) -> Any:
    """Draw ``workflow`` (a Workflow or WorkflowSchema) as a :class:`graphviz.Digraph`.

    Parameters
    ----------
    workflow:
        A :class:`~fuseline_nb.Workflow` or :class:`~fuseline_nb.WorkflowSchema`.
    states:
        Optional states to colour nodes by: a :class:`~fuseline_nb.RunInfo`
        or a mapping of step name to ``Status``, state string or
        ``StepInfo``. Steps missing from it count as PENDING.
    rankdir:
        Graphviz direction: ``"LR"`` (left to right), ``"TB"``, ``"RL"`` or ``"BT"``.
    max_nodes:
        Draw at most this many steps; the rest fold into one node.
    legend:
        Show the state legend below the drawing (default: when ``states`` is given).
    wrap:
        Left-to-right drawings deeper than this many steps fold into rows of
        ``wrap`` columns, so long chains fit a notebook cell.
    show_inputs:
        Draw each run input a step reads as a small input node.

    Raises
    ------
    ValueError
        An unknown ``rankdir`` or state.
    TypeError
        ``workflow`` is neither a Workflow nor a schema.

    Examples
    --------
    >>> from fuseline_nb.examples import tour
    >>> dot = draw(tour, {"Validate": "SUCCEEDED", "Reject": "SKIPPED"})
    >>> 'n2 [label=Validate fillcolor="#8ce99a"' in dot.source
    True
    >>> "n2 -> n7 [label=reject]" in dot.source, 'label="any of"' in dot.source
    (True, True)
    >>> draw(tour, rankdir="up")
    Traceback (most recent call last):
    ValueError: unknown rankdir: 'up' (must be one of ['LR', 'TB', 'RL', 'BT'])
    """
    schema = schema_of(workflow)
    plan = layout_plan(schema, max_nodes=max_nodes)
    colours = normalize_states(states) if states is not None else None
    return build(plan, colours, rankdir=rankdir, legend=legend, wrap=wrap, show_inputs=show_inputs)


__all__ = [
    "Drawing",
    "build",
    "depths",
    "draw",
    "layout_plan",
    "schema_of",
    "wrapped_edges",
]
