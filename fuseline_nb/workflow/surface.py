"""What a :class:`~fuseline_nb.Workflow` offers beside building and running: export, dispatch, display,
and Fuseline's names for what it holds.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="w")
>>> wf.workflow_version, repr(wf)
('1', "<Workflow 'w' v1: 1 steps>")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .runners import run_inputs

if TYPE_CHECKING:
    from .runinfo import RunResult
    from .schema import WorkflowSchema
    from .steps import Step


class Surface:
    """The part of :class:`~fuseline_nb.Workflow` that reads a built workflow (a base class).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> isinstance(Workflow(outputs=[FunctionStep(len, name="n")]), Surface)
    True
    """

    workflow_id: str
    version: str
    steps: dict[str, Step]
    workflow_instance_id: str | None

    if TYPE_CHECKING:  # what the Workflow this is mixed into provides (no stubs at run time)
        def to_schema(self) -> WorkflowSchema: ...

        def __len__(self) -> int: ...

    def export(self, path: Any, exporter: Any = None) -> None:
        """Write the workflow's structure to ``path`` (YAML unless ``exporter`` says otherwise).

        Examples
        --------
        >>> import os, tempfile
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> p = os.path.join(tempfile.mkdtemp(), "wf.yaml")
        >>> Workflow(outputs=[FunctionStep(len, name="size")]).export(p)
        >>> "  size:" in open(p).read()
        True
        """
        from .exporters import YamlExporter

        (exporter or YamlExporter()).export(self, path)

    def dispatch(self, broker: Any, inputs: Mapping[str, Any] | None = None) -> str:
        """Queue a run on ``broker`` (or a broker client); return the run id.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> from fuseline_nb.broker import MemoryBroker
        >>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")])
        >>> isinstance(wf.dispatch(MemoryBroker()), str)
        True
        """
        run_id = str(broker.dispatch_workflow(self.to_schema(), run_inputs(inputs)))
        self.workflow_instance_id = run_id  # Fuseline's name for the latest run's id
        return run_id

    def _step_name_map(self) -> dict[Step, str]:
        """Each step object mapped to its name (Fuseline's helper; ours are the names, not ``step0``).

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> one = FunctionStep(lambda: 1, name="one")
        >>> Workflow(outputs=[one])._step_name_map()[one]
        'one'
        """
        return {step: name for name, step in self.steps.items()}

    @property
    def workflow_version(self) -> str:
        """Fuseline's name for :attr:`version`."""
        return self.version

    @property
    def last_run(self) -> RunResult | None:
        """The :class:`RunResult` of the latest :meth:`run`."""
        return self.__dict__.get("_last_run")

    def __repr__(self) -> str:
        return f"<Workflow {self.workflow_id!r} v{self.version}: {len(self)} steps>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        try:
            from ..views.display import workflow_mimebundle
        except ImportError:
            return {"text/plain": repr(self)}
        return workflow_mimebundle(self)


__all__ = ["Surface"]
