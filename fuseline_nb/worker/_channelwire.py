"""The process channel's wire: its message kinds, its protocol version and its codec.

:mod:`fuseline_nb.worker.channel` (the worker's client) and
:mod:`fuseline_nb.worker.requests` (the kernel's answers) speak this
vocabulary (and :class:`ChannelClosed`, what a worker's client raises when the
kernel closes the channel); both import it from here, and ``channel``
re-exports it. A
message is ``(kind, args...)`` pickled once (:func:`encode` /
:func:`decode`); errors cross as ``(type name, message)`` and are raised
again as the same class (:func:`rebuild_error`).

Examples
--------
>>> decode(encode(("ok", 1)))
('ok', 1)
>>> "report_and_get" in REQUEST_KINDS
True
"""

from __future__ import annotations

import builtins
import pickle
from typing import Any, Final, Literal

from .. import errors

#: Bumped when a message changes shape; a worker of another version is refused.
PROTOCOL_VERSION: Final = 6  # 6: values in reports and assignments travel as their fields (_pipeforms)

RequestKind = Literal[
    "hello", "load_error", "register_worker", "unregister_worker", "get_step", "report_and_get",
    "report_step", "reports", "keep_alive", "dispatch_workflow", "list_workers", "list_workflows", "get_run",
    "list_runs", "status",
]
REQUEST_KINDS: Final[tuple[str, ...]] = (
    "hello", "load_error", "register_worker", "unregister_worker", "get_step", "report_and_get",
    "report_step", "reports", "keep_alive", "dispatch_workflow", "list_workers", "list_workflows", "get_run",
    "list_runs", "status",
)
class ChannelClosed(errors.BrokerUnavailableError):
    """The kernel closed the channel or asked the worker to stop.

    Examples
    --------
    >>> issubclass(ChannelClosed, ConnectionError)
    True
    """


ReplyKind = Literal["ok", "error", "assignments", "workflows", "stop"]
REPLY_KINDS: Final[tuple[str, ...]] = ("ok", "error", "assignments", "workflows", "stop")
#: Requests the kernel never answers (a worker holding more work does not wait).
ONE_WAY: Final = frozenset({"reports"})

#: A workflow as shipped to workers: ``((workflow_id, version), cloudpickle bytes)``.
WorkflowBlob = tuple[tuple[str, str], bytes]


# -- codec ----------------------------------------------------------------------------
def encode(message: tuple[Any, ...]) -> bytes:
    """The bytes of one pipe message: ``(kind, args...)`` of plain data and broker messages.

    The broker's dataclasses (:class:`StepAssignment`, :class:`StepReport`,
    ``RunInfo``...) travel as themselves; user data inside them is already a
    :class:`~fuseline_nb.workflow.value.Value`, which pickles as its bytes,
    so nothing here pickles a user object again.

    Examples
    --------
    >>> decode(encode(("ok", [1, 2])))
    ('ok', [1, 2])
    """
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes) -> tuple[Any, ...]:
    """Inverse of :func:`encode` (user values stay closed).

    Examples
    --------
    >>> from fuseline_nb.broker.base import StepReport
    >>> from fuseline_nb.workflow.status import Status
    >>> from fuseline_nb.workflow.value import Value
    >>> r = StepReport("wf", "r1", "s", Status.SUCCEEDED, Value.of({"n": 1}))
    >>> back = decode(encode(("report", r)))[1]
    >>> back == r, back.result.loaded
    (True, False)
    """
    return pickle.loads(data)  # type: ignore[no-any-return]


def rebuild_error(type_name: str, message: str) -> Exception:
    """The exception a broker raised, rebuilt on the other side of the channel."""
    cls = getattr(errors, type_name, None) or getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # a class whose constructor wants more than a message
            pass
    return RuntimeError(f"{type_name}: {message}")
