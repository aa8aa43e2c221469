"""Binder's route works: a fresh virtual environment, the pinned requirements and
postBuild's ``pip install ".[notebook]"``, then the tour in a real kernel of that
environment (nbclient), and the scaling notebook (the HTTP service, Dask). Catches an extra
that misses what a notebook imports (``session.sql(...).df()`` needs pandas, 05 needs uvicorn and
distributed) and pins that fall behind pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # a fresh venv with ~130 pinned packages

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "binder" / "requirements.txt"


def _pins() -> dict[str, str]:
    pins = {}
    for line in PINS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def _pip(python: Path, *args: str) -> str:
    done = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("dot") is None:
        pytest.skip("Binder installs Graphviz from binder/apt.txt; this machine has no 'dot'")
    where = tmp_path_factory.mktemp("binder") / "venv"
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    _pip(python, "install", "-q", "-r", str(PINS))           # what repo2docker does first
    build = (ROOT / "binder" / "postBuild").read_text()
    assert 'pip install --no-cache-dir ".[notebook]"' in build, "postBuild changed: update this test"
    _pip(python, "install", "-q", str(ROOT) + "[notebook]")    # what postBuild does
    return python


def test_pins_cover_what_postbuild_installs(binder_env: Path) -> None:
    pins = _pins()
    frozen = _pip(binder_env, "freeze", "--exclude-editable").splitlines()
    unpinned = []
    for line in frozen:
        name, _, version = line.partition("==")
        key = name.lower().replace("_", "-")
        if key == "fuseline-nb" or not version:
            continue
        if pins.get(key) != version:
            unpinned.append(f"{name}=={version} (pinned: {pins.get(key)})")
    assert not unpinned, ("binder/requirements.txt is behind pyproject.toml; run `bash scripts/pin-binder.sh`: "
                          + ", ".join(unpinned))
    _pip(binder_env, "check")


@pytest.mark.parametrize("name", ["01-tour", "05-scaling-out"])
def test_notebook_runs_in_the_binder_environment(binder_env: Path, tmp_path: Path, name: str) -> None:
    # 05 starts the HTTP service and a Dask cluster: before, Binder had neither (the notebook extra
    # lacked the service and dask extras) and the notebook failed there
    tour = ROOT / "notebooks" / f"{name}.ipynb"
    script = (
        "import nbformat, sys\n"
        "from nbclient import NotebookClient\n"
        f"nb = nbformat.read({str(tour)!r}, as_version=4)\n"
        "NotebookClient(nb, timeout=300, kernel_name='python3',\n"
        f"               resources={{'metadata': {{'path': {str(tmp_path)!r}}}}}).execute()\n"
        "print('tour ran', len(nb.cells), 'cells')\n"
    )
    done = subprocess.run([str(binder_env), "-c", script], capture_output=True, text=True, timeout=900,
                          cwd=tmp_path)
    assert done.returncode == 0, f"{name} failed in the Binder environment:\n{done.stderr[-6000:]}"
    assert "tour ran" in done.stdout
