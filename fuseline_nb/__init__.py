"""fuseline_nb: notebook-first workflows of Python steps.

Build a workflow from steps, draw it, run it on worker processes, watch it
live and query every run with SQL. The model is Fuseline's; the import
prefix is ``fuseline_nb``.

``import fuseline_nb`` stays light: DuckDB, Graphviz, ipywidgets and the HTTP
service are imported only when used.

Examples
--------
>>> import fuseline_nb as fl
>>> class Double(fl.Step):
...     def run_step(self, x: int) -> int:
...         return 2 * x
>>> fl.Workflow(outputs=[Double()]).run({"x": 21})
42
"""

from __future__ import annotations

from typing import Any

from .errors import (
    CycleError,
    DuplicateStepNameError,
    FuselineError,
    ImpossibleJoinError,
    MissingInputError,
    RunNotFoundError,
    SchemaMismatchError,
    StepFailedError,
    UnknownActionError,
)
from .running import FileTracer, PoolEngine, Tracer
from .workflow import (
    Computed,
    Condition,
    Depends,
    Equals,
    FunctionStep,
    FunctionTask,
    RunInfo,
    Status,
    Step,
    StepInfo,
    Task,
    Workflow,
    WorkflowSchema,
    workflow_from_functions,
)
from .workflow.policies import RetryPolicy, StepPolicy, StepTimeoutPolicy, WorkflowPolicy
from .workflow.stale import StaleDefinitionWarning

__version__ = "0.1.0"

# Heavier names load on first use (PEP 562), so `import fuseline_nb` does not
# import duckdb, graphviz, ipywidgets or multiprocessing machinery.
_LAZY = {
    "AsyncStep": ("fuseline_nb.running.asynchronous", "AsyncStep"),
    "AsyncTask": ("fuseline_nb.running.asynchronous", "AsyncStep"),
    "BatchTask": ("fuseline_nb.running.batch", "BatchStep"),
    "AsyncBatchTask": ("fuseline_nb.running.batch", "AsyncBatchStep"),
    "AsyncParallelBatchTask": ("fuseline_nb.running.batch", "AsyncParallelBatchStep"),
    "AsyncWorkflow": ("fuseline_nb.running.asynchronous", "AsyncWorkflow"),
    "BatchStep": ("fuseline_nb.running.batch", "BatchStep"),
    "BatchWorkflow": ("fuseline_nb.running.batch", "BatchWorkflow"),
    "AsyncBatchStep": ("fuseline_nb.running.batch", "AsyncBatchStep"),
    "AsyncParallelBatchStep": ("fuseline_nb.running.batch", "AsyncParallelBatchStep"),
    "AsyncBatchWorkflow": ("fuseline_nb.running.batch", "AsyncBatchWorkflow"),
    "AsyncParallelBatchWorkflow": ("fuseline_nb.running.batch", "AsyncParallelBatchWorkflow"),
    "Exporter": ("fuseline_nb.workflow.exporters", "Exporter"),
    "YamlExporter": ("fuseline_nb.workflow.exporters", "YamlExporter"),
    "ProcessEngine": ("fuseline_nb.worker", "ProcessEngine"),
    "WorkerPool": ("fuseline_nb.worker", "WorkerPool"),
    "MemoryBroker": ("fuseline_nb.broker", "MemoryBroker"),
    "DuckDBBroker": ("fuseline_nb.broker", "DuckDBBroker"),
    "Session": ("fuseline_nb.session", "Session"),
    "Run": ("fuseline_nb.session", "Run"),
    "SessionReplacedWarning": ("fuseline_nb.session", "SessionReplacedWarning"),
    "RunGroup": ("fuseline_nb.rungroup", "RunGroup"),
    "draw": ("fuseline_nb.views.draw", "draw"),
    "RunView": ("fuseline_nb.views.widgets", "RunView"),
    "ReplayView": ("fuseline_nb.views.widgets", "ReplayView"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'fuseline_nb' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "CycleError",
    "Depends",
    "DuckDBBroker",
    "DuplicateStepNameError",
    "Equals",
    "Exporter",
    "FileTracer",
    "FunctionStep",
    "FunctionTask",
    "FuselineError",
    "ImpossibleJoinError",
    "MemoryBroker",
    "MissingInputError",
    "PoolEngine",
    "ProcessEngine",
    "ReplayView",
    "RetryPolicy",
    "Run",
    "RunGroup",
    "RunInfo",
    "RunNotFoundError",
    "RunView",
    "SchemaMismatchError",
    "Session",
    "SessionReplacedWarning",
    "StaleDefinitionWarning",
    "Status",
    "Step",
    "StepFailedError",
    "StepInfo",
    "StepPolicy",
    "StepTimeoutPolicy",
    "Task",
    "Tracer",
    "UnknownActionError",
    "WorkerPool",
    "Workflow",
    "WorkflowPolicy",
    "WorkflowSchema",
    "YamlExporter",
    "draw",
    "workflow_from_functions",
]
