"""Workflows the audit-6 HTTP tests import by module path (``tests.audit6_workflows:NAME``)."""

from __future__ import annotations

from fuseline_nb import Depends, FunctionStep, Workflow


def undecodable(prefix: str) -> str:
    """A file name read from undecodable bytes: ``os.fsdecode`` gives lone surrogates."""
    return prefix + "caf\udce9.csv"


def length(name: str = Depends(undecodable)) -> int:
    """Reads the name it was given."""
    return len(name)


surrogates = Workflow(outputs=[FunctionStep(length)], workflow_id="audit6-surrogates")
