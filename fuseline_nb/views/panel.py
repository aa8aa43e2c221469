"""The widgets a run view is made of, and how they show one :class:`RunState`.

The graph is laid out by Graphviz once, when the panel is made; afterwards
:meth:`Panel.show` only recolours nodes (:class:`PaintableSVG`), and only
sets the traits whose text changed, so an unchanged piece sends nothing to
the frontend.

Examples
--------
>>> from fuseline_nb.examples import tour
>>> from fuseline_nb.views.runstate import RunState
>>> panel = Panel(tour.to_schema(), run_id="r1")
>>> rs = RunState(tour.step_names)
>>> rs.steps["Validate"].state = "RUNNING"
>>> panel.show(rs)
>>> panel.progress.max, "running 1" in panel.counts.value
(8, True)
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Mapping
from typing import Any

import ipywidgets as W

from ..errors import UnknownWorkflowError
from ..workflow.schema import WorkflowSchema
from .display import render_svg
from .draw import DEFAULT_MAX_NODES, build, layout_plan
from .render import counts_html, counts_text, graph_html, header_html, table_html, table_text
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
    for schema in broker.list_workflows():  # a broker lists every workflow it has stored too
        if schema.workflow_id == workflow_id and schema.version == version:
            return schema
    raise UnknownWorkflowError(
        f"the broker has no workflow {workflow_id!r} version {version!r} to draw this run with"
    )


class Panel:
    """Header, progress bar, counts, graph and steps table of one run.

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
        self._static_graph = (
            f"<pre>{html.escape(problem or '')}\n\n{html.escape(digraph.source)}</pre>" if svg is None else ""
        )
        self._fills: list[str] | None = None
        layout = W.Layout(width="100%")
        self.header = W.HTML(layout=layout)
        self.progress = W.IntProgress(value=0, min=0, max=max(len(schema.steps), 1), description="0%",
                                      layout=W.Layout(width="60%"))
        self.counts = W.HTML(layout=layout)
        self.graph = W.HTML(layout=layout)
        self.table = W.HTML(layout=layout)

    @property
    def title(self) -> str:
        """The workflow's display name."""
        return self.schema.workflow_id

    def graph_value(self, states: Mapping[str, str]) -> str:
        """The graph's HTML for ``states`` (recoloured, never laid out again)."""
        if self.painter is None:
            return self._static_graph
        fills = self.drawing.fills(states)
        return graph_html(self.painter.paint(fills))

    def show(self, rs: RunState, workers: Mapping[str, str] | None = None) -> None:
        """Set every widget from ``rs`` (only traits whose value changed are sent)."""
        states = rs.states()
        counts = rs.counts()
        done = rs.finished_count
        total = max(len(rs.steps), 1)
        fills = self.drawing.fills(states)
        if fills != self._fills:
            self._fills = fills
            self.graph.value = self.graph_value(states)
        self.header.value = header_html(self.run_id, self.title, rs)
        self.counts.value = counts_html(counts)
        style = "danger" if counts["FAILED"] else ("success" if rs.done else "info")
        with self.progress.hold_sync():
            self.progress.max = total
            self.progress.value = done
            self.progress.description = f"{100 * done // total}%"
            self.progress.bar_style = style
        self.table.value = table_html(rs, max_rows=self.max_rows, workers=workers)

    def snapshot_html(self, rs: RunState, workers: Mapping[str, str] | None = None) -> str:
        """The whole panel as static HTML (for frontends without widgets)."""
        return (
            header_html(self.run_id, self.title, rs) + counts_html(rs.counts())
            + self.graph_value(rs.states()) + table_html(rs, max_rows=self.max_rows, workers=workers)
        )

    def snapshot_text(self, rs: RunState, workers: Mapping[str, str] | None = None) -> str:
        """The panel as plain text."""
        return (
            f"run {self.run_id} of {self.title}: {rs.run_state.lower()}, "
            f"{rs.finished_count}/{len(rs.steps)} steps done ({counts_text(rs.counts())})\n"
            + table_text(rs, max_rows=self.max_rows, workers=workers)
        )

    def close(self) -> None:
        """Close the panel's widgets."""
        for w in (self.header, self.progress, self.counts, self.graph, self.table):
            w.close()


__all__ = [
    "Panel",
    "broker_of",
    "schema_for",
]
