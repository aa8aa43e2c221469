"""Schemas shipped to workers, named by reference when a worker sends them back.

The kernel remembers each schema it ships (:func:`remember_shipped`); a pool
worker marks its copy (:func:`refer_to_shipped`), and when it registers, the
copy pickles as ``(workflow id, version, structure key)`` and unpickles in the
kernel as the kernel's own object — not a million steps sent back.

Examples
--------
>>> import pickle
>>> from fuseline_nb.workflow.schema import StepSchema, WorkflowSchema
>>> s = WorkflowSchema("w", steps=(StepSchema("a"),))
>>> ref = remember_shipped(s)
>>> copy = pickle.loads(pickle.dumps(s))  # as a worker receives it
>>> refer_to_shipped(copy, ref)
>>> pickle.loads(pickle.dumps(copy)) is s  # sent back: the kernel's own object
True
"""

from __future__ import annotations

from typing import Any

_set = object.__setattr__

#: The schemas this process shipped to its workers, by (workflow id, version, structure key):
#: a worker's registration names them instead of sending a million steps back.
_SHIPPED: dict[tuple[str, str, str], Any] = {}  # WorkflowSchema objects


def remember_shipped(schema: Any) -> tuple[str, str, str]:
    """Keep ``schema`` as shipped from this process; returns the reference a worker's copy sends back.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import StepSchema, WorkflowSchema
    >>> s = WorkflowSchema("w", version="2", steps=(StepSchema("a"),))
    >>> ref = remember_shipped(s)
    >>> ref[:2], ref[2] == s.structure_key()  # (workflow id, version, structure key)
    (('w', '2'), True)
    """
    ref = (schema.workflow_id, schema.version, schema.structure_key())
    _SHIPPED[ref] = schema
    return ref


def refer_to_shipped(schema: Any, ref: tuple[str, str, str]) -> None:
    """Mark a worker's copy of a shipped schema: pickled, it becomes the reference ``ref``."""
    _set(schema, "_shipped_from", ref)


def _shipped_schema(workflow_id: str, version: str, key: str) -> Any:
    """The schema a worker's registration names (the pickled form of a marked copy)."""
    try:
        return _SHIPPED[(workflow_id, version, key)]
    except KeyError:
        raise LookupError(
            f"workflow {workflow_id!r} version {version!r} (structure {key[:12]}) was not shipped from this "
            "process: a worker's schema travels by reference only back to the kernel that shipped it"
        ) from None


__all__ = ["refer_to_shipped", "remember_shipped"]
