"""docs/api.md shows every public name's docstring and is up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "scripts" / "gen_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_current():
    expected = _generator().render()
    actual = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/api.md is stale: run .venv/bin/python scripts/gen_api_docs.py"


def test_api_reference_covers_the_core_names():
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for name in ["Step", "Workflow", "Depends", "MemoryBroker", "ProcessEngine", "RetryPolicy", "Session"]:
        assert f" {name}(" in text or f" {name}[" in text, name
