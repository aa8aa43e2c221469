"""The running: executing a workflow model in this process.

One layer above the model (:mod:`fuseline_nb.workflow`) and the brokers, one
below the workers and the session (DESIGN §8):

- :mod:`~fuseline_nb.running.execute`: one attempt of one step (binding, hooks,
  retries, timeouts) — also what a worker process calls;
- :mod:`~fuseline_nb.running.local`: ``wf.run`` and :class:`PoolEngine` (inline or threads);
- :mod:`~fuseline_nb.running.asynchronous`: :class:`AsyncStep`, :class:`AsyncWorkflow`
  and the asyncio run path;
- :mod:`~fuseline_nb.running.batch`: batch steps and workflows;
- :mod:`~fuseline_nb.running.tracing`: trace files.

Examples
--------
>>> from fuseline_nb.running import PoolEngine
>>> from fuseline_nb import FunctionStep, Workflow
>>> def one() -> int:
...     return 1
>>> Workflow(outputs=[FunctionStep(one)]).run(execution_engine=PoolEngine(2))
1
"""

from __future__ import annotations

from .local import PoolEngine
from .tracing import FileTracer, Tracer

__all__ = ["FileTracer", "PoolEngine", "Tracer"]
