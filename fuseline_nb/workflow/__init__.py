"""The workflow model: steps, graphs, schemas, rules and in-process runs. Pure: no I/O.

Examples
--------
>>> from fuseline_nb.workflow import Step, Workflow, Status
>>> Status.SKIPPED.is_final
True
"""

from __future__ import annotations

from typing import Any

from .graph import Workflow, workflow_from_functions
from .local import PoolEngine
from .runinfo import RunInfo, RunResult, StepInfo
from .schema import EdgeSchema, StepSchema, WorkflowSchema
from .status import Status
from .steps import Computed, Condition, Depends, Equals, FunctionStep, FunctionTask, Step, StepGroup, Task
from .tracing import FileTracer, Tracer

# Async, batch and YAML names import asyncio / PyYAML: load them on first use.
_LAZY = {
    "AsyncStep": "asynchronous",
    "AsyncTask": "asynchronous",
    "BatchTask": "batch",
    "AsyncBatchTask": "batch",
    "AsyncParallelBatchTask": "batch",
    "AsyncWorkflow": "asynchronous",
    "BatchStep": "batch",
    "BatchWorkflow": "batch",
    "AsyncBatchStep": "batch",
    "AsyncParallelBatchStep": "batch",
    "AsyncBatchWorkflow": "batch",
    "AsyncParallelBatchWorkflow": "batch",
    "Exporter": "exporters",
    "YamlExporter": "exporters",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncBatchStep",
    "AsyncBatchTask",
    "AsyncBatchWorkflow",
    "AsyncParallelBatchStep",
    "AsyncParallelBatchTask",
    "AsyncParallelBatchWorkflow",
    "AsyncStep",
    "AsyncTask",
    "AsyncWorkflow",
    "BatchStep",
    "BatchTask",
    "BatchWorkflow",
    "Computed",
    "Condition",
    "Depends",
    "EdgeSchema",
    "Equals",
    "Exporter",
    "FileTracer",
    "FunctionStep",
    "FunctionTask",
    "PoolEngine",
    "RunInfo",
    "RunResult",
    "Status",
    "Step",
    "StepGroup",
    "StepInfo",
    "StepSchema",
    "Task",
    "Tracer",
    "Workflow",
    "WorkflowSchema",
    "YamlExporter",
    "workflow_from_functions",
]
