"""Export a workflow's structure to a file, and load it back.

:class:`YamlExporter` writes the :class:`~fuseline_nb.workflow.schema.WorkflowSchema`
as YAML (every step by name, every edge with its action and OR group,
outputs and policies); :func:`load_yaml` rebuilds the equal schema, ready
for a broker (``broker.register_worker([schema])``) or a diff.

Examples
--------
>>> import os, tempfile
>>> from fuseline_nb import FunctionStep, Workflow
>>> a, b = FunctionStep(lambda: "go", name="a"), FunctionStep(lambda: 1, name="b")
>>> _ = (a - "go") >> b
>>> wf = Workflow(outputs=[b], workflow_id="demo")
>>> path = os.path.join(tempfile.mkdtemp(), "wf.yaml")
>>> wf.export(path)
>>> load_yaml(path) == wf.to_schema()
True
>>> "action: go" in open(path).read() and open(path).read() == wf.to_schema().to_yaml()
True
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any

import yaml

from ..errors import WorkflowDefinitionError
from .schema import WorkflowSchema

# libyaml's C loader and dumper are about ten times faster than the pure-Python ones.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _schema(workflow: Any) -> WorkflowSchema:
    if isinstance(workflow, WorkflowSchema):
        return workflow
    to_schema = getattr(workflow, "to_schema", None)
    if not callable(to_schema):
        raise TypeError(f"can only export a Workflow or a WorkflowSchema, not {workflow!r}")
    schema = to_schema()
    if not isinstance(schema, WorkflowSchema):
        raise TypeError(f"{workflow!r}.to_schema() returned {type(schema).__name__}, not WorkflowSchema")
    return schema


class Exporter(ABC):
    """Writes a workflow (or its schema) to ``path``. Subclass and implement :meth:`export`.

    Examples
    --------
    >>> import json, os, tempfile
    >>> class JsonExporter(Exporter):
    ...     def export(self, workflow, path):
    ...         with open(path, "w") as fh:
    ...             fh.write(_schema(workflow).to_json())
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> wf = Workflow(outputs=[FunctionStep(len, name="size")], workflow_id="w")
    >>> p = os.path.join(tempfile.mkdtemp(), "wf.json")
    >>> wf.export(p, exporter=JsonExporter())
    >>> json.load(open(p))["workflow_id"]
    'w'
    """

    @abstractmethod
    def export(self, workflow: Any, path: str | os.PathLike[str]) -> None:
        """Write ``workflow`` (a ``Workflow`` or a ``WorkflowSchema``) to ``path``."""


class YamlExporter(Exporter):
    """Writes the workflow's schema as YAML; :meth:`load` reads it back.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> wf = Workflow(outputs=[FunctionStep(len, name="size")], workflow_id="w")
    >>> print(YamlExporter().dumps(wf).splitlines()[0])
    workflow_id: w
    """

    def dumps(self, workflow: Any) -> str:
        """The YAML text of ``workflow``'s schema (``WorkflowSchema.to_yaml()``).

        Steps are keyed by name (``steps: {load: {kind: ..., ...}}``), as in
        Fuseline's export.
        """
        data = _schema(workflow).to_dict()
        data["steps"] = {s.pop("name"): s for s in data["steps"]}
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)

    def export(self, workflow: Any, path: str | os.PathLike[str]) -> None:
        """Write the YAML of ``workflow`` to ``path``."""
        text = self.dumps(workflow)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> WorkflowSchema:
        """Read a schema written by :meth:`export` (see :func:`load_yaml`)."""
        return load_yaml(path)


def schema_from_yaml(text: str, source: str = "<yaml>") -> WorkflowSchema:
    """Parse YAML text written by :class:`YamlExporter` into a :class:`WorkflowSchema`.

    Raises :class:`~fuseline_nb.errors.WorkflowDefinitionError` naming
    ``source`` when the text is not a workflow schema.

    Examples
    --------
    >>> schema_from_yaml("workflow_id: w\\nsteps:\\n  a:\\n    kind: step\\n").step_names
    ('a',)
    >>> schema_from_yaml("workflow_id: w\\nsteps:\\n- name: a\\n").step_names  # the list form
    ('a',)
    >>> schema_from_yaml("- 1", source="x.yaml")
    Traceback (most recent call last):
    fuseline_nb.errors.WorkflowDefinitionError: x.yaml is not a workflow schema: expected a mapping with 'workflow_id', got list
    """
    try:
        data = yaml.load(text, Loader=_Loader)  # a safe loader (CSafeLoader or SafeLoader)
    except yaml.YAMLError as exc:
        raise WorkflowDefinitionError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "workflow_id" not in data:
        raise WorkflowDefinitionError(
            f"{source} is not a workflow schema: expected a mapping with 'workflow_id', "
            f"got {type(data).__name__}"
        )
    steps = data.get("steps")
    if isinstance(steps, dict):  # keyed by name (what dumps writes); a list of steps reads too
        data["steps"] = [{**(spec or {}), "name": str(name)} for name, spec in steps.items()]
    try:
        return WorkflowSchema.from_dict(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise WorkflowDefinitionError(f"{source} is not a workflow schema: bad field {exc}") from exc


def load_yaml(path: str | os.PathLike[str]) -> WorkflowSchema:
    """Read a :class:`WorkflowSchema` from a YAML file written by :class:`YamlExporter`.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "w.yaml")
    >>> _ = open(p, "w").write("workflow_id: w\\nversion: '2'\\n")
    >>> load_yaml(p).version
    '2'
    """
    with open(path, encoding="utf-8") as fh:
        return schema_from_yaml(fh.read(), source=os.fspath(path))


__all__ = ["Exporter", "YamlExporter", "load_yaml", "schema_from_yaml"]
