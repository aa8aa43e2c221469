"""Every public module says exactly what it offers: ``__all__`` lists each public class and function
defined in it, and nothing that does not resolve."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import fuseline_nb

OPTIONAL = ("distributed", "fastapi", "starlette", "uvicorn", "httpx", "anywidget")


def _public_modules() -> list[str]:
    names = ["fuseline_nb"]
    for info in pkgutil.walk_packages(fuseline_nb.__path__, "fuseline_nb."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # an optional extra this environment lacks
        if exc.name and exc.name.partition(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {exc.name}")
        raise


@pytest.mark.parametrize("name", _public_modules())
def test_all_is_exactly_the_public_names(name: str) -> None:
    module = _import(name)
    declared = getattr(module, "__all__", None)
    assert declared is not None, f"{name} has no __all__"
    assert len(declared) == len(set(declared)), f"{name}.__all__ repeats a name"
    for item in declared:
        assert hasattr(module, item), f"{name}.__all__ names {item!r}, which {name} does not have"
    defined = {
        n for n, obj in vars(module).items()
        if not n.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == name
    }
    missing = sorted(defined - set(declared))
    assert not missing, f"{name} defines public {missing} but leaves them out of __all__ (add them, or underscore them)"


def test_the_http_client_does_not_import_the_clients_module() -> None:
    """``clients`` loads ``http_client`` on first use; the reverse import would make a circle."""
    import ast
    from pathlib import Path

    path = Path(fuseline_nb.__file__).parent / "broker" / "http_client.py"
    imported = {node.module for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert "clients" not in imported and "base" in imported, imported
