"""The errors of the services a run goes through: the broker, its storage, workers, the HTTP service.

Public as :mod:`fuseline_nb.errors` (the tree is drawn there): each class
here says so in its ``__module__``, so messages, tracebacks and pickles name
``fuseline_nb.errors.StorageError`` wherever the class is defined.

Examples
--------
>>> from fuseline_nb.errors import StorageLockedError
>>> StorageLockedError.__module__
'fuseline_nb.errors'
"""

from __future__ import annotations

from typing import Any

from ._errors_definition import FuselineError


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

    def __reduce__(self) -> Any:  # (``args`` holds the message, not what __init__ takes)
        return (type(self), (self.run_id, self.args[0]))

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

    When a worker process could not load a shipped workflow,
    :attr:`workflow_key` names it.

    Examples
    --------
    >>> issubclass(PicklingError, TypeError)
    True
    >>> PicklingError("x").workflow_key is None
    True
    """

    #: ``(workflow id, version)`` of the workflow a worker process could not load, else ``None``.
    workflow_key: tuple[str, str] | None = None


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

    def __reduce__(self) -> Any:
        return (type(self), (self.status_code, self.code, self.args[0]))


for _public in (
    SchemaMismatchError,
    UnknownWorkflowError,
    UnknownRunError,
    RunNotFoundError,
    UnknownWorkerError,
    StaleReportError,
    PicklingError,
    ValueLoadError,
    StorageError,
    StorageLockedError,
    StorageVersionError,
    StorageClosedError,
    BrokerUnavailableError,
    WorkerError,
    TransportUnsupportedError,
    BrokerAuthError,
    BrokerRequestError,
):
    _public.__module__ = "fuseline_nb.errors"  # where users (and pickles) find them
