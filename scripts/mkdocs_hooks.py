"""mkdocs hook: on the documentation site a notebook's run views show their saved picture.

mkdocs-jupyter (nbconvert) renders an output that has a widget view with saved widget
state as that widget, which then needs Jupyter's widget manager and anywidget from a
CDN: offline (``mkdocs serve`` without a network), or wherever those do not load, the
site showed nothing at all where a run's live view had been. Each view's output also
carries ``text/html`` — the coloured graph, counts and table as the run ended
(``docs/views.md``, "Without widgets") — and this hook puts it in the widget's place.
``mkdocs.yml`` names this file under ``hooks``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

VIEW = "application/vnd.jupyter.widget-view+json"
#: nbconvert's widget output: a div holding a script with the widget's model id.
WIDGET = re.compile(
    r'<div class="jupyter-widgets jp-OutputArea-output[^"]*" id="[^"]*"[^>]*>\s*'
    r'<script type="text/javascript">.*?</script>\s*'
    r'<script type="application/vnd\.jupyter\.widget-view\+json">\s*(\{.*?\})\s*</script>\s*</div>',
    re.S,
)


def saved_pictures(notebook: Path) -> dict[str, str]:
    """``{model id: text/html}`` of every widget output of ``notebook`` that has a static picture."""
    pictures = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", ()):
            data = output.get("data", {})
            if VIEW in data and "text/html" in data:
                text = data["text/html"]
                pictures[data[VIEW]["model_id"]] = text if isinstance(text, str) else "".join(text)
    return pictures


def with_pictures(page_html: str, pictures: dict[str, str]) -> str:
    """``page_html`` with each widget output that has a saved picture replaced by that picture."""

    def swap(match: re.Match[str]) -> str:
        picture = pictures.get(json.loads(match.group(1)).get("model_id", ""))
        if picture is None:
            return match.group(0)
        return f'<div class="jp-RenderedHTMLCommon jp-OutputArea-output" data-mime-type="text/html">{picture}</div>'

    return WIDGET.sub(swap, page_html)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs event: a notebook page's widget outputs become their saved pictures."""
    source = getattr(page.file, "abs_src_path", None) or ""
    if not source.endswith(".ipynb"):
        return html
    return with_pictures(html, saved_pictures(Path(source)))
