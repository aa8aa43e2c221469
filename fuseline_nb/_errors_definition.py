"""The errors of a workflow's definition and of its runs (the base :class:`FuselineError` too).

Public as :mod:`fuseline_nb.errors` (the tree is drawn there): each class
here says so in its ``__module__``, so messages, tracebacks and pickles name
``fuseline_nb.errors.CycleError`` wherever the class is defined.

Examples
--------
>>> from fuseline_nb.errors import CycleError
>>> CycleError.__module__
'fuseline_nb.errors'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class FuselineError(Exception):
    """Base class of every error fuseline_nb raises on purpose.

    Examples
    --------
    >>> issubclass(CycleError, FuselineError)
    True
    """


class WorkflowDefinitionError(FuselineError, ValueError):
    """A workflow cannot be built from the given steps and edges.

    Examples
    --------
    >>> issubclass(DuplicateStepNameError, WorkflowDefinitionError)
    True
    """


class CycleError(WorkflowDefinitionError):
    """The step graph has a cycle; ``.cycle`` lists it, first step repeated last.

    Examples
    --------
    >>> CycleError(["load", "clean", "load"]).cycle
    ['load', 'clean', 'load']
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("workflow has a cycle: " + " -> ".join(self.cycle))

    def __reduce__(self) -> Any:  # (``args`` holds the message, not what __init__ takes)
        return (type(self), (self.cycle,))


