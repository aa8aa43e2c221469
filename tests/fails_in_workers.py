"""A workflow module that imports in ``fuseline-nb worker`` itself but not in its worker processes
(as a module needing a library only the supervising machine has would)."""

from __future__ import annotations

import multiprocessing

from fuseline_nb import FunctionStep, Workflow

if multiprocessing.parent_process() is not None:
    raise ImportError("tests.fails_in_workers cannot be imported in a worker process")

flow = Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="fails-in-workers")
