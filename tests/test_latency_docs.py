"""Every ``python`` block of docs/latency.md runs (a real worker process) and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).parent.parent / "docs" / "latency.md"
BLOCK = re.compile(r"^ *```python\n(.*?)^ *```", re.M | re.S)
PRINTS = re.compile(r"^ *# prints: ?(.*)$", re.M)


@pytest.mark.slow
def test_latency_page_examples_run_and_print_what_they_say(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FUSELINE_NB_SPIN_US", raising=False)
    namespace: dict = {"__name__": "docs_latency"}
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"latency.md[{i}]", "exec"), namespace)
        printed = [line.rstrip() for line in out.getvalue().splitlines()]
        assert printed == [line.rstrip() for line in PRINTS.findall(block)], f"latency.md block {i}"
