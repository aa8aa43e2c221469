"""In-memory :class:`RuntimeStorage`: nothing survives the process.

Examples
--------
>>> st = MemoryRuntimeStorage()
>>> st.create_run("r1", "wf", "1", {}, ["a", "b"], created_at=0.0)
>>> st.enqueue("r1", "a"); st.enqueue("r1", "a")
>>> st.fetch_next("r1"), st.fetch_next("r1")
('a', None)
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable
from typing import Any

from ...errors import StorageClosedError, UnknownRunError
from ...workflow.events import Event
from ...workflow.runinfo import RunInfo, StepInfo
from ...workflow.schema import WorkflowSchema
from ...workflow.status import Status
from .base import RuntimeStorage, batches_match


class _Run:
    __slots__ = ("events", "info", "order", "queue", "queued", "results")

    def __init__(self, info: RunInfo, order: list[str]) -> None:
        self.info = info  # its steps hold the saved records; a step never saved is PENDING
        self.order = order
        self.queue: deque[str] = deque()
        self.queued: set[str] = set()
        self.results: dict[str, Any] = {}
        self.events: list[Event] = []


@batches_match
class MemoryRuntimeStorage(RuntimeStorage):
    """Runs, queues, results and events in dicts.

    Examples
    --------
    >>> st = MemoryRuntimeStorage()
    >>> st.create_run("r1", "wf", "1", {"x": 1}, ["a"], created_at=0.0)
    >>> st.get_inputs("r1")
    {'x': 1}
    """

    def __init__(self) -> None:
        self._workflows: dict[tuple[str, str], WorkflowSchema] = {}
        self._runs: dict[str, _Run] = {}
        self._closed = False

    def _run(self, run_id: str) -> _Run:
        if self._closed:
            raise StorageClosedError("storage is closed")
        try:
            return self._runs[run_id]
        except KeyError:
            raise UnknownRunError(f"unknown run: {run_id!r}") from None

    def register_workflow(self, schema: WorkflowSchema) -> None:
        self._workflows[(schema.workflow_id, schema.version)] = schema  # the newest definition of its key

    def get_workflow(self, workflow_id: str, version: str) -> WorkflowSchema | None:
        return self._workflows.get((workflow_id, version))

    def list_workflows(self) -> list[WorkflowSchema]:
        return list(self._workflows.values())

    def create_run(self, run_id: str, workflow_id: str, version: str, inputs: dict[str, Any],
                   steps: Iterable[str], created_at: float) -> None:
        if self._closed:
            raise StorageClosedError("storage is closed")
        info = RunInfo(run_id, workflow_id, Status.RUNNING, {}, version, dict(inputs), created_at)
        self._runs[run_id] = _Run(info, list(steps))

    # The per-step methods look the run up inline (a broker calls them ~9 times a step);
    # _run() raises the errors for a closed storage or an unknown run.
    def enqueue(self, run_id: str, step: str) -> None:
        run = self._runs.get(run_id) if not self._closed else None
        if run is None:
            run = self._run(run_id)
        if step not in run.queued:
            run.queued.add(step)
            run.queue.append(step)

    def fetch_next(self, run_id: str) -> str | None:
        run = self._runs.get(run_id) if not self._closed else None
        if run is None:
            run = self._run(run_id)
        if not run.queue:
            return None
        step = run.queue.popleft()
        run.queued.discard(step)
        return step

    def save_step(self, run_id: str, step: str, info: StepInfo) -> None:
        run = self._runs.get(run_id) if not self._closed else None
        (run or self._run(run_id)).info.steps[step] = info

    def set_result(self, run_id: str, step: str, result: Any) -> None:
        run = self._runs.get(run_id) if not self._closed else None
        (run or self._run(run_id)).results[step] = result

    def get_result(self, run_id: str, step: str) -> Any:
        return self._run(run_id).results.get(step)

    def get_inputs(self, run_id: str) -> dict[str, Any]:
        return dict(self._run(run_id).info.input_values or {})

    def finalize_run(self, run_id: str, state: Status, finished_at: float) -> None:
        info = self._run(run_id).info
        info.state, info.finished_at = state, finished_at

    def record_event(self, event: Event) -> None:
        run = self._runs.get(event.run_id) if not self._closed else None
        (run or self._run(event.run_id)).events.append(event)

    # the batches: one run lookup per call
    def enqueue_steps(self, run_id: str, steps: list[str]) -> None:
        run = self._runs.get(run_id) if not self._closed else None
        run = run or self._run(run_id)
        queued, append = run.queued, run.queue.append
        for step in steps:
            if step not in queued:
                queued.add(step)
                append(step)

    def fetch_steps(self, run_id: str, n: int) -> list[str]:
        run = self._runs.get(run_id) if not self._closed else None
        queue = (run or self._run(run_id)).queue
        if not queue:
            return []
        out = [queue.popleft() for _ in range(min(n, len(queue)))]
        (run or self._run(run_id)).queued.difference_update(out)
        return out

    def save_steps(self, run_id: str, records: list[tuple[str, StepInfo]]) -> None:
        run = self._runs.get(run_id) if not self._closed else None
        (run or self._run(run_id)).info.steps.update(records)  # kept as given: load_run copies

    def set_results(self, run_id: str, results: list[tuple[str, Any]]) -> None:
        run = self._runs.get(run_id) if not self._closed else None
        (run or self._run(run_id)).results.update(results)

    def record_events(self, events: list[Event]) -> None:
        runs, closed = self._runs, self._closed
        for e in events:
            run = runs.get(e.run_id) if not closed else None
            (run or self._run(e.run_id)).events.append(e)

    def load_run(self, run_id: str) -> RunInfo | None:
        if run_id not in self._runs:
            return None
        run = self._run(run_id)
        info = copy.copy(run.info)
        saved, results = run.info.steps, run.results
        info.steps = {n: copy.copy(saved[n]) if n in saved else StepInfo() for n in run.order}
        for n, s in info.steps.items():
            s.result = results.get(n)
        return info

    def list_runs(self) -> list[RunInfo]:
        out = []
        for run in self._runs.values():
            info = copy.copy(run.info)
            info.steps = {}
            out.append(info)
        return out

    def unfinished_runs(self) -> list[str]:
        return [r for r, run in self._runs.items() if not run.info.state.is_final]

    def events(self, run_id: str) -> list[Event]:
        return list(self._run(run_id).events)

    def close(self) -> None:
        self._closed = True


__all__ = [
    "MemoryRuntimeStorage",
]
