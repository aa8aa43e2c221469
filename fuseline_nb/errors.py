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
    ├── TransportUnsupportedError (NotImplementedError) a call this client's transport does not offer
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

The classes live in ``_errors_definition.py`` (a definition and its runs) and
``_errors_service.py`` (broker, storage, workers, HTTP); this module is where
they are public (their ``__module__`` names it).
"""

from __future__ import annotations

from ._errors_definition import (  # the workflow's own errors
    CycleError,
    DependencyError,
    DuplicateStepNameError,
    FuselineError,
    ImpossibleJoinError,
    MissingInputError,
    StepFailedError,
    UnknownActionError,
    WorkflowDefinitionError,
)
from ._errors_definition import _missing_inputs as _missing_inputs  # older pickles name it here
from ._errors_service import (  # the broker's, storage's, workers' and HTTP service's
    BrokerAuthError,
    BrokerRequestError,
    BrokerUnavailableError,
    PicklingError,
    RunNotFoundError,
    SchemaMismatchError,
    StaleReportError,
    StorageClosedError,
    StorageError,
    StorageLockedError,
    StorageVersionError,
    TransportUnsupportedError,
    UnknownRunError,
    UnknownWorkerError,
    UnknownWorkflowError,
    ValueLoadError,
    WorkerError,
)

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
