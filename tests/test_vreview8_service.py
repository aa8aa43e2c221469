"""``fuseline-nb worker`` given two pipelines made by one function: refused, not run with one's code.

``flows.eu = make(1)`` and ``flows.us = make(2)`` have the same step names and edges, so one derived
workflow id and the version ``"1"``. A remote worker holds one workflow per ``(id, version)``: the
last one loaded won, and every run of the other ran its code (no word; a ``Session`` gives the second
a version of its own, a worker built from module specs cannot). The command now refuses the pair,
naming both specs and the way out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuseline_nb.cli.loader import load_workflows

FLOWS = '''
import fuseline_nb as fl

def make(k):
    def load(x: int) -> int:
        return x * k
    def after(v: int = fl.Depends(load)) -> int:
        return v
    return fl.Workflow(outputs=[fl.FunctionStep(after)])

eu, us, eu_again = make(1), make(2), make(1)

'''


@pytest.fixture
def flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "vreview8_flows.py").write_text(FLOWS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_worker_refuses_two_definitions_under_one_id_and_version(flows: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(flows), *sys.path])}
    r = subprocess.run([sys.executable, "-m", "fuseline_nb.cli.service", "worker", "vreview8_flows:eu",
                        "vreview8_flows:us", "--broker", "http://127.0.0.1:9"],
                       env=env, capture_output=True, text=True, timeout=60, cwd=flows)
    assert r.returncode == 2, r.stderr
    assert "workflows 'vreview8_flows:eu' and 'vreview8_flows:us' are two definitions under one workflow id" \
        in r.stderr
    assert "give each its own workflow_id=" in r.stderr


def test_the_same_definition_twice_is_accepted(flows: Path) -> None:
    eu, again = load_workflows(["vreview8_flows:eu", "vreview8_flows:eu_again"])
    assert (eu.workflow_id, eu.version) == (again.workflow_id, again.version)
    with pytest.raises(ValueError, match="'vreview8_flows:eu_again' and 'vreview8_flows:us' are two definitions"):
        load_workflows(["vreview8_flows:eu_again", "vreview8_flows:us"])
