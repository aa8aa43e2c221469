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


def is_csv(name: str) -> bool:
    """A condition on the file name."""
    return name.endswith(".csv")


def load(name: str = Depends(undecodable, condition=is_csv)) -> str:
    """Runs when the name is a CSV file's."""
    return f"loaded {len(name)}"


gated = Workflow(outputs=[FunctionStep(load)], workflow_id="audit6-surrogates-gated")
