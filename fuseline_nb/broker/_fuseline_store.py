"""``broker._store``: a broker's runs seen through Fuseline's storage calls.

Fuseline's broker exposes its storage as ``broker._store``, and code written
for it (its own tests among them) reads run state with calls keyed by
``(workflow_id, instance_id, step_name)``. This view answers those calls from
the broker (live state first, then storage), so such code runs unchanged.
It reads; the one write it offers, :meth:`FuselineStoreView.enqueue`, goes
through the broker's lock (the broker drops a queued name its workflow does
not have, with a warning).

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> from fuseline_nb.broker import MemoryBroker
>>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="w")
>>> broker = MemoryBroker()
>>> run_id = broker.dispatch_workflow(wf.to_schema(), {"x": 2})
>>> broker._store.get_state("w", run_id, "one"), broker._store.get_inputs("w", run_id)
(<Status.PENDING: 'PENDING'>, {'x': 2})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import UnknownRunError
from ..workflow.runinfo import RunInfo
from ..workflow.status import Status

if TYPE_CHECKING:
    from .core import StorageBroker


class FuselineStoreView:
    """Fuseline's ``RuntimeStorage`` read calls over a :class:`StorageBroker`.

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> MemoryBroker()._store.get_state("wf", "no-such-run", "a") is None
    True
    """

    def __init__(self, broker: StorageBroker) -> None:
        self._broker = broker

    def _run(self, workflow_id: str, instance_id: str) -> RunInfo | None:
        try:
            info = self._broker.get_run(instance_id)
        except UnknownRunError:
            return None
        return info if info.workflow_id == workflow_id else None

    def get_state(self, workflow_id: str, instance_id: str, step_name: str) -> Status | None:
        """The step's state, or ``None`` for an unknown run or step."""
        info = self._run(workflow_id, instance_id)
        step = info.steps.get(step_name) if info is not None else None
        return step.state if step is not None else None

    def get_result(self, workflow_id: str, instance_id: str, step_name: str) -> Any:
        """The step's result (``None`` when it has none)."""
        info = self._run(workflow_id, instance_id)
        step = info.steps.get(step_name) if info is not None else None
        return step.result if step is not None else None

    def get_inputs(self, workflow_id: str, instance_id: str) -> dict[str, Any]:
        """The run's inputs (``{}`` for an unknown run)."""
        info = self._run(workflow_id, instance_id)
        return dict(info.inputs or {}) if info is not None else {}

    def get_assignment(self, workflow_id: str, instance_id: str, step_name: str) -> tuple[str, float] | None:
        """``(worker id, lease deadline)`` while the step is assigned, else ``None``."""
        broker = self._broker
        with broker._lock:
            run = broker._state.runs.get(instance_id)
            if run is None or run.key[0] != workflow_id:
                return None
            held = broker._state.holder(instance_id, step_name)
            return None if held is None or held.cancelled else (held.worker_id, held.deadline)

    def enqueue(self, workflow_id: str, instance_id: str, step_name: str) -> None:
        """Put ``step_name`` on the queue of a live run (ignored for an ended or unknown run)."""
        broker = self._broker
        with broker._lock:
            run = broker._state.runs.get(instance_id)
            if run is not None and run.key[0] == workflow_id:
                broker.storage.enqueue(instance_id, step_name)
