"""Every public name has a docstring with a runnable example (doctests run them)."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC_MODULES = [
    "fuseline_nb",
    "fuseline_nb.broker",
    "fuseline_nb.broker.clients",
    "fuseline_nb.broker.storage",
    "fuseline_nb.worker",
    "fuseline_nb.workflow",
    "fuseline_nb.workflow.policies",
]


def public_objects():
    seen = set()
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if id(obj) in seen or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.add(id(obj))
            yield f"{mod_name}.{name}", obj


@pytest.mark.parametrize(("qualname", "obj"), list(public_objects()), ids=lambda x: x if isinstance(x, str) else "")
def test_public_name_has_docstring_with_example(qualname, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{qualname} has no docstring"
    assert ">>>" in doc, f"{qualname}'s docstring has no runnable example"
