"""Recolour a laid-out SVG without running Graphviz again.

Graphviz lays a graph out once; afterwards a view only changes node fills.
:class:`PaintableSVG` cuts the SVG text at the ``fill`` value of each
node's first shape, so painting is one string join: no parsing, no ``dot``.

Examples
--------
>>> svg = ('<svg><g id="n0" class="node"><title>a</title><path fill="#fff" d=""/></g>'
...        '<g id="n1" class="node"><title>b</title><polygon fill="#fff" points=""/></g></svg>')
>>> p = PaintableSVG(svg, ["n0", "n1"])
>>> p.paint(["#8ce99a", "#ffa8a8"]).count('fill="#8ce99a"'), 'fill="#ffa8a8"' in p.paint(["#fff", "#ffa8a8"])
(1, True)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NODE_OPEN = re.compile(r'<g id="([^"]+)" class="node">')
_SHAPE_FILL = re.compile(r'<(?:path|polygon|ellipse|rect)\b[^>]*?\bfill="([^"]*)"')


class PaintableSVG:
    """An SVG whose nodes (found by their ``id``) can be given new fills quickly.

    Parameters
    ----------
    svg:
        The SVG text Graphviz produced.
    node_ids:
        The ``id`` of each node to paint, in the order :meth:`paint` takes
        colours.

    Raises
    ------
    ValueError
        A node id is not in the SVG (names the missing ids).
    """

    def __init__(self, svg: str, node_ids: Sequence[str]) -> None:
        self.node_ids = tuple(node_ids)
        where = {m.group(1): m.end() for m in _NODE_OPEN.finditer(svg)}
        missing = [n for n in self.node_ids if n not in where]
        if missing:
            raise ValueError(f"node ids not found in the SVG: {missing[:10]}")
        spans: list[tuple[int, int, int]] = []  # (start, end, index of the node)
        for k, node_id in enumerate(self.node_ids):
            m = _SHAPE_FILL.search(svg, where[node_id])
            if m is None:
                raise ValueError(f"node {node_id!r} has no filled shape in the SVG")
            spans.append((m.start(1), m.end(1), k))
        spans.sort()  # Graphviz need not write nodes in the order they were declared
        chunks: list[str] = []
        pos = 0
        for start, end, _ in spans:
            chunks.append(svg[pos:start])
            pos = end
        chunks.append(svg[pos:])
        self._chunks = chunks
        self._order = [k for _, _, k in spans]
        self.fills = [""] * len(spans)  # the colours the SVG was drawn with
        for start, end, k in spans:
            self.fills[k] = svg[start:end]

    def __len__(self) -> int:
        return len(self.node_ids)

    def paint(self, fills: Sequence[str]) -> str:
        """The SVG with node ``k`` filled with ``fills[k]``.

        Examples
        --------
        >>> PaintableSVG('<g id="a" class="node"><rect fill="red"/></g>', ["a"]).paint(["blue"])
        '<g id="a" class="node"><rect fill="blue"/></g>'
        """
        if len(fills) != len(self._order):
            raise ValueError(f"paint() needs {len(self._order)} fills, got {len(fills)}")
        chunks = self._chunks
        out = [chunks[0]]
        for i, k in enumerate(self._order):
            out.append(fills[k])
            out.append(chunks[i + 1])
        return "".join(out)


__all__ = [
    "PaintableSVG",
]
