"""The exception tree of fuseline_nb.

Every error the library raises on purpose is one of these; each refines the
builtin it resembles so ``except ValueError`` still catches a bad definition::

    FuselineError
    ├── WorkflowDefinitionError (ValueError)      a workflow that cannot be built
    │   ├── CycleError                           carries ``.cycle``
    │   ├── DuplicateStepNameError               carries ``.name``
    │   ├── DependencyError                      a Depends(...) that points nowhere
    │   └── ImpossibleJoinError                  an AND join on two actions of one branch
    ├── MissingInputError (KeyError)             a run_step parameter with no value
    ├── UnknownActionError (ValueError)          a returned action with no edge
    ├── SchemaMismatchError (ValueError)         same id + version, other definition
    ├── UnknownWorkflowError (LookupError)       a schema the broker never saw
    ├── UnknownRunError (LookupError)            a run id the broker never saw
    │   └── RunNotFoundError (KeyError)          ... asked for by a user (get_run, cancel_run)
    ├── UnknownWorkerError (LookupError)         a worker id the broker does not know
    ├── StaleReportError (RuntimeError)          a report for an expired/old attempt
    ├── PicklingError (TypeError)                a step that cannot travel to a worker
    ├── ValueLoadError (ValueError)              a value's bytes cannot be unpickled here
    ├── StorageError (RuntimeError)              storage failures, translated
    │   ├── StorageLockedError                   the file is held by another process
    │   ├── StorageVersionError                  the file was written by a newer version
    │   └── StorageClosedError                   use after close()
    ├── BrokerUnavailableError (ConnectionError) a broker that cannot be reached
    ├── BrokerAuthError (PermissionError)        the broker service refused the token
    ├── BrokerRequestError (ValueError)          the broker service refused a request (4xx)
    ├── WorkerError (RuntimeError)               worker processes cannot start or load workflows
    └── StepFailedError (RuntimeError)           raised by Run.wait()/wf.run(raise_on_failure=True)

Examples
--------
>>> from fuseline_nb.errors import CycleError, FuselineError
>>> err = CycleError(["a", "b", "a"])
>>> isinstance(err, ValueError) and isinstance(err, FuselineError)
True
>>> str(err)
'workflow has a cycle: a -> b -> a'
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
        super().__init__(
            f"step {join!r} can never run: it is an AND join (every input must be reached), but its "
            f"input from {source_a!r} needs step {branch!r} to choose action {action_a!r} and its input "
            f"from {source_b!r} needs action {action_b!r}, and {branch!r} chooses one action per run. "
            f"To run {join!r} on whichever branch was taken, merge the branches with an OR group: "
            f"({source_a} | {source_b}) >> {join}, or one parameter Depends({source_a}, {source_b})"
        )


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


class SchemaMismatchError(FuselineError, ValueError):
    """A different definition was registered under an existing id and version.

    Examples
    --------
    >>> issubclass(SchemaMismatchError, ValueError)
    True
    """


class UnknownWorkflowError(FuselineError, LookupError):
    """A workflow id/version the broker or worker does not know.

    Examples
    --------
    >>> issubclass(UnknownWorkflowError, LookupError)
    True
    """


class UnknownRunError(FuselineError, LookupError):
    """A run id the broker does not know.

    Examples
    --------
    >>> issubclass(UnknownRunError, LookupError)
    True
    """


class RunNotFoundError(UnknownRunError, KeyError):
    """A run id that names no run (``get_run``, ``cancel_run``); ``except KeyError`` catches it.

    Examples
    --------
    >>> err = RunNotFoundError("abc")
    >>> err.run_id, str(err), isinstance(err, KeyError)
    ('abc', "unknown run: 'abc'", True)
    """

    def __init__(self, run_id: str, message: str | None = None) -> None:
        self.run_id = run_id
        super().__init__(message or f"unknown run: {run_id!r}")

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class UnknownWorkerError(FuselineError, LookupError):
    """A worker id the broker does not know (never registered, or the broker restarted).

    Examples
    --------
    >>> issubclass(UnknownWorkerError, LookupError)
    True
    """


class StaleReportError(FuselineError, RuntimeError):
    """A report for an assignment whose lease expired or that was re-assigned.

    Examples
    --------
    >>> issubclass(StaleReportError, RuntimeError)
    True
    """


class PicklingError(FuselineError, TypeError):
    """A step (or something it holds) cannot be sent to a worker process.

    Examples
    --------
    >>> issubclass(PicklingError, TypeError)
    True
    """


class ValueLoadError(FuselineError, ValueError):
    """A result or input cannot be unpickled in this process (a class it cannot import or rebuild).

    The message names the value (the step whose result it is, where known),
    its type and the unpickling error. A consuming step that cannot open its
    inputs FAILS with it (once: its retries would read the same bytes); the
    notebook gets it where it opens the result, never earlier.

    Examples
    --------
    >>> issubclass(ValueLoadError, ValueError)
    True
    """


class StorageError(FuselineError, RuntimeError):
    """A storage backend failed; the driver's error is the ``__cause__``.

    Examples
    --------
    >>> issubclass(StorageLockedError, StorageError)
    True
    """


class StorageLockedError(StorageError):
    """The storage file is held by another process.

    Examples
    --------
    >>> issubclass(StorageLockedError, RuntimeError)
    True
    """


class StorageVersionError(StorageError):
    """The storage file was written by a newer schema version.

    Examples
    --------
    >>> issubclass(StorageVersionError, StorageError)
    True
    """


class StorageClosedError(StorageError):
    """A storage (or broker, or session) was used after ``close()``.

    Examples
    --------
    >>> issubclass(StorageClosedError, StorageError)
    True
    """


class BrokerUnavailableError(FuselineError, ConnectionError):
    """The broker could not be reached.

    Examples
    --------
    >>> issubclass(BrokerUnavailableError, ConnectionError)
    True
    """


class WorkerError(FuselineError, RuntimeError):
    """Worker processes cannot start, or cannot load the workflows shipped to them.

    Examples
    --------
    >>> issubclass(WorkerError, RuntimeError)
    True
    """


class TransportUnsupportedError(FuselineError, NotImplementedError):
    """This client's transport does not offer the call (a worker's pipe does not cancel runs).

    Examples
    --------
    >>> issubclass(TransportUnsupportedError, NotImplementedError)
    True
    """


class BrokerAuthError(FuselineError, PermissionError):
    """The broker service refused the request's bearer token (HTTP 401).

    Examples
    --------
    >>> issubclass(BrokerAuthError, PermissionError)
    True
    """


class BrokerRequestError(FuselineError, ValueError):
    """The broker service refused a request as malformed; the message names the field.

    ``status_code`` is the HTTP status (400, 413, 422, ...), ``code`` the
    service's error code (``invalid_request``, ``payload_too_large``, ...).

    Examples
    --------
    >>> err = BrokerRequestError(422, "invalid_request", "report.attempt: must be >= 1")
    >>> err.status_code, str(err)
    (422, 'report.attempt: must be >= 1')
    """

    def __init__(self, status_code: int, code: str, message: str) -> None:
        self.status_code = status_code
        self.code = code
        super().__init__(message)


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


__all__ = [
    "BrokerAuthError",
    "BrokerRequestError",
    "BrokerUnavailableError",
    "CycleError",
    "DependencyError",
    "DuplicateStepNameError",
    "FuselineError",
    "ImpossibleJoinError",
    "MissingInputError",
    "PicklingError",
    "RunNotFoundError",
    "SchemaMismatchError",
    "StaleReportError",
    "StepFailedError",
    "StorageClosedError",
    "StorageError",
    "StorageLockedError",
    "StorageVersionError",
    "TransportUnsupportedError",
    "UnknownActionError",
    "UnknownRunError",
    "UnknownWorkerError",
    "UnknownWorkflowError",
    "ValueLoadError",
    "WorkerError",
    "WorkflowDefinitionError",
]
