"""The one ``MODULE:ATTR`` loader of the command line (``fuseline-nb run``, ``fuseline-nb worker``).

``MODULE`` is imported (the current directory first on the path, as
``python -m`` would find it); ``ATTR`` (dotted names allowed) is a
:class:`~fuseline_nb.workflow.graph.Workflow`, or a function called with no
arguments that returns one. Whatever goes wrong is said with the spec and
the culprit: the module that cannot be imported (and why), the attribute it
lacks, the builder that raised, the object that is not a workflow.

Examples
--------
>>> load_workflow("fuseline_nb.examples:tour").workflow_id
'tour'
>>> load_workflow("fuseline_nb.examples:build_tour").workflow_id  # a builder is called
'tour'
>>> load_workflow("fuseline_nb.examples:nothing")
Traceback (most recent call last):
ValueError: workflow 'fuseline_nb.examples:nothing': module 'fuseline_nb.examples' has no attribute 'nothing'
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from ..workflow.graph import Workflow


def load_workflow(spec: str) -> Workflow:
    """The workflow ``MODULE:ATTR`` names (a builder function is called).

    Raises
    ------
    ValueError
        ``spec`` is not ``MODULE:ATTR``, the module cannot be imported, it
        lacks the attribute, or the builder raised; the message names which.
    TypeError
        The attribute (or what the builder returned) is not a Workflow.

    Examples
    --------
    >>> load_workflow("fuseline_nb.examples")
    Traceback (most recent call last):
    ValueError: workflow 'fuseline_nb.examples': expected MODULE:ATTR, e.g. fuseline_nb.examples:tour
    >>> load_workflow("fuseline_nb.examples:__name__")
    Traceback (most recent call last):
    TypeError: workflow 'fuseline_nb.examples:__name__' is a str, not a Workflow: name a Workflow or a function returning one
    """
    module_name, sep, attr = str(spec).partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"workflow {spec!r}: expected MODULE:ATTR, e.g. fuseline_nb.examples:tour")
    if os.getcwd() not in sys.path:  # modules next to the user, as `python -m` would find them
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"workflow {spec!r}: cannot import module {module_name!r} ({exc}); is it on "
                         "PYTHONPATH or in the current directory?") from exc
    except Exception as exc:  # the module itself failed while importing: say which and how
        raise ValueError(f"workflow {spec!r}: importing module {module_name!r} raised "
                         f"{type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"workflow {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Workflow):
        try:
            obj = obj()
        except Exception as exc:
            raise ValueError(f"workflow {spec!r}: calling {attr}() to build the workflow raised "
                             f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Workflow):
        raise TypeError(f"workflow {spec!r} is a {type(obj).__name__}, not a Workflow: name a Workflow or a "
                        "function returning one")
    return obj


def load_workflows(specs: list[str]) -> list[Workflow]:
    """The workflows ``specs`` name (:func:`load_workflow` each), refused when two give one ``(workflow id,
    version)`` with other code: a worker holds one definition per id and version, so the runs of one would
    run the other's code (two pipelines made by one function share their structure, so their derived id).

    Raises
    ------
    ValueError
        As :func:`load_workflow`, or two specs name different definitions under one id and version.

    Examples
    --------
    >>> [wf.workflow_id for wf in load_workflows(["fuseline_nb.examples:tour", "fuseline_nb.examples:build_tour"])]
    ['tour', 'tour']
    """
    from ..workflow._graph_adopt import same_contents

    loaded = [load_workflow(spec) for spec in specs]
    first: dict[tuple[str, str], tuple[str, Workflow]] = {}
    for spec, wf in zip(specs, loaded, strict=True):
        key = (wf.workflow_id, wf.version)
        other = first.setdefault(key, (spec, wf))
        if other[1] is not wf and not same_contents(other[1].to_schema(), wf.to_schema()):
            raise ValueError(
                f"workflows {other[0]!r} and {spec!r} are two definitions under one workflow id {key[0]!r} and "
                f"version {key[1]!r} (the same steps and edges, other code): a worker holds one of them, so "
                "the runs of the other would run its code; give each its own workflow_id= (or version=)")
    return loaded


__all__ = ["load_workflow", "load_workflows"]
