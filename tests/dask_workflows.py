"""Workflows the Dask bridge tests import by module path (``tests.dask_workflows:NAME``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from fuseline_nb import FunctionStep, Workflow


def spin(marks: str) -> int:
    """Marks ``started-PID``, loops on short sleeps until ``release`` exists, marks ``stopped-PID`` however it ends."""
    where = Path(marks)
    (where / f"started-{os.getpid()}").touch()
    try:
        while not (where / "release").exists():
            time.sleep(0.02)
    finally:
        (where / f"stopped-{os.getpid()}").touch()
    return os.getpid()


spinning = Workflow(outputs=[FunctionStep(spin)], workflow_id="dask-spinning")
