"""Every ``python`` block of docs/workers.md runs (real worker processes) and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).parent.parent / "docs" / "workers.md"
BLOCK = re.compile(r"^ *```python\n(.*?)^ *```", re.M | re.S)
PRINTS = re.compile(r"^ *# prints: ?(.*)$", re.M)


@pytest.mark.slow
def test_workers_page_examples_run_and_print_what_they_say(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_workers"}
    blocks = BLOCK.findall(PAGE.read_text())
    assert len(blocks) >= 6
    for i, block in enumerate(blocks):
        lines = block.splitlines()
        indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
        code = "\n".join(x[indent:] for x in lines)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"workers.md[{i}]", "exec"), namespace)
        printed = [line.rstrip() for line in out.getvalue().splitlines()]
        assert printed == [line.rstrip() for line in PRINTS.findall(code)], f"workers.md block {i}"
    namespace["session"].close()
