"""What :meth:`Session.submit <fuseline_nb.session.Session.submit>` makes of its arguments and says about them.

The run's inputs become values in the kernel, where they are born
(:func:`input_values`, pickled once); something that is not a workflow is
refused with a hint (:func:`not_a_workflow`); an edited workflow submitted
while runs of it are still going is warned about (:func:`overtaken_message`).

Examples
--------
>>> sorted(input_values({"n": 3}))
['n']
>>> import threading
>>> try:
...     input_values({"lock": threading.Lock()})
... except PicklingError as exc:
...     print(str(exc).split(":")[0])
input 'lock' (a lock) cannot be sent to a worker process
>>> print(not_a_workflow(42))
Session.submit takes a Workflow, not 42: build one with Workflow(outputs=[...])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import PicklingError
from .workflow.graph import Workflow
from .workflow.value import Value


def input_values(inputs: Mapping[str, Any]) -> dict[str, Value]:
    """The run's inputs made values here, where they are born (pickled once)."""
    out = {}
    for key, value in inputs.items():
        try:
            out[key] = Value.of(value)
        except Exception as exc:
            raise PicklingError(
                f"input {key!r} (a {type(value).__name__}) cannot be sent to a worker process: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return out


def overtaken_message(wf: Workflow, runs: list[str]) -> str:
    """What a submit of an edited workflow says about its runs still going."""
    return (f"run(s) {', '.join(runs)} of workflow {wf.workflow_id!r} are still going: the workers get this "
            "edited definition now, so their remaining steps run the new code (and store nothing in the cache); "
            "cancel them first (run.cancel()) to keep each run to one version of the code")


def not_a_workflow(obj: Any) -> str:
    """What ``Session.submit`` says about something that is not a :class:`Workflow`."""
    if callable(obj) and not isinstance(obj, type):
        name = getattr(obj, "__name__", None) or "func"
        return (
            f"Session.submit takes a Workflow, not the function {obj!r}: wrap it first, "
            f"e.g. session.submit(workflow_from_functions([{name}]), inputs)"
        )
    return f"Session.submit takes a Workflow, not {obj!r}: build one with Workflow(outputs=[...])"


__all__ = ["input_values", "not_a_workflow", "overtaken_message"]
