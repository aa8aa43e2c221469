"""Display hooks: what a notebook shows for a workflow, and SVG rendering that never raises.

``Workflow._repr_mimebundle_`` calls :func:`workflow_mimebundle`: an SVG
drawing plus a text line. Without Graphviz's ``dot`` program the bundle is
the DOT text and how to install Graphviz, never a traceback.

Examples
--------
>>> from fuseline_nb.examples import tour
>>> bundle = workflow_mimebundle(tour)
>>> bundle["text/plain"].splitlines()[0]
"<Workflow 'tour' v1: 8 steps>"
"""

from __future__ import annotations

import logging
import shutil
from typing import Any, Final

from .draw import draw

log = logging.getLogger(__name__)

#: Said wherever a drawing cannot be rendered because ``dot`` is missing.
INSTALL_HINT: Final = (
    "Graphviz's 'dot' program was not found, so here is the graph as DOT text. "
    "Install Graphviz to see it drawn: 'apt-get install graphviz' (Debian/Ubuntu), "
    "'brew install graphviz' (macOS), 'conda install graphviz' or https://graphviz.org/download/."
)


def have_dot() -> bool:
    """Whether Graphviz's ``dot`` program is on ``PATH``.

    Examples
    --------
    >>> isinstance(have_dot(), bool)
    True
    """
    return shutil.which("dot") is not None


def render_svg(digraph: Any) -> tuple[str | None, str | None]:
    """Render ``digraph`` to SVG text: ``(svg, None)``, or ``(None, why not)``.

    Examples
    --------
    >>> import graphviz
    >>> svg, problem = render_svg(graphviz.Digraph())
    >>> (svg is not None) == (problem is None)
    True
    """
    import graphviz

    try:
        return str(digraph.pipe(format="svg", encoding="utf-8")), None
    except graphviz.ExecutableNotFound:
        return None, INSTALL_HINT
    except Exception as exc:  # a crashing dot must not become a traceback in the notebook
        log.warning("Graphviz could not render %r", digraph.name, exc_info=True)
        return None, f"Graphviz could not render this graph ({type(exc).__name__}: {exc}); DOT text follows."


def workflow_mimebundle(wf: Any) -> dict[str, Any]:
    """What a notebook shows for a workflow: SVG, or DOT text with an install hint.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> bundle = workflow_mimebundle(Workflow(outputs=[FunctionStep(lambda: 1, name="one")]))
    >>> sorted(bundle) in (["image/svg+xml", "text/plain"], ["text/plain"])
    True
    """
    text = repr(wf)
    try:
        digraph = draw(wf)
    except Exception as exc:  # a display hook must never raise
        log.warning("could not draw %r", wf, exc_info=True)
        return {"text/plain": f"{text}\n(could not draw it: {type(exc).__name__}: {exc})"}
    svg, problem = render_svg(digraph)
    if svg is None:
        return {"text/plain": f"{text}\n{problem}\n\n{digraph.source}"}
    return {"image/svg+xml": svg, "text/plain": text}


__all__ = [
    "have_dot",
    "render_svg",
    "workflow_mimebundle",
]
