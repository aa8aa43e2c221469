"""``wf.run(inputs, cache=...)``: a run in this process, through a broker's result cache.

The run goes through a broker (so cache hits are decided as for
``Session.submit``) and its steps run here, in a :class:`ProcessEngine` on
this thread. ``cache=True`` uses one in-memory cache for the whole process;
a :class:`~fuseline_nb.Session` or a broker uses theirs, so ``wf.run`` and
``session.submit`` share results over the same store.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> def square(x: int) -> int:
...     return x * x
>>> wf = Workflow(outputs=[FunctionStep(square)])
>>> wf.run({"x": 12}, cache=True), wf.last_run.steps["square"].cached
(144, False)
>>> wf.run({"x": 12}, cache=True), wf.last_run.steps["square"].cached
(144, True)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

from ..broker.clients import LocalBrokerClient
from ..broker.core import MemoryBroker, StorageBroker
from ..running.local import RunResult
from ..workflow.events import Event
from ..workflow.graph import _CACHED_RUNNER, Workflow
from .engine import ProcessEngine

_default: MemoryBroker | None = None
_default_lock = threading.Lock()


def _broker_of(cache: Any) -> StorageBroker:
    global _default
    if cache is True:
        with _default_lock:
            if _default is None:
                _default = MemoryBroker(cache=True)
            return _default
    broker = getattr(cache, "broker", cache)  # a Session, or a broker
    if isinstance(broker, StorageBroker):
        return broker
    raise TypeError(f"cache= takes True, a Session or a broker, not {cache!r}")


def run_with_cache(wf: Workflow, inputs: dict[str, Any], cache: Any, rerun: Iterable[str] = ()) -> RunResult:
    """Run ``wf`` here through the broker ``cache`` names; return its :class:`RunResult`."""
    broker = _broker_of(cache)
    done = threading.Event()
    run_ids: list[str] = []

    def on_event(event: Event) -> None:
        if event.kind == "run_finished" and event.run_id in run_ids:
            done.set()

    # a Session's submits from other threads wait while this run's version is settled and dispatched
    with getattr(cache, "_submitting", None) or nullcontext():
        wf.refresh()
        wf.settle_version(broker.list_workflows(), lambda: [(w, v) for _, w, v in broker.unfinished_runs()])
        pool = getattr(cache, "pool", None)  # a Session's worker processes take steps of this run too:
        if pool is not None and hasattr(pool, "add_workflow"):  # they get this definition first
            broker.register_workflow(wf.to_schema())
            pool.add_workflow(wf, refresh=False)
        engine = ProcessEngine(LocalBrokerClient(broker), [wf], name="in-process")
        unsubscribe = broker.subscribe(on_event)
        try:
            run_id = broker.dispatch_workflow(wf.to_schema(), inputs, cache=True, rerun=list(rerun))
        except BaseException:
            unsubscribe()
            broker.unregister_worker(engine.worker_id)
            raise
    try:
        run_ids.append(run_id)
        while not broker.get_run(run_id).done:
            engine.work(max_steps=None)
            done.wait(0.05)  # steps another worker of the same broker holds
    finally:
        unsubscribe()
        broker.unregister_worker(engine.worker_id)
    info = broker.get_run(run_id)
    outs = [info.steps[n].result if n in info.steps else None for n in wf.output_names]
    result = RunResult(info.run_id, info.workflow_id, info.state, info.steps, info.version, info.inputs,
                       info.created_at, info.finished_at, outputs=outs[0] if len(outs) == 1 else outs)
    wf.state = info.state
    for name, step_info in info.steps.items():
        wf.steps[name].state = step_info.state
    wf.__dict__["_last_run"] = result
    return result


_CACHED_RUNNER[:] = [run_with_cache]

__all__ = ["run_with_cache"]
