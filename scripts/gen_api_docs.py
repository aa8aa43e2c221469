"""Write docs/api.md: every public name of fuseline_nb with its docstring.

Run ``.venv/bin/python scripts/gen_api_docs.py`` after changing a public
docstring; ``tests/test_api_docs.py`` fails while docs/api.md is stale.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from enum import Enum
from pathlib import Path

MODULES = [
    "fuseline_nb",
    "fuseline_nb.workflow",
    "fuseline_nb.workflow.policies",
    "fuseline_nb.running",
    "fuseline_nb.broker",
    "fuseline_nb.broker.clients",
    "fuseline_nb.broker.storage",
    "fuseline_nb.worker",
]
TARGET = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _signature(obj: object) -> str:
    if inspect.isclass(obj) and issubclass(obj, Enum):
        return ""
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def render() -> str:
    """The text of docs/api.md."""
    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `scripts/gen_api_docs.py`; every example here",
        "runs as a doctest in the test suite.",
        "",
    ]
    seen: set[int] = set()
    for mod_name in MODULES:
        mod = importlib.import_module(mod_name)
        entries = []
        for name in sorted(mod.__all__, key=str.lower):
            obj = getattr(mod, name)
            if id(obj) in seen or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.add(id(obj))
            kind = "class" if inspect.isclass(obj) else "def"
            doc = inspect.cleandoc(obj.__doc__ or "")
            entries.append(f"### `{kind} {name}{_signature(obj)}`\n\n```text\n{doc}\n```\n")
        if entries:
            out.append(f"## `{mod_name}`\n")
            out.extend(entries)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
