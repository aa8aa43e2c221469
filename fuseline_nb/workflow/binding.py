"""How a step's ``run_step`` parameters get their values for one run.

Computed once per step when a workflow is built, so running a step costs a
dict build, not a signature inspection.

Examples
--------
>>> from fuseline_nb import FunctionStep
>>> def add(x, y=1):
...     return x + y
>>> b = Binding.for_step("add", FunctionStep(add), {}, {})
>>> b.kwargs({"x": 2}, {}, {})
{'x': 2, 'y': 1}
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from ..errors import MissingInputError
from .fingerprint import reads_all_inputs
from .steps import Condition, Depends, Step, _signature, entry_key, function_target

_new = object.__new__
_set = object.__setattr__

#: Returned by :meth:`Binding.kwargs` when a condition says the step must not run.
SKIP = object()


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    sources: tuple[str, ...]  # dependency step names; empty for an input
    group: str | None  # OR group id when len(sources) > 1
    default: Any  # inspect.Parameter.empty when required
    condition: Callable[[Any], bool] | None


@dataclass(frozen=True)
class Binding:
    """The parameter plan of one step.

    ``var_kw`` is true when ``run_step`` takes ``**kwargs``: it then also
    receives every run input not otherwise bound.
    """

    step: str
    params: tuple[_Param, ...]
    var_kw: bool
    #: Fuseline's untyped form ``run_step(self, setup_res)`` (or ``shared``,
    #: or any ``_name``): the step receives what ``setup()`` returned instead
    #: of named inputs.
    legacy: bool = False

    @classmethod
    def for_step(
        cls,
        name: str,
        step: Step,
        dep_names: Mapping[str, tuple[str, ...]],
        groups: Mapping[str, str],
    ) -> Binding:
        """Plan ``step``'s parameters; ``dep_names`` maps a parameter to its source step names."""
        shape = shape_of(step)
        params = shape.params
        if shape.depends:  # fill in this step's sources (the shape holds the rest)
            params = tuple(
                _Param(p.name, dep_names[p.name], groups.get(p.name), None, p.condition) if p.sources else p
                for p in params
            )
        # A worker makes one per step it runs: filled in directly, not through the frozen __init__
        # (one object.__setattr__ per field), with ``conditional`` known already (no cached_property
        # lookup per step).
        made = _new(cls)
        _set(made, "__dict__", {"step": name, "params": params, "var_kw": shape.var_kw, "legacy": shape.legacy,
                                "conditional": shape.conditional})
        return made

    @functools.cached_property
    def required_inputs(self) -> tuple[str, ...]:
        """Run inputs this step cannot do without (no dependency, no default)."""
        if self.legacy:
            return ()
        return tuple(p.name for p in self.params if not p.sources and p.default is inspect.Parameter.empty)

    @functools.cached_property
    def conditional(self) -> bool:
        """Whether a condition may skip the step."""
        return any(p.condition is not None for p in self.params)

    def kwargs(
        self,
        inputs: Mapping[str, Any],
        results: Mapping[str, Any],
        winners: Mapping[str, str],
        checks: list[dict[str, Any]] | None = None,
        steps: Mapping[str, Step] | None = None,
    ) -> dict[str, Any] | object:
        """Build the keyword arguments, or return :data:`SKIP`.

        ``results`` holds the results of finished dependencies (a missing one
        — skipped or not reached — reads as ``None``); ``winners`` maps an OR
        group id to the member whose result the group passes on. Each
        condition evaluated is appended to ``checks`` (when given) as
        ``{"dependency", "value", "passed"}``, for tracing. A
        :class:`~fuseline_nb.Condition` is called as in Fuseline, with the
        value and the step it came from (looked up in ``steps``; for an OR
        group, the member whose result it is); any other callable with the
        value alone.
        """
        out: dict[str, Any] = {}
        if self.legacy:
            return out
        for p in self.params:
            if p.sources:
                src = winners.get(p.group, p.sources[0]) if p.group else p.sources[0]
                value = results.get(src)
                if p.condition is not None:
                    if isinstance(p.condition, Condition):
                        passed = bool(p.condition(value, steps.get(src) if steps is not None else None))
                    else:
                        passed = bool(p.condition(value))
                    if checks is not None:
                        checks.append({"dependency": src, "value": value, "passed": passed})
                    if not passed:
                        return SKIP
                out[p.name] = value
            elif p.name in inputs:
                out[p.name] = inputs[p.name]
            elif p.default is inspect.Parameter.empty:
                raise MissingInputError(p.name, self.step)
            else:
                out[p.name] = p.default
        if self.var_kw:
            for k, v in inputs.items():
                out.setdefault(k, v)
        return out

    @property
    def sources(self) -> set[str]:
        """Every step whose result this step may read."""
        return {s for p in self.params for s in p.sources}



