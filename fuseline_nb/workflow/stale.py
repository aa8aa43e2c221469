"""Stale definitions: a step holding code its notebook cell has since replaced.

Re-running a cell that defines ``clean`` binds the name ``clean`` in
``__main__`` to a new function, but a step built earlier — or a
``Depends(clean)`` default of a function defined before the re-run — still
holds the old one, and the old code would run without a word. :func:`stale_steps`
finds such steps; :func:`warn_stale` warns about them, once per workflow and
set of stale steps, naming each step and the cells to run again.

Examples
--------
>>> import __main__
>>> from fuseline_nb import FunctionStep, Workflow
>>> def clean(x):
...     return x
>>> clean.__module__ = "__main__"; __main__.clean = clean  # as a notebook cell does
>>> wf = Workflow(outputs=[FunctionStep(clean)])
>>> def clean(x):  # the cell run again
...     return x + 1
>>> clean.__module__ = "__main__"; __main__.clean = clean
>>> [s.step for s in stale_steps(wf)]
['clean']
>>> del __main__.clean
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from itertools import repeat
from operator import is_not
from typing import Any

from .fingerprint import one_class
from .steps import FunctionStep, Step


class StaleDefinitionWarning(UserWarning):
    """A step runs an older definition of a function or class than the notebook now has.

    Examples
    --------
    >>> issubclass(StaleDefinitionWarning, UserWarning)
    True
    """


@dataclass(frozen=True)
class Stale:
    """One stale step: its name, the ``__main__`` name and the steps that hold it."""

    step: str
    name: str
    kind: str  # "function" or "class"
    holders: tuple[str, ...]  # steps whose Depends(...) hold the old object

    def message(self) -> str:
        """The warning text: what is stale and what to run again."""
        again = [f"the cell that defines {h!r}" for h in self.holders]
        again.append("the cell that builds the workflow")
        return (
            f"step {self.step!r} holds an old definition of {self.kind} {self.name!r}: its cell was run "
            f"again and __main__.{self.name} is now another object, so the old code would run. "
            f"Run again {', then '.join(again)}."
        )


def _held(step: Step) -> Any:
    return step.function if isinstance(step, FunctionStep) else type(step)


def _one_held(steps: list[Step]) -> Any:
    """The one function or class every step holds (most workflows: a fan-out or chain of one function),
    else ``None``: C-level passes, no Python call per step."""
    cls = one_class(steps)
    if cls is None or not issubclass(cls, FunctionStep):
        return cls
    fn = steps[0].function  # type: ignore[attr-defined]
    return None if any(map(is_not, map(getattr, steps, repeat("function")), repeat(fn))) else fn


def stale_steps(workflow: Any, kind: tuple[type, Any] | None = None) -> list[Stale]:
    """The steps of ``workflow`` holding a function or class ``__main__`` has replaced.

    ``kind``: the ``(class, function)`` every step of ``workflow`` holds, when the
    caller has just found it so (``Workflow.refresh`` in the same submit).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> stale_steps(Workflow(outputs=[FunctionStep(len, name="size")]))
    []
    """
    main = sys.modules.get("__main__")
    if main is None:
        return []
    names = vars(main)
    if kind is not None and (kind[0] is FunctionStep or not issubclass(kind[0], FunctionStep)):
        held = kind[1] if kind[0] is FunctionStep else kind[0]  # what _held gives each of them
    else:
        held = _one_held(list(workflow.steps.values()))
    if held is not None and _replaced(held, names) is None:
        return []  # every step holds one function (or class), and __main__ has not replaced it
    found: list[Stale] = []
    last: Any = None
    stale: tuple[str, str] | None = None  # (qualname, kind) of the last object held, when it is stale
    for name, step in workflow.steps.items():
        obj = _held(step)
        if obj is not last:  # neighbours mostly hold one function: judge it once
            last, stale = obj, _replaced(obj, names)
        if stale is None:
            continue
        holders = tuple(sorted(
            v for v, b in workflow.bindings.items() if any(name in p.sources for p in b.params)
        ))
        found.append(Stale(name, stale[0], stale[1], holders))
    return found


def _replaced(obj: Any, names: dict[str, Any]) -> tuple[str, str] | None:
    """``(qualname, kind)`` when ``__main__`` now holds another object under ``obj``'s name."""
    if getattr(obj, "__module__", None) != "__main__":
        return None
    key = getattr(obj, "__qualname__", "")
    if "." in key or key not in names:
        return None
    current = names[key]
    if isinstance(current, FunctionStep):
        current = current.function
    if current is obj or not (callable(current) and type(current) is type(obj)):
        return None
    return key, "class" if isinstance(obj, type) else "function"


def warn_stale(workflow: Any, stacklevel: int = 2, kind: tuple[type, Any] | None = None) -> list[Stale]:
    """Warn (:class:`StaleDefinitionWarning`) about each stale step not yet reported for ``workflow``.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> warn_stale(Workflow(outputs=[FunctionStep(len, name="size")]))
    []
    """
    stale = stale_steps(workflow, kind)
    told: set[Stale] = workflow.__dict__.setdefault("_stale_told", set())
    for s in stale:
        if s not in told:
            told.add(s)
            warnings.warn(s.message(), StaleDefinitionWarning, stacklevel=stacklevel + 1)
    return stale


__all__ = ["Stale", "StaleDefinitionWarning", "stale_steps", "warn_stale"]