class DuplicateStepNameError(WorkflowDefinitionError):
    """Two different steps were given the same explicit ``name=``.

    Examples
    --------
    >>> str(DuplicateStepNameError("load"))
    "two steps are named 'load': step names must be unique within a workflow"
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"two steps are named {name!r}: step names must be unique within a workflow"
        )

    def __reduce__(self) -> Any:
        return (type(self), (self.name,))


class DependencyError(WorkflowDefinitionError):
    """A ``Depends(...)`` that names something other than a step.

    Examples
    --------
    >>> issubclass(DependencyError, ValueError)
    True
    """


class ImpossibleJoinError(WorkflowDefinitionError):
    """An AND join whose inputs need different actions of one branching step: it can never run.

    Carries ``.join``, ``.branch`` (the branching step) and ``.actions`` (the two).

    Examples
    --------
    >>> err = ImpossibleJoinError("j", "g", "a", "b", "x", "y")
    >>> err.join, err.branch, err.actions
    ('j', 'g', ('a', 'b'))
    >>> "(x | y) >> j" in str(err)
    True
    """

    def __init__(self, join: str, branch: str, action_a: str, action_b: str, source_a: str, source_b: str) -> None:
        self.join, self.branch, self.actions = join, branch, (action_a, action_b)
        self._sources = (source_a, source_b)
        super().__init__(
            f"step {join!r} can never run: it is an AND join (every input must be reached), but its "
            f"input from {source_a!r} needs step {branch!r} to choose action {action_a!r} and its input "
            f"from {source_b!r} needs action {action_b!r}, and {branch!r} chooses one action per run. "
            f"To run {join!r} on whichever branch was taken, merge the branches with an OR group: "
            f"({source_a} | {source_b}) >> {join}, or one parameter Depends({source_a}, {source_b})"
        )

    def __reduce__(self) -> Any:
        return (type(self), (self.join, self.branch, *self.actions, *self._sources))


class MissingInputError(FuselineError, KeyError):
    """Run inputs are missing: a ``run_step`` parameter has no input, no dependency and no default.

    Raised before a run starts (``wf.run``, ``Session.submit``,
    ``dispatch_workflow``) naming every missing input and the steps that need it.

    Examples
    --------
    >>> str(MissingInputError("x", "Add"))
    "step 'Add' needs input 'x': pass it in the run's inputs, e.g. wf.run({'x': ...})"
    >>> print(MissingInputError.of({"x": ["Add", "Mul"], "y": ["Mul"]}))
    missing run inputs: 'x' (needed by steps 'Add', 'Mul'), 'y' (needed by step 'Mul'): pass them in the run's inputs, e.g. wf.run({'x': ..., 'y': ...})
    """

    def __init__(self, param: str, step: str) -> None:
        self.param = param
        self.step = step
        #: Every missing input with the steps that need it.
        self.missing: dict[str, list[str]] = {param: [step]}
        super().__init__(param)

    @classmethod
    def of(cls, missing: Mapping[str, Iterable[str]]) -> MissingInputError:
        """The error for several missing inputs: ``{input: [steps needing it]}``."""
        items = {k: list(v) for k, v in missing.items()}
        first = next(iter(items))
        err = cls(first, items[first][0])
        err.missing = items
        return err

    def __reduce__(self) -> Any:  # crosses process boundaries with every input named
        return (_missing_inputs, (self.missing,))

    def __str__(self) -> str:
        if len(self.missing) == 1 and len(self.missing[self.param]) == 1:
            return (
                f"step {self.step!r} needs input {self.param!r}: pass it in the run's "
                f"inputs, e.g. wf.run({{{self.param!r}: ...}})"
            )
        parts = []
        for name, steps in self.missing.items():
            who = ", ".join(repr(s) for s in steps)
            parts.append(f"{name!r} (needed by step{'s' if len(steps) > 1 else ''} {who})")
        example = ", ".join(f"{name!r}: ..." for name in self.missing)
        return (
            f"missing run inputs: {', '.join(parts)}: pass them in the run's inputs, "
            f"e.g. wf.run({{{example}}})"
        )


def _missing_inputs(missing: Mapping[str, Iterable[str]]) -> MissingInputError:
    return MissingInputError.of(missing)


class UnknownActionError(FuselineError, ValueError):
    """A step returned an action string that matches none of its edges.

    Examples
    --------
    >>> str(UnknownActionError("Review", "maybe", ["approve", "reject"]))
    "step 'Review' returned action 'maybe', which matches none of its edges (choices: ['approve', 'reject']) and it has no default edge"
    """

    def __init__(self, step: str, action: str, choices: Iterable[str]) -> None:
        self.step = step
        self.action = action
        self.choices = sorted(choices)
        super().__init__(
            f"step {step!r} returned action {action!r}, which matches none of its "
            f"edges (choices: {self.choices!r}) and it has no default edge"
        )

    def __reduce__(self) -> Any:
        return (type(self), (self.step, self.action, self.choices))


class StepFailedError(FuselineError, RuntimeError):
    r"""A run ended FAILED; ``.failures`` maps step name to its error text.

    Examples
    --------
    >>> str(StepFailedError("run-1", {"load": "ValueError: bad row"}))
    "run 'run-1' failed: load: ValueError: bad row"
    >>> print(StepFailedError("run-1", {"load": "ValueError: bad row"},
    ...                       {"load": 'Traceback (most recent call last):\n  File "cell.py", line 2, in load\n'}))
    run 'run-1' failed: load: ValueError: bad row
    <BLANKLINE>
    step 'load':
    Traceback (most recent call last):
      File "cell.py", line 2, in load
    """

    def __init__(self, run_id: str, failures: dict[str, str], tracebacks: Mapping[str, str] | None = None) -> None:
        self.run_id = run_id
        self.failures = dict(failures)
        #: Each failed step's traceback (from a worker too: same file names and source lines).
        self.tracebacks = {k: v for k, v in (tracebacks or {}).items() if v}
        detail = "; ".join(f"{k}: {v}" for k, v in self.failures.items())
        shown = [f"\n\nstep {k!r}:\n{tb.rstrip()}" for k, tb in list(self.tracebacks.items())[:3]]
        super().__init__(f"run {run_id!r} failed: {detail}" + "".join(shown))

    def __reduce__(self) -> Any:
        return (type(self), (self.run_id, self.failures, self.tracebacks))


for _public in (
    FuselineError,
    WorkflowDefinitionError,
    CycleError,
    DuplicateStepNameError,
    DependencyError,
    ImpossibleJoinError,
    MissingInputError,
    UnknownActionError,
    StepFailedError,
    _missing_inputs,
):
    _public.__module__ = "fuseline_nb.errors"  # where users (and pickles) find them
