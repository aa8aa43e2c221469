"""The workflow model: steps, wiring, graphs, schemas, rules and policies as data. Pure: no I/O.

Running a workflow (in-process engines, async, batch, tracing) lives in
:mod:`fuseline_nb.running`; its public names (``PoolEngine``, ``Tracer``,
``AsyncWorkflow``, ``BatchStep`` ...) stay importable from here and load on first use,
so this package never imports the running at import time.

Examples
--------
>>> from fuseline_nb.workflow import Step, Workflow, Status
>>> Status.SKIPPED.is_final
True
"""

from __future__ import annotations

from typing import Any

from .functions import workflow_from_functions
from .graph import Workflow
from .runinfo import RunInfo, RunResult, StepInfo
from .schema import EdgeSchema, StepSchema, WorkflowSchema
from .status import Status
from .steps import Computed, Condition, Depends, Equals, FunctionStep, FunctionTask, Step, StepGroup, Task

# The running's names (one layer up) and the YAML exporter (PyYAML) load on first use.
_LAZY = {
    "AsyncStep": "fuseline_nb.running.asynchronous",
    "AsyncTask": "fuseline_nb.running.asynchronous",
    "BatchTask": "fuseline_nb.running.batch",
    "AsyncBatchTask": "fuseline_nb.running.batch",
    "AsyncParallelBatchTask": "fuseline_nb.running.batch",
    "AsyncWorkflow": "fuseline_nb.running.asynchronous",
    "BatchStep": "fuseline_nb.running.batch",
    "BatchWorkflow": "fuseline_nb.running.batch",
    "AsyncBatchStep": "fuseline_nb.running.batch",
    "AsyncParallelBatchStep": "fuseline_nb.running.batch",
    "AsyncBatchWorkflow": "fuseline_nb.running.batch",
    "AsyncParallelBatchWorkflow": "fuseline_nb.running.batch",
    "FileTracer": "fuseline_nb.running.tracing",
    "PoolEngine": "fuseline_nb.running.local",
    "Tracer": "fuseline_nb.running.tracing",
    "Exporter": "fuseline_nb.workflow.exporters",
    "YamlExporter": "fuseline_nb.workflow.exporters",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
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
