"""The docs' code as a new user copies it: every import resolves, and docs/views.md's examples run in order.

Pages with their own runners (workers, history, caching, latency, features) are
checked by those; this covers what none ran: every ``import`` line of every
page, and the views page top to bottom in one namespace.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^ *```python\n(.*?)^ *```", re.M | re.S)
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def _blocks(page: Path) -> list[str]:
    out = []
    for block in BLOCK.findall(page.read_text()):
        lines = block.splitlines()
        indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
        out.append("\n".join(x[indent:] for x in lines))
    return out


def _imports(code: str) -> list[str]:
    return [ast.unparse(node) for node in ast.walk(ast.parse(code))
            if isinstance(node, ast.Import | ast.ImportFrom)]


def test_every_import_in_the_docs_resolves() -> None:
    # before: docs/views.md said `from fuseline_nb.broker import HttpBrokerClient` (ImportError)
    broken = []
    for page in PAGES:
        for i, code in enumerate(_blocks(page)):
            for line in _imports(code):
                if line.split()[1].split(".")[0] in {"flows", "etl", "sweeps", "nightly"}:
                    continue  # the reader's own modules the page writes first
                try:
                    exec(line, {})
                except ImportError as exc:
                    broken.append(f"{page.relative_to(ROOT)} block {i}: {line}: {exc}")
    assert not broken, "\n".join(broken)


@pytest.mark.slow
def test_views_page_examples_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # before: session.trends() on the page's session (kept in memory) raised StorageError, and
    # trends(workflow="sweep") named a workflow the page never ran
    monkeypatch.chdir(tmp_path)
    blocks = _blocks(ROOT / "docs" / "views.md")
    remote = next(i for i, b in enumerate(blocks) if "HttpBrokerClient" in b)  # needs a service: not here
    namespace: dict = {"__name__": "docs_views"}
    try:
        for i, code in enumerate(blocks[:remote]):
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, f"views.md[{i}]", "exec"), namespace)
            if i == 1:  # the live run: let it end before the replay and the charts read it
                namespace["run"].wait(timeout=60)
        assert (tmp_path / "total.svg").read_text().startswith("<svg")
        assert namespace["group"].wait(timeout=120) is not None
    finally:
        if "session" in namespace:
            namespace["session"].close()


def test_the_error_tree_in_fuseline_nb_errors_names_every_public_exception() -> None:
    # before: TransportUnsupportedError (raised by a client whose transport cannot cancel) was missing
    import fuseline_nb.errors as errors

    doc = errors.__doc__ or ""
    drawn = dict(re.findall(r"[├└]── (\w+)(?: \((\w+)\))?", doc))
    public = {name for name in errors.__all__
              if isinstance(getattr(errors, name), type) and issubclass(getattr(errors, name), Exception)}
    assert public - {"FuselineError"} == set(drawn), sorted(public ^ set(drawn))
    for name, builtin in drawn.items():
        if builtin:
            assert builtin in {b.__name__ for b in getattr(errors, name).__mro__}, (name, builtin)


def test_every_command_line_option_is_on_its_docs_page() -> None:
    # before: docs/service.md's synopses lacked --worker-ttl, --dask, --max-in-flight; workers.md's lacked --cache
    from fuseline_nb.cli import build_parser

    pages = {"run": "workers.md", "broker": "service.md", "worker": "service.md"}
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = []
    for command, page in pages.items():
        text = (ROOT / "docs" / page).read_text()
        for action in sub.choices[command]._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and f"`{option}" not in text \
                        and f"[{option}" not in text and f" {option} " not in text:
                    missing.append(f"{command} {option} (docs/{page})")
    assert not missing, missing
