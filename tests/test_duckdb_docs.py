"""Every ``python`` block of docs/history.md runs, in order, in one namespace,
and prints what its ``# prints: ...`` comments say (as docs/features pages do)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).parent.parent / "docs" / "history.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
PRINTS = re.compile(r"^# prints: ?(.*)$", re.M)


def test_history_page_examples_run_and_print_what_they_say(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_history"}
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) >= 6
    try:
        for i, block in enumerate(blocks):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block, f"history.md[{i}]", "exec"), namespace)
            printed = [line.rstrip() for line in out.getvalue().splitlines()]
            assert printed == [line.rstrip() for line in PRINTS.findall(block)], f"history.md block {i}"
    finally:
        if "broker" in namespace:
            namespace["broker"].close()


def test_history_page_documents_every_view_column():
    from fuseline_nb.broker import DuckDBBroker

    text = PAGE.read_text()
    with DuckDBBroker() as broker:
        for view in ("workflows", "runs", "steps", "events", "cache"):
            section = text.split(f"### `{view}`")[1].split("###")[0]
            for column in broker.sql(f"SELECT * FROM {view}").columns:
                assert f"`{column}`" in section, f"docs/history.md does not document {view}.{column}"
