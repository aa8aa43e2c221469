"""The workflow model: steps, graphs, schemas, rules and in-process runs. Pure: no I/O.

Examples
--------
>>> from fuseline_nb.workflow import Step, Workflow, Status
>>> Status.SKIPPED.is_final
True
"""

from __future__ import annotations

from .graph import Workflow, workflow_from_functions
from .local import PoolEngine
from .runinfo import RunInfo, RunResult, StepInfo
from .schema import EdgeSchema, StepSchema, WorkflowSchema
from .status import Status
from .steps import Computed, Condition, Depends, Equals, FunctionStep, Step, StepGroup

__all__ = [
    "Computed",
    "Condition",
    "Depends",
    "EdgeSchema",
    "Equals",
    "FunctionStep",
    "PoolEngine",
    "RunInfo",
    "RunResult",
    "Status",
    "Step",
    "StepGroup",
    "StepInfo",
    "StepSchema",
    "Workflow",
    "WorkflowSchema",
    "workflow_from_functions",
]
