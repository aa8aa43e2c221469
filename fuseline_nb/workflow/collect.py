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

import heapq
from collections import deque
from typing import Any

from ..errors import DependencyError, DuplicateStepNameError
from .binding import shape_of
from .steps import FunctionStep, Step, known_function_step, step_for_function


def collect(outputs: list[Step]) -> list[Step]:
    """Every step linked to ``outputs`` by edges or ``Depends``, in discovery order."""
    seen: set[int] = set()
    order: list[Step] = []
    work = deque(outputs)
    pop, extend, add, keep = work.popleft, work.extend, seen.add, order.append
    last_fn: Any = None
    last_type: type | None = None
    depends = False
    while work:
        s = pop()
        if id(s) in seen:
            continue
        add(id(s))
        keep(s)
        d = s.__dict__
        incoming = d.get("_incoming")
        if incoming:
            extend(incoming)
        fn = d.get("function")
        if fn is None or fn is not last_fn or type(s) is not last_type:  # neighbours mostly share one
            last_fn, last_type, depends = fn, type(s), shape_of(s).depends
        if depends:
            for _, dep in s.dependencies():
                for t in dep.steps:
                    if isinstance(t, Step):
                        work.append(t)
                    elif callable(t) and not isinstance(t, type):
                        known = known_function_step(t)  # FunctionStep(f) wired elsewhere: the same step
                        if known is not None:
                            work.append(known)
        out = d.get("_edges")
        if out:
            extend([t for t, _, _ in out])
    return order


def topological(
    steps: list[Step], deps: dict[int, dict[str, tuple[Step, ...]]]
) -> tuple[list[Step], list[int]] | tuple[None, None]:
    """``steps`` in a topological order (discovery order breaks ties), so derived
    names number upstream steps first, with each step's depth (roots 0, else one
    more than its deepest parent); ``(None, None)`` on a cycle (the caller reports
    it by name)."""
    index = {id(s): k for k, s in enumerate(steps)}
    indeg = [0] * len(steps)
    outs: list[Any] = [s.__dict__.get("_edges") for s in steps]
    for out in outs:
        if out:
            for t, _, _ in out:
                indeg[index[id(t)]] += 1  # collect followed every edge: the target is here
    back: dict[int, list[int]] = {}  # Depends edges, source -> the steps depending on it
    for k, s in enumerate(steps):
        for srcs in deps.get(id(s), {}).values() if deps else ():
            for d in srcs:
                j = index.get(id(d))
                if j is not None:
                    back.setdefault(j, []).append(k)
                    indeg[k] += 1
    heap = [k for k, n in enumerate(indeg) if n == 0]  # already ascending: a valid heap
    depth = [0] * len(steps)
    order: list[Step] = []
    depths: list[int] = []
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        k = pop(heap)
        order.append(steps[k])
        dk = depth[k]
        depths.append(dk)
        dk += 1
        out = outs[k]
        if out:
            for t, _, _ in out:
                j = index[id(t)]
                if depth[j] < dk:
                    depth[j] = dk
                indeg[j] -= 1
                if indeg[j] == 0:
                    push(heap, j)
        if back:
            for j in back.get(k, ()):
                if depth[j] < dk:
                    depth[j] = dk
                indeg[j] -= 1
                if indeg[j] == 0:
                    push(heap, j)
    if len(order) != len(steps):
        return None, None
    return order, depths


class Resolver:
    """Resolves ``Depends`` targets against a growing step list in O(1) each.

    Steps made here (one per plain function, one per Step class not yet
    present) are appended to ``steps``.
    """

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self._by_function: dict[int, Step] = {}
        self._by_class: dict[type, list[Step]] = {}
        self._ids: set[int] = set()
        for s in steps:
            self._add(s)

    def _add(self, s: Step) -> None:
        self._ids.add(id(s))
        if isinstance(s, FunctionStep):
            self._by_function.setdefault(id(s.function), s)
        self._by_class.setdefault(type(s), []).append(s)

    def _make(self, s: Step) -> Step:
        if id(s) not in self._ids:  # step_for_function may hand back a step already here
            self.steps.append(s)
            self._add(s)
        return s

    def __call__(self, dep: Any, owner: Step, param: str) -> Step:
        if isinstance(dep, Step):
            return dep
        if callable(dep) and not isinstance(dep, type):
            # A plain function (workflow_from_functions style): one FunctionStep per function.
            found = self._by_function.get(id(dep))
            return found if found is not None else self._make(step_for_function(dep))
        if isinstance(dep, type) and issubclass(dep, Step):
            matches = self._by_class.get(dep, [])
            if len(matches) == 1:
                return matches[0]
            if not matches:
                return self._make(dep())
            raise DependencyError(
                f"{_where(owner)} parameter {param!r} depends on class "
                f"{dep.__name__}, which has {len(matches)} instances in the workflow: "
                "pass the instance instead"
            )
        raise DependencyError(
            f"{_where(owner)} parameter {param!r}: Depends() takes steps, Step classes "
            f"or functions, not {dep!r}"
        )


def _where(owner: Step) -> str:
    """The step and the code declaring a parameter, for messages: ``step 'f' (function f)``."""
    if isinstance(owner, FunctionStep):
        code = f"function {getattr(owner.function, '__qualname__', owner.name)}"
    else:
        code = f"{type(owner).__name__}.{owner._entry}"
    return f"step {owner.name or type(owner).__name__!r} ({code})"


def assign_names(steps: list[Step]) -> dict[int, str]:
    """Name every step: explicit names as given (two steps with one explicit name are an
    error), the others numbered from their class or function name (``f``, ``f_2``)."""
    names: dict[int, str] = {}
    explicit: dict[str, Step] = {}
    for s in steps:
        if s.name and not s.__dict__.get("_auto_name"):
            if s.name in explicit and explicit[s.name] is not s:
                raise DuplicateStepNameError(s.name)
            explicit[s.name] = s
            names[id(s)] = s.name
    used = set(explicit)
    last: dict[str, int] = {}  # per base, the last suffix tried: numbering stays linear
    for s in steps:
        if id(s) in names:
            continue
        base = getattr(s.function, "__name__", "function") if isinstance(s, FunctionStep) else type(s).__name__
        base = "lambda" if base == "<lambda>" else base
        k = last.get(base, 1)
        name = base if k == 1 else f"{base}_{k}"
        while name in used:
            k += 1
            name = f"{base}_{k}"
        last[base] = k
        used.add(name)
        names[id(s)] = name
        s.name = name
        s.__dict__["_auto_name"] = True
    return names


__all__ = [
    "Resolver",
    "assign_names",
    "collect",
    "topological",
]
