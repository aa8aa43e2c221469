"""Upstream Fuseline's own test suite, run against fuseline_nb through an import alias.

The suite and its harness live beside the project (``../shared``), not in it:
without them this test skips, saying so. Every upstream test that does not
pass must be one that docs/features/index.md lists with its reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT.parent / "shared" / "upstream-fuseline"
HARNESS = ROOT.parent / "shared" / "tools" / "compat_upstream.py"
#: The floor of issue 16: at most three of the 55 may fail, each a documented difference.
FLOOR = 52
#: Upstream tests that time wall-clock runs to 20-60 %: they pass on a quiet machine and
#: may miss on a loaded one (listed as such in docs/features/index.md).
TIMED = frozenset({"test_linear_chain_execution_time", "test_parallel_fan_out_join_execution_time",
                   "test_three_parent_and_join"})

pytestmark = pytest.mark.slow


def test_upstream_suite_passes_through_the_alias(tmp_path: Path) -> None:
    if not (UPSTREAM / "tests").is_dir() or not HARNESS.is_file():
        pytest.skip(f"upstream Fuseline's tests ({UPSTREAM}) or the harness ({HARNESS}) are not here: "
                    "they sit beside the project, not in it")
    report = tmp_path / "compat.json"
    done = subprocess.run(
        [sys.executable, str(HARNESS), str(UPSTREAM), str(ROOT), "--json", str(report), "--timeout", "600"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    lines = done.stdout.strip().splitlines()
    m = re.fullmatch(r"compat: (\d+) passed / (\d+) total", lines[-1] if lines else "")
    assert m, f"the harness did not finish:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    passed, total = int(m[1]), int(m[2])
    data = json.loads(report.read_text())
    missed = {t: r for t, r in data["tests"].items() if r["outcome"] != "passed"}
    assert passed >= FLOOR, f"compat: {passed} passed / {total} total (floor {FLOOR}); not passing: {missed}"
    documented = (ROOT / "docs" / "features" / "index.md").read_text()
    undocumented = [t for t in missed if t.split("::")[-1] not in documented and t.split("::")[-1] not in TIMED]
    assert not undocumented, f"upstream tests failing without a reason in docs/features/index.md: {undocumented}"
