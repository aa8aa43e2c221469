"""What :meth:`Session.submit <fuseline_nb.session.Session.submit>` makes of its arguments and says about them.

The run's inputs become values in the kernel, where they are born
(:func:`input_values`, pickled once); something that is not a workflow is
refused with a hint (:func:`not_a_workflow`); another definition submitted under
the same explicit ``version=`` while runs of the first are still going is
warned about (:func:`overtaken_message`);
a sweep's inputs are all checked before its first run starts (:func:`map_runs`).

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

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .broker._ctrlc import held_ctrl_c
from .errors import PicklingError
from .workflow.graph import Workflow, run_inputs
from .workflow.schema import WorkflowSchema
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
    """What a submit says about the runs still going of another definition under the same ``version=``.

    A workflow built without ``version=`` never gets here: it gets a version
    of its own while runs of another definition under its id are going.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> wf = Workflow(outputs=[FunctionStep(abs, name="a")], workflow_id="w", version="3")
    >>> print(overtaken_message(wf, ["r1"]).split(":")[0])
    run(s) r1 of workflow 'w' version '3' are still going
    """
    return (f"run(s) {', '.join(runs)} of workflow {wf.workflow_id!r} version {wf.version!r} are still going: "
            "this definition has their structure (step names and edges) and other code under the same "
            "version=, so the workers get it in their place and their remaining steps run the new code "
            "(their results are not cached); to keep each run to the code it started with, cancel them "
            "first (run.cancel()), give this definition another version=, or leave version= out (a "
            "definition then gets a version of its own while runs of another one are going)")


def register_warning(broker: Any, wf: Workflow, stacklevel: int = 2) -> None:
    """Register ``wf``'s schema with ``broker`` (before the workers get it); warn of the runs it overtakes.

    Only a definition under an explicit ``version=`` can overtake runs (see
    :func:`overtaken_message`); the broker stores nothing in the cache for them
    from then on.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> from fuseline_nb.broker import MemoryBroker
    >>> broker = MemoryBroker()
    >>> register_warning(broker, Workflow(outputs=[FunctionStep(abs, name="a")], workflow_id="w"))
    >>> [s.workflow_id for s in broker.list_workflows()]
    ['w']
    """
    register = getattr(broker, "register_workflow", None)
    overtaken = register(wf.to_schema()) if register is not None else None
    if overtaken:
        warnings.warn(overtaken_message(wf, overtaken), UserWarning, stacklevel=stacklevel + 1)


def live_versions(broker: Any) -> list[tuple[str, str]]:
    """``(workflow id, version)`` of the runs still going (see ``Workflow.settle_version``).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> from fuseline_nb.broker import MemoryBroker
    >>> broker = MemoryBroker()
    >>> _ = broker.dispatch_workflow(Workflow(outputs=[FunctionStep(abs, name="a")], workflow_id="w").to_schema(),
    ...                              {"x": -1})
    >>> live_versions(broker)
    [('w', '1')]
    """
    unfinished = getattr(broker, "unfinished_runs", None)
    return [(wid, version) for _, wid, version in unfinished()] if unfinished is not None else []


def idle_versions(wf: Workflow, registered: Iterable[WorkflowSchema],
                  live: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The versions of its own (``auto-…``) of ``wf``'s id no run still going needs, but ``wf``'s.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> wf = Workflow(outputs=[FunctionStep(abs, name="a")], workflow_id="w")
    >>> old = [WorkflowSchema("w", v) for v in ("1", "auto-a", "auto-b")] + [WorkflowSchema("x", "auto-c")]
    >>> idle_versions(wf, old, live=[("w", "auto-b")])
    [('w', 'auto-a')]
    """
    going, mine = set(live), (wf.workflow_id, wf.version)
    return [key for key in ((s.workflow_id, s.version) for s in registered)
            if key[0] == mine[0] and key[1].startswith("auto-") and key != mine and key not in going]


def not_a_workflow(obj: Any) -> str:
    """What ``Session.submit`` says about something that is not a :class:`Workflow`."""
    if callable(obj) and not isinstance(obj, type):
        name = getattr(obj, "__name__", None) or "func"
        return (
            f"Session.submit takes a Workflow, not the function {obj!r}: wrap it first, "
            f"e.g. session.submit(workflow_from_functions([{name}]), inputs)"
        )
    return f"Session.submit takes a Workflow, not {obj!r}: build one with Workflow(outputs=[...])"


def map_runs(wf: Workflow, inputs: Iterable[Mapping[str, Any]], submit: Callable[..., Any]) -> list[Any]:
    """``submit(wf, one)`` for each of ``inputs`` (``Session.map``), every one checked first.

    A mapping that is not one, or that misses an input, is refused before
    any run starts (its place named in a note); a run refused later (an
    input that cannot be pickled) notes the runs already started, which go on.
    A Ctrl-C meanwhile cancels the runs already started (no handle to them
    would be returned) and says so in a note.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> def f(x):
    ...     return x
    >>> wf = Workflow(outputs=[FunctionStep(f)])
    >>> try:
    ...     map_runs(wf, [{"x": 1}, {}], print)
    ... except KeyError as exc:
    ...     print(exc.__notes__)
    ['inputs[1] of session.map: refused before any run started']
    """
    inputs = list(inputs)
    schema = wf.to_schema()
    for i, one in enumerate(inputs):
        try:
            schema.check_inputs(run_inputs(one))
        except (KeyError, TypeError) as exc:  # MissingInputError is a KeyError
            exc.add_note(f"inputs[{i}] of session.map: refused before any run started")
            raise
    runs: list[Any] = []
    try:
        for one in inputs:
            runs.append(submit(wf, one))
    except Exception as exc:
        if runs:
            exc.add_note(f"inputs[{len(runs)}] of session.map was refused after {len(runs)} run(s) had started; "
                         f"they go on: {', '.join(str(r.id) for r in runs)} (run.cancel() stops one)")
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C stops the map: the runs it started have no handle, cancel them
        for run in runs:
            run.cancel("interrupted (Ctrl-C) while session.map submitted its runs")
        if runs:
            exc.add_note(f"session.map was interrupted after {len(runs)} run(s) had started: they were cancelled")
        raise
    return runs


def dispatch(broker: Any, schema: Any, values: dict[str, Value], cache: bool | None, rerun: Iterable[str]) -> str:
    """``broker.dispatch_workflow`` as ``Session.submit`` calls it; returns the run id.

    A Ctrl-C meanwhile (Jupyter's interrupt button) is held until the run is
    dispatched whole; the run is then cancelled (nothing would hold it: the
    submit raises ``KeyboardInterrupt`` instead of returning its handle).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> from fuseline_nb.broker import MemoryBroker
    >>> broker = MemoryBroker()
    >>> len(dispatch(broker, Workflow(outputs=[FunctionStep(lambda: 1, name="one")]).to_schema(), {}, None, ()))
    32
    """
    with held_ctrl_c() as pressed:
        if cache is None and not rerun:
            run_id: str = broker.dispatch_workflow(schema, values)
        else:
            run_id = broker.dispatch_workflow(schema, values, cache=cache, rerun=list(rerun))
        if pressed:
            broker.cancel_run(run_id, "interrupted (Ctrl-C) while it was submitted")
    return run_id


__all__ = ["dispatch", "idle_versions", "input_values", "live_versions", "map_runs", "not_a_workflow",
           "overtaken_message", "register_warning"]
