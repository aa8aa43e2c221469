"""Collecting a workflow's steps from its outputs, resolving ``Depends`` and naming steps.

Examples
--------
>>> from fuseline_nb import FunctionStep
>>> a, b = FunctionStep(lambda: 1, name="a"), FunctionStep(lambda: 2, name="b")
>>> _ = a >> b
>>> [s.name for s in collect([b])]
['b', 'a']
"""

from __future__ import annotations

from collections import deque
from typing import Any

import networkx as nx

from ..errors import DependencyError, DuplicateStepNameError
from .steps import FunctionStep, Step, known_function_step, step_for_function


def collect(outputs: list[Step]) -> list[Step]:
    """Every step linked to ``outputs`` by edges or ``Depends``, in discovery order."""
    seen: set[int] = set()
    order: list[Step] = []
    work = deque(outputs)
    while work:
        s = work.popleft()
        if id(s) in seen:
            continue
        seen.add(id(s))
        order.append(s)
        work.extend(s.__dict__.get("_incoming", ()))
        for _, dep in s.dependencies():
            for d in dep.steps:
                if isinstance(d, Step):
                    work.append(d)
                elif callable(d) and not isinstance(d, type):
                    known = known_function_step(d)  # FunctionStep(f) wired elsewhere: the same step
                    if known is not None:
                        work.append(known)
        work.extend(t for t, _, _ in s.edges)
    return order


def topological(steps: list[Step], deps: dict[int, dict[str, tuple[Step, ...]]]) -> list[Step]:
    """``steps`` in a topological order (discovery order breaks ties), so derived
    names number upstream steps first. A cycle is left for the named-graph check."""
    index = {id(s): k for k, s in enumerate(steps)}
    g = nx.DiGraph()
    g.add_nodes_from(index.values())
    for s in steps:
        for t, _, _ in s.edges:
            if id(t) in index:
                g.add_edge(index[id(s)], index[id(t)])
        for srcs in deps.get(id(s), {}).values():
            for d in srcs:
                if id(d) in index:
                    g.add_edge(index[id(d)], index[id(s)])
    try:
        return [steps[k] for k in nx.lexicographical_topological_sort(g)]
    except nx.NetworkXUnfeasible:
        return steps


def resolve(dep: Any, steps: list[Step], owner: Step, param: str) -> Step:
    if isinstance(dep, Step):
        return dep
    if callable(dep) and not isinstance(dep, type):
        # A plain function (workflow_from_functions style): one FunctionStep per function.
        for s in steps:
            if isinstance(s, FunctionStep) and s.function is dep:
                return s
        made = step_for_function(dep)
        steps.append(made)
        return made
    if isinstance(dep, type) and issubclass(dep, Step):
        matches = [s for s in steps if type(s) is dep]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            instance = dep()
            steps.append(instance)
            return instance
        raise DependencyError(
            f"{type(owner).__name__}.run_step parameter {param!r} depends on class "
            f"{dep.__name__}, which has {len(matches)} instances in the workflow: "
            "pass the instance instead"
        )
    raise DependencyError(
        f"{type(owner).__name__}.run_step parameter {param!r}: Depends() takes steps "
        f"or Step classes, not {dep!r}"
    )


def assign_names(steps: list[Step]) -> dict[int, str]:
    names: dict[int, str] = {}
    explicit: dict[str, Step] = {}
    for s in steps:
        if s.name and not s.__dict__.get("_auto_name"):
            if s.name in explicit and explicit[s.name] is not s:
                raise DuplicateStepNameError(s.name)
            explicit[s.name] = s
            names[id(s)] = s.name
    used = set(explicit)
    for s in steps:
        if id(s) in names:
            continue
        base = s.function.__name__ if isinstance(s, FunctionStep) else type(s).__name__
        base = "lambda" if base == "<lambda>" else base
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        names[id(s)] = name
        s.name = name
        s.__dict__["_auto_name"] = True
    return names
