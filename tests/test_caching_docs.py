"""Every ``python`` block of docs/caching.md runs, in order, in one namespace (a real session with
worker processes and a DuckDB file), and prints what its ``# prints: ...`` comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).parent.parent / "docs" / "caching.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
PRINTS = re.compile(r"^# prints: ?(.*)$", re.M)

pytestmark = pytest.mark.slow


def test_caching_page_examples_run_and_print_what_they_say(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}  # as notebook cells: functions pickle by value
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) >= 6
    try:
        for i, block in enumerate(blocks):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block, f"caching.md[{i}]", "exec"), namespace)
            printed = [line.rstrip() for line in out.getvalue().splitlines()]
            assert printed == [line.rstrip() for line in PRINTS.findall(block)], f"caching.md block {i}"
    finally:
        if "session" in namespace:
            namespace["session"].close()
