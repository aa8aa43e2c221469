"""The runners behind :meth:`Workflow.run <fuseline_nb.Workflow.run>` and what a run's inputs may be.

The model does not import the running (one layer up): :mod:`fuseline_nb.running`
installs its in-process runner here when it loads, and
:mod:`fuseline_nb.worker.inprocess` the cached one.

Examples
--------
>>> run_inputs({"x": 1})
{'x': 1}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runinfo import RunResult

#: The in-process runner behind :meth:`Workflow.run`. The model does not import
#: the running (one layer up); :mod:`fuseline_nb.running` installs it when it
#: loads, and ``import fuseline_nb`` always loads it.
_LOCAL_RUNNER: list[Callable[..., RunResult]] = []


def install_local_runner(runner: Callable[..., RunResult]) -> None:
    """Make ``runner(wf, inputs, engine=...)`` the engine of :meth:`Workflow.run` (the running calls this).

    Examples
    --------
    >>> from fuseline_nb.running.local import run_local
    >>> install_local_runner(run_local)
    >>> local_runner() is run_local
    True
    """
    _LOCAL_RUNNER[:] = [runner]


#: The runner of ``Workflow.run(cache=...)``: through a broker's result cache.
_CACHED_RUNNER: list[Callable[..., RunResult]] = []


def local_runner() -> Callable[..., RunResult]:
    """The runner installed by :func:`install_local_runner`.

    Examples
    --------
    >>> local_runner().__name__
    'run_local'
    """
    if not _LOCAL_RUNNER:
        raise RuntimeError("no in-process runner installed: import fuseline_nb (it loads fuseline_nb.running)")
    return _LOCAL_RUNNER[0]



def run_inputs(inputs: Any) -> dict[str, Any]:
    """A run's inputs as a fresh dict; a ``TypeError`` saying what to pass for anything else.

    Examples
    --------
    >>> run_inputs(None), run_inputs({"x": 1})
    ({}, {'x': 1})
    >>> run_inputs(5)
    Traceback (most recent call last):
    TypeError: run inputs must be a dict of input names to values, not int 5: e.g. wf.run({'x': 5})
    """
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"run inputs must be a dict of input names to values, not {type(inputs).__name__} "
            f"{inputs!r}: e.g. wf.run({{'x': {inputs!r}}})"
        )
    return dict(inputs)


__all__ = ["install_local_runner", "local_runner", "run_inputs"]
