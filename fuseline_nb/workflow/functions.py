"""Workflows from plain functions: :func:`workflow_from_functions`.

Examples
--------
>>> def one() -> int:
...     return 1
>>> workflow_from_functions([one]).run()
1
"""

from __future__ import annotations

from typing import Any

from .graph import Workflow
from .steps import FunctionStep, Step


def workflow_from_functions(outputs: Any, **workflow_kwargs: Any) -> Workflow:
    """Build a :class:`Workflow` from plain functions.

    Each function becomes a :class:`FunctionStep`; a parameter whose default
    is ``Depends(other_function)`` pulls ``other_function`` in as a step. A
    function receives only the parameters it declares. Pass a list of output
    functions, or use it as a decorator on the single output function.

    Examples
    --------
    >>> from fuseline_nb import Depends, workflow_from_functions
    >>> def add_one(x: int) -> int:
    ...     return x + 1
    >>> def double(v: int = Depends(add_one)) -> int:
    ...     return v * 2
    >>> workflow_from_functions([double]).run({"x": 3})
    8
    >>> @workflow_from_functions
    ... def total(a: int, b: int) -> int:
    ...     return a + b
    >>> total.run({"a": 1, "b": 2})
    3
    """
    if callable(outputs) and not isinstance(outputs, (list, tuple, Step)):
        outputs = [outputs]
    if isinstance(outputs, Step):
        outputs = [outputs]
    steps = [o if isinstance(o, Step) else FunctionStep(o) for o in outputs]
    return Workflow(outputs=steps, **workflow_kwargs)


__all__ = ["workflow_from_functions"]
