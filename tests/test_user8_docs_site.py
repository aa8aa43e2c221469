"""The documentation site shows the notebooks' run views: a real ``mkdocs build --strict``.

mkdocs-jupyter rendered a view with saved widget state as a widget that needs Jupyter's widget
manager and anywidget from a CDN; offline the tour's page had nothing where its four run views
were. ``scripts/mkdocs_hooks.py`` puts each view's saved ``text/html`` picture there instead.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _text(page: Path) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())))


@pytest.mark.slow
def test_the_site_shows_each_notebook_run_view_as_its_saved_picture(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([str(Path(sys.executable).with_name("mkdocs")), "build", "--strict", "--quiet",
                           "--site-dir", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    widgets = {page.parent.name: page.read_text().count('class="jupyter-widgets jp-OutputArea-output')
               for page in (site / "notebooks").glob("*/index.html")}
    assert widgets and not any(widgets.values()), widgets  # before: 01-tour 4; 03, 04, 05, 06 one each
    tour = _text(site / "notebooks" / "01-tour" / "index.html")
    ends = re.findall(r"run \w{32} of tour (\w+) 8/8 steps done", tour)
    assert ends == ["succeeded", "succeeded", "failed", "succeeded"], ends  # run, rejected, broken, replay
    assert "Report skipped" in tour and "Mean failed" in tour
