"""A workflow the worker processes cannot load: dropped from the pool, its runs failed.

A worker process that cannot unpickle a shipped workflow (an object of the
notebook pickled by name, a module only the kernel can import) says which one
and ends. The pool (:func:`on_load_error`) then drops that workflow's bytes (:func:`without`, so no
replacement process is sent them again) and :func:`fail_queued` fails the
steps its runs have queued, through the broker, with the worker's message:
those runs end FAILED and every other workflow goes on on the same pool.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> from fuseline_nb.broker import MemoryBroker
>>> from fuseline_nb.broker.clients import LocalBrokerClient
>>> wf = Workflow(outputs=[FunctionStep(len, name="n")], workflow_id="bad")
>>> broker = MemoryBroker()
>>> run_id = broker.dispatch_workflow(wf.to_schema(), {"obj": "abc"})
>>> fail_queued(LocalBrokerClient(broker), wf.to_schema(), "workflow 'bad' cannot be loaded")
1
>>> info = broker.get_run(run_id)
>>> info.state.value, info.steps["n"].error
('FAILED', "WorkerError: workflow 'bad' cannot be loaded")
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..broker.clients import BrokerClient
from ..broker.messages import StepReport
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status

Key = tuple[str, str]

_ROUNDS = 10_000  # a RetryPolicy re-queues a failed step at once: its attempts are failed too (bounded)


def without(blobs: list[Any], key: Key, endpoints: Iterable[Any]) -> list[Any]:
    """``blobs`` (``(key, bytes)``, oldest first) without ``key``'s; each endpoint's ``shipped``
    count (how many of the list its process has) is moved to the shorter list.

    Examples
    --------
    >>> class Ep:
    ...     shipped = 3
    >>> ep = Ep()
    >>> without([(("a", "1"), b"x"), (("bad", "1"), b"y"), (("b", "1"), b"z")], ("bad", "1"), [ep]), ep.shipped
    ([(('a', '1'), b'x'), (('b', '1'), b'z')], 2)
    """
    for ep in endpoints:
        ep.shipped = sum(1 for k, _ in blobs[:ep.shipped] if k != key)
    return [(k, b) for k, b in blobs if k != key]


def forget(key: Key, blobs: list[Any], endpoints: Iterable[Any], tables: Iterable[dict[Key, Any]],
           pruned: set[Key]) -> list[Any]:
    """``blobs`` without ``key``'s (:func:`without`), ``key`` gone from each of ``tables`` and ``pruned``: what a
    pool holds of a workflow it lets go (one its processes cannot load, or a version no run needs).

    Examples
    --------
    >>> shipped, pruned = {("a", "1"): "wf a", ("b", "1"): "wf b"}, {("b", "1")}
    >>> forget(("b", "1"), [(("a", "1"), b"x"), (("b", "1"), b"y")], [], [shipped], pruned), shipped, pruned
    ([(('a', '1'), b'x')], {('a', '1'): 'wf a'}, set())
    """
    for table in tables:
        table.pop(key, None)
    pruned.discard(key)
    return without(blobs, key, endpoints)


def on_load_error(pool: Any, ep: Any, text: str, key: Key | None = None) -> None:
    """``WorkerPool.on_load_error``: a worker could not load the shipped workflow ``key``: the pool drops it,
    its runs' queued steps fail.

    The process ends and is replaced (it is not a crash); no new process
    is sent those bytes; other workflows go on. Without a key the pool
    cannot run its workflows (``pool.error``).
    """
    pool._sup.load_failed(ep, text, key)
    if key is None:
        return
    with pool._lock:  # (a second process failing on the same bytes finds them dropped already)
        schema = pool._shipped_schema.pop(key, None) or pool._unloadable.get(key, (None, ""))[0]
        if schema is None:
            return
        pool._unloadable[key] = (schema, text)
        pool._drop(key)
    if pool._server is not None:
        pool._server.wake()  # it asks for the shorter list
    fail_queued(pool.client, schema, text)


def fail_queued(client: BrokerClient, schema: WorkflowSchema, text: str) -> int:
    """Fail every queued step of ``schema``'s runs with ``WorkerError: text``; returns how many.

    A worker serving only that workflow takes them and reports them FAILED
    (the broker's own calls: its state rules apply, the history records them),
    then leaves. Steps a failure makes unreachable end as the broker decides.
    """
    error = f"WorkerError: {text}"
    wid = client.register_worker([schema], f"could not load {schema.workflow_id!r}")
    failed = 0
    try:
        for _ in range(_ROUNDS):
            taken = client.get_steps(wid, 256)
            if not taken:
                break
            for a in taken:
                client.report_step(wid, StepReport(a.workflow_id, a.run_id, a.step_name, Status.FAILED,
                                                   attempt=a.attempt, error=error, finished_at=time.time()))
            failed += len(taken)
    finally:
        client.unregister_worker(wid)
    return failed


def fail_live(broker: Any, client: BrokerClient, unloadable: dict[Key, tuple[WorkflowSchema, str]]) -> None:
    """:func:`fail_queued` for each workflow of ``unloadable`` (key -> its schema and why) a live run
    of ``broker`` belongs to (a run submitted as its load failed: its steps were queued after).

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> fail_live(MemoryBroker(), None, {("bad", "1"): (None, "why")})   # no live run: nothing asked
    """
    live = {(wf_id, version) for _, wf_id, version in broker.unfinished_runs()}
    for key in live.intersection(unloadable):
        if (bad := unloadable.get(key)) is not None:  # (shipped again meanwhile: no longer failed)
            fail_queued(client, *bad)


__all__ = ["fail_live", "fail_queued", "forget", "on_load_error", "without"]