class Bindings(Mapping[str, Binding]):
    """Each step's :class:`Binding`, made when the step is first looked up.

    A worker process runs only its share of a workflow's steps, so it plans
    only those (at 1→1,000,000→1 planning every step cost each worker about
    2 µs per step of the workflow); iterating plans them all.

    ``structure`` is the workflow's :class:`~fuseline_nb.workflow.structure.Structure`
    (``steps``, ``deps``, ``group_param``).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> from fuseline_nb.workflow.structure import build
    >>> def add(x, y=1):
    ...     return x + y
    >>> b = Bindings(build([FunctionStep(add)]))
    >>> len(b), b.planned
    (1, 0)
    >>> b["add"].kwargs({"x": 2}, {}, {}), b.planned
    ({'x': 2, 'y': 1}, 1)
    """

    __slots__ = ("_made", "_structure")

    def __init__(self, structure: Any) -> None:
        self._structure = structure
        self._made: dict[str, Binding] = {}

    def __getitem__(self, name: str) -> Binding:
        b = self._made.get(name)
        if b is None:
            st = self._structure
            b = self._made[name] = Binding.for_step(name, st.steps[name], st.deps.get(name, {}),
                                                    st.group_param.get(name, {}))
        return b

    def __iter__(self) -> Iterator[str]:
        return iter(self._structure.steps)

    def __len__(self) -> int:
        return len(self._structure.steps)

    def __contains__(self, name: object) -> bool:
        return name in self._structure.steps

    @property
    def planned(self) -> int:
        """How many steps are planned so far."""
        return len(self._made)


_DEPENDS = ("?",)  # a placeholder source: the parameter takes a dependency's result


@dataclass(frozen=True, slots=True)
class Shape:
    """What a step's signature and class say, shared by every step of one function or class.

    Building a workflow reads the schema's per-step facts from here (no
    signature walk per step); :meth:`Binding.for_step` fills in the sources of
    the ``Depends`` parameters (``sources == ("?",)`` here).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> def add(x, y=1):
    ...     return x + y
    >>> s = shape_of(FunctionStep(add))
    >>> s.inputs, s.reads, s.conditional
    (('x',), ('x', 'y'), False)
    """

    params: tuple[_Param, ...]
    var_kw: bool
    legacy: bool
    depends: bool  # whether any parameter is Depends(...)
    conditional: bool
    inputs: tuple[str, ...]  # required run inputs (no dependency, no default)
    reads: tuple[str, ...] | None  # run inputs read by name; None: it may read any
    target: str  # "module:qualname" of the code


def _make_shape(step: Step) -> Shape:
    sig = _signature(step)
    params: list[_Param] = []
    var_kw = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        if isinstance(p.default, Depends):
            cond = cast("Callable[[Any], bool] | None", p.default.condition)
            params.append(_Param(p.name, _DEPENDS, None, None, cond))
        else:
            params.append(_Param(p.name, (), None, p.default, None))
    # A lone parameter named ``_anything`` is "unused" by convention:
    # Fuseline's docs write ``run_step(self, _setup_res)`` (which Fuseline
    # itself rejects); here it is the legacy form too.
    legacy = (
        len(params) == 1
        and not var_kw
        and not params[0].sources
        and (
            params[0].name in ("setup_res", "shared")
            or (params[0].name.startswith("_") and params[0].default is inspect.Parameter.empty)
        )
    )
    plain = [p for p in params if not p.sources]
    inputs = () if legacy else tuple(p.name for p in plain if p.default is inspect.Parameter.empty)
    reads = None if var_kw or legacy or reads_all_inputs(step) else tuple(sorted(p.name for p in plain))
    return Shape(tuple(params), var_kw, legacy, len(plain) < len(params),
                 any(p.condition is not None for p in params), inputs, reads, function_target(step))


#: Shapes per (step class, entry function): weak on the function, so a
#: notebook that redefines it lets the old one go.
_SHAPES: weakref.WeakKeyDictionary[Any, dict[type, Shape]] = weakref.WeakKeyDictionary()


def shape_of(step: Step) -> Shape:
    """The :class:`Shape` of ``step`` (made once per class and function).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> def f(a, **kw):
    ...     return a
    >>> shape_of(FunctionStep(f)) is shape_of(FunctionStep(f)), shape_of(FunctionStep(f)).reads
    (True, None)
    """
    key = entry_key(step)
    if key is None:
        return _make_shape(step)
    try:
        per_class = _SHAPES.get(key)
    except TypeError:  # not weakly referenceable
        return _make_shape(step)
    if per_class is None:
        per_class = _SHAPES[key] = {}
    shape = per_class.get(type(step))
    if shape is None:
        shape = per_class[type(step)] = _make_shape(step)
    return shape


__all__ = [
    "Binding",
    "Bindings",
    "Shape",
    "shape_of",
]
