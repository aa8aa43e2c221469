"""The laid-out graph of a run view, and its static snapshot for frontends without widgets.

The graph is laid out by Graphviz once, when the :class:`Layout` is made;
afterwards a view only recolours nodes: the browser by node id, the static
snapshot through :class:`PaintableSVG`.

Examples
--------
>>> from fuseline_nb.examples import tour
>>> from fuseline_nb.views.runstate import RunState
>>> layout = Layout(tour.to_schema(), run_id="r1")
>>> rs = RunState(tour.step_names)
>>> rs.steps["Validate"].state = "RUNNING"
>>> "running 1" in layout.snapshot_html(rs)
True
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping
from typing import Any

from ..errors import UnknownWorkflowError
from ..workflow.schema import WorkflowSchema
from .display import render_svg
from .draw import DEFAULT_MAX_NODES, build, layout_plan
from .render import counts_html, counts_text, graph_html, header_html, legend_html, table_html, table_text
from .runstate import RunState
from .svgpaint import PaintableSVG


def broker_of(obj: Any) -> Any:
    """The broker behind a Session, a client, or the broker itself.

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> b = MemoryBroker()
    >>> broker_of(b) is b
    True
    """
    inner = getattr(obj, "broker", None)
    return inner if inner is not None and callable(getattr(inner, "get_run", None)) else obj


def schema_for(broker: Any, workflow_id: str, version: str) -> WorkflowSchema:
    """The registered schema of ``workflow_id`` at ``version``.

    Raises
    ------
    UnknownWorkflowError
        The broker knows no such workflow.

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> from fuseline_nb.examples import tour
    >>> broker = MemoryBroker()
    >>> _ = broker.dispatch_workflow(tour.to_schema())
    >>> schema_for(broker, "tour", "1").workflow_id
    'tour'
    >>> schema_for(broker, "nope", "1")
    Traceback (most recent call last):
    fuseline_nb.errors.UnknownWorkflowError: the broker has no workflow 'nope' version '1' to draw this run with
    """
    get = getattr(broker, "get_workflow", None)  # a broker also finds those kept in its history
    found = get(workflow_id, version) if callable(get) else None
    if found is None:
        found = next((s for s in broker.list_workflows()
                      if s.workflow_id == workflow_id and s.version == version), None)
    if found is None:
        raise UnknownWorkflowError(
            f"the broker has no workflow {workflow_id!r} version {version!r} to draw this run with"
        )
    return found


class Layout:
    """The graph of one run's workflow, laid out once, and static snapshots of the run.

    Parameters
    ----------
    schema:
        The run's workflow.
    run_id:
        Shown in the header.
    max_nodes, max_rows:
        Caps of the graph and of the table.
    rankdir:
        Graphviz direction.

    Examples
    --------
    >>> from fuseline_nb.examples import tour
    >>> layout = Layout(tour.to_schema(), run_id="r1")
    >>> len(layout.drawing.paint_ids), layout.svg.count("<svg") in (0, 1)
    (8, True)
    """

    def __init__(self, schema: WorkflowSchema, *, run_id: str, max_nodes: int = DEFAULT_MAX_NODES,
                 max_rows: int = 50, rankdir: str = "LR") -> None:
        self.schema = schema
        self.run_id = run_id
        self.max_rows = max_rows
        self.drawing = layout_plan(schema, max_nodes=max_nodes, id_prefix=f"fl{uuid.uuid4().hex[:8]}_")
        digraph = build(self.drawing, {}, rankdir=rankdir, legend=False)
        svg, problem = render_svg(digraph)  # the one Graphviz call of this view
        self.painter = PaintableSVG(svg, self.drawing.paint_ids) if svg is not None else None
        #: What the browser shows: the SVG without its XML prolog, or the DOT text and why.
        self.svg = (
            svg[svg.find("<svg"):] if svg is not None
            else f"<pre>{html.escape(problem or '')}\n\n{html.escape(digraph.source)}</pre>"
        )

    @property
    def title(self) -> str:
        """The workflow's display name."""
        return self.schema.workflow_id

    def graph_value(self, states: Mapping[str, str]) -> str:
        """The graph's HTML for ``states`` (recoloured, never laid out again)."""
        if self.painter is None:
            return self.svg
        return graph_html(self.painter.paint(self.drawing.fills(states)))

    def snapshot_html(self, rs: RunState, workers: Mapping[str, str] | None = None) -> str:
        """The whole view as static HTML (for frontends without widgets)."""
        return (
            header_html(self.run_id, self.title, rs) + counts_html(rs.counts())
            + self.graph_value(rs.states()) + legend_html()
            + table_html(rs, max_rows=self.max_rows, workers=workers)
        )

    def snapshot_text(self, rs: RunState, workers: Mapping[str, str] | None = None) -> str:
        """The view as plain text."""
        return (
            f"run {self.run_id} of {self.title}: {rs.run_state.lower()}, "
            f"{rs.finished_count}/{len(rs.steps)} steps done ({counts_text(rs.counts())})\n"
            + table_text(rs, max_rows=self.max_rows, workers=workers)
        )


__all__ = [
    "Layout",
    "broker_of",
    "schema_for",
]
