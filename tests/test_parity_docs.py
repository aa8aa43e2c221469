"""Every ``python`` block of docs/features/*.md runs, and prints what its
``# prints: ...`` comments say. Blocks of one page share a namespace and run
in order; top-level ``await`` is allowed, as in a notebook cell."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import re
from pathlib import Path

import pytest

PAGES = sorted((Path(__file__).parent.parent / "docs" / "features").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
PRINTS = re.compile(r"^# prints: ?(.*)$", re.M)


def test_every_feature_page_exists():
    names = {p.stem for p in PAGES}
    assert {
        "steps", "workflow-orchestration", "typed-dependencies", "asynchronous-steps",
        "batch-workflows", "parallel-execution", "conditional-dependencies", "retries",
        "workflow-export", "tracing", "runtime-storage", "function-workflows",
        "branching-actions", "fail-fast", "and-or-joins", "policies",
    } <= names


@pytest.mark.parametrize("page", [p for p in PAGES if BLOCK.search(p.read_text())], ids=lambda p: p.stem)
def test_page_examples_run_and_print_what_they_say(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for i, block in enumerate(BLOCK.findall(page.read_text())):
        code = compile(block, f"{page.name}[{i}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            if code.co_flags & inspect.CO_COROUTINE:
                asyncio.run(eval(code, namespace))
            else:
                exec(code, namespace)
        printed = [line.rstrip() for line in out.getvalue().splitlines()]
        expected = [line.rstrip() for line in PRINTS.findall(block)]
        assert printed == expected, f"{page.name} block {i}"
