"""Collecting a workflow's steps from its outputs, resolving ``Depends`` and naming steps.

Examples
--------
>>> from fuseline_nb import FunctionStep
>>> a, b = FunctionStep(lambda: 1, name="a"), FunctionStep(lambda: 2, name="b")
>>> _ = a >> b
>>> steps, position, shapes = collect([b])
>>> [s.name for s in steps], position[id(a)]
(['b', 'a'], 1)
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from ..errors import DependencyError, DuplicateStepNameError
from .binding import Shape, shape_of
from .steps import FunctionStep, Step, known_function_step, step_for_function


def collect(outputs: list[Step]) -> tuple[list[Step], dict[int, int], list[Shape]]:
    """Every step linked to ``outputs`` by edges or ``Depends``, in discovery order, with
    each one's position in that order by ``id`` and each one's :class:`Shape`."""
    index: dict[int, int] = {}
    order: list[Step] = []
    shapes: list[Shape] = []
    work = deque(outputs)
    pop, push, extend, keep, keep_shape = work.popleft, work.append, work.extend, order.append, shapes.append
    last_fn: Any = None
    last_type: type | None = None
    shape: Any = None
    found = 0
    while work:
        s = pop()
        if index.setdefault(id(s), found) != found:  # seen before
            continue
        found += 1
        keep(s)
        ins = s._in
        if ins is not None:
            if type(ins) is list:
                extend(ins)
            elif id(ins) not in index:  # (a spoke's hub is found once, not once per spoke)
                push(ins)
        fn = s.function if isinstance(s, FunctionStep) else None
        if fn is None or fn is not last_fn or type(s) is not last_type:  # neighbours mostly share one
            last_fn, last_type, shape = fn, type(s), shape_of(s)
        keep_shape(shape)
        if shape.depends:
            for _, dep in s.dependencies():
                for t in dep.steps:
                    if isinstance(t, Step):
                        push(t)
                    elif callable(t) and not isinstance(t, type):
                        known = known_function_step(t)  # FunctionStep(f) wired elsewhere: the same step
                        if known is not None:
                            push(known)
        out = s._out
        if out is not None:
            if type(out) is not list:
                t = out[0] if type(out) is tuple else out
                if id(t) not in index:
                    push(t)
            else:
                extend([e[0] if type(e) is tuple else e for e in out])
    return order, index, shapes


def topological(
    steps: list[Step], index: dict[int, int], deps: dict[int, dict[str, tuple[Step, ...]]],
    positions: list[int] | None = None,
) -> tuple[list[Step], list[int]] | tuple[None, None]:
    """``steps`` in a topological order (discovery order breaks ties), so derived
    names number upstream steps first, with each step's depth (roots 0, else one
    more than its deepest parent); ``(None, None)`` on a cycle (the caller reports
    it by name). ``index`` gives each step's position in ``steps`` by ``id``;
    ``positions``, when given, receives each step's position in ``steps``, in order."""
    n = len(steps)
    succ: list[Any] = [None] * n  # position of each step's target, or a list of them (one per edge)
    indeg = [0] * n
    for k, s in enumerate(steps):
        out = s._out
        if out is None:
            continue
        if type(out) is not list:
            j = succ[k] = index[id(out[0] if type(out) is tuple else out)]  # collect followed every edge
            indeg[j] += 1
        else:
            js = succ[k] = [index[id(e[0] if type(e) is tuple else e)] for e in out]
            for j in js:
                indeg[j] += 1
    if deps:  # Depends edges, source -> the steps depending on it
        for k, s in enumerate(steps):
            for srcs in deps.get(id(s), {}).values():
                for d in srcs:
                    at = index.get(id(d))
                    if at is not None:
                        had = succ[at]
                        succ[at] = [k] if had is None else [had, k] if type(had) is int else [*had, k]
                        indeg[k] += 1
    # The ready steps, smallest position first. While they become ready in ascending order (a
    # chain, a fan-out: each new one comes after those waiting) a deque keeps them sorted at O(1)
    # a step; the first one out of order turns it into a heap (the same order, O(log n) a step).
    ready = deque(k for k, m in enumerate(indeg) if m == 0)
    heap: list[int] | None = None
    depth = [0] * n
    order: list[Step] = []
    depths: list[int] = []
    take, keep, keep_depth = ready.popleft, order.append, depths.append
    keep_at = positions.append if positions is not None else None
    pop, push = heapq.heappop, heapq.heappush
    while True:
        if heap is None:
            if not ready:
                break
            k = take()
        elif heap:
            k = pop(heap)
        else:
            break
        keep(steps[k])
        if keep_at is not None:
            keep_at(k)
        dk = depth[k]
        keep_depth(dk)
        js = succ[k]
        if js is None:
            continue
        dk += 1
        for j in (js,) if type(js) is int else js:
            if depth[j] < dk:
                depth[j] = dk
            indeg[j] -= 1
            if indeg[j] == 0:
                if heap is not None:
                    push(heap, j)
                elif not ready or ready[-1] < j:
                    ready.append(j)
                else:
                    heap = [*ready, j]
                    heapq.heapify(heap)
    if len(order) != n:
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


def assign_names(steps: list[Step]) -> dict[str, Step]:
    """Name every step and return them by name, in ``steps`` order: explicit names as given
    (two steps with one explicit name are an error), the others numbered from their class
    or function name (``f``, ``f_2``), skipping the explicit names."""
    by_name: dict[str, Step] = {}
    auto = False
    for s in steps:
        name = s.name
        if name and not s._auto_name:
            if by_name.setdefault(name, s) is not s:
                raise DuplicateStepNameError(name)
        else:
            auto = True
    if not auto:
        return by_name
    last: dict[str, int] = {}  # per base, the last suffix tried: numbering stays linear
    used = by_name
    for s in steps:
        if s.name and not s._auto_name:
            continue
        base = getattr(s.function, "__name__", "function") if isinstance(s, FunctionStep) else type(s).__name__
        base = "lambda" if base == "<lambda>" else base
        k = last.get(base, 1)
        name = base if k == 1 else f"{base}_{k}"
        while name in used:
            k += 1
            name = f"{base}_{k}"
        last[base] = k
        used[name] = s
        s.name = name
        s._auto_name = True
    return {s.name: s for s in steps}  # type: ignore[misc]  # every step is named now


__all__ = [
    "Resolver",
    "assign_names",
    "collect",
    "topological",
]
