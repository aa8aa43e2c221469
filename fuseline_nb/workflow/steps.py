"""Steps and how they are wired: ``>>``, ``- "action"``, ``|``, ``Depends``.

A :class:`Step` subclass implements ``run_step``. Its parameters are filled by
name from the run's inputs, or, when their default is ``Depends(other)``,
with ``other``'s result.

Examples
--------
>>> from fuseline_nb import Step, Depends, Computed, Workflow
>>> class Add(Step):
...     def run_step(self, x: int, y: int) -> int:
...         return x + y
>>> class Double(Step):
...     def run_step(self, total: Computed[int] = Depends(Add)) -> int:
...         return total * 2
>>> add = Add()
>>> double = Double()
>>> double.run_step.__defaults__[0].steps == (Add,)
True
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, Union

from .coro import run_coro
from .schema import DEFAULT_ACTION
from .status import Status

T = TypeVar("T")


#: ``Computed[int]`` marks a parameter whose value is another step's result.
#: It is ``Union[int, Any]`` (as in Fuseline), so ``value: Computed[int] =
#: Depends(add)`` type-checks while still telling readers the type.
Computed = Union[T, Any]  # noqa: UP007 - a generic alias needs Union


class Condition:
    """A predicate on a dependency's value that gates a step.

    Subclass and implement :meth:`check`, or pass any callable as
    ``Depends(step, condition=callable)``. When the check is false the step is
    SKIPPED (by condition): its default edges stay active and downstream steps
    receive ``None`` for it.

    A ``Condition`` is called as in Fuseline, ``condition(value, source)``:
    ``source`` is the step the value came from (for an OR group, the member
    whose result the group passes on). Override ``__call__(self, value,
    source)`` to use it; a plain callable receives the value alone.

    Examples
    --------
    >>> class Positive(Condition):
    ...     def check(self, value):
    ...         return value > 0
    >>> Positive()(3), Positive()(-1)
    (True, False)
    """

    def check(self, value: Any) -> bool:
        """Return whether the step should run for ``value``."""
        raise TypeError(f"{type(self).__name__} must implement check(value)")

    def __call__(self, value: Any, source: Any = None) -> bool:
        return bool(self.check(value))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Equals(Condition):
    """Run only when the dependency's value equals ``expected``.

    Examples
    --------
    >>> Equals(2)(2), Equals(2)(3)
    (True, False)
    """

    def __init__(self, expected: Any) -> None:
        self.expected = expected

    def check(self, value: Any) -> bool:
        return bool(value == self.expected)

    def __repr__(self) -> str:
        return f"Equals({self.expected!r})"


class Depends:
    """Declares that a parameter takes the result of another step.

    ``Depends(a)`` adds the edge ``a >> step``. ``Depends(a, b)`` or
    ``Depends([a, b])`` declares an OR group: the step runs once, with the
    result of whichever of ``a``/``b`` succeeded first. A dependency may be a
    step instance, or a step class (resolved to the workflow's single
    instance of it). ``condition`` gates the step on the value.

    Examples
    --------
    >>> d = Depends(["a", "b"])
    >>> d.is_group
    True
    """

    __slots__ = ("condition", "steps")

    def __init__(self, *steps: Any, condition: Callable[[Any], bool] | None = None) -> None:
        flat: list[Any] = []
        for s in steps:
            if isinstance(s, (list, tuple)):
                flat.extend(s)
            else:
                flat.append(s)
        if not flat:
            raise ValueError("Depends() needs at least one step")
        if isinstance(condition, type) and issubclass(condition, Condition):
            condition = condition()  # Fuseline accepts the class itself
        if condition is not None and not callable(condition):
            raise TypeError(f"Depends(condition=...) must be callable, not {condition!r}")
        self.steps = tuple(flat)
        self.condition = condition

    @property
    def is_group(self) -> bool:
        """Whether this is an OR group (more than one step)."""
        return len(self.steps) > 1

    def __repr__(self) -> str:
        names = ", ".join(_label(s) for s in self.steps)
        cond = f", condition={self.condition!r}" if self.condition is not None else ""
        return f"Depends({names}{cond})"


def _label(obj: Any) -> str:
    if isinstance(obj, Step):
        return obj.name or type(obj).__name__
    return getattr(obj, "__name__", repr(obj))


class _Link:
    """``step - "action"``: waits for ``>> target``."""

    __slots__ = ("action", "source")

    def __init__(self, source: Step, action: str) -> None:
        self.source = source
        self.action = action

    def __rshift__(self, other: Step | StepGroup) -> Any:
        for target in _targets(other):
            self.source._connect(target, self.action, None)
        return other


class StepGroup:
    """``a | b``: an OR group; ``(a | b) >> c`` runs ``c`` once, on the first success.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> g = FunctionStep(lambda: 1, name="a") | FunctionStep(lambda: 2, name="b")
    >>> [s.name for s in g.steps]
    ['a', 'b']
    """

    _counter = 0

    def __init__(self, steps: Iterable[Step]) -> None:
        self.steps = list(steps)

    def __or__(self, other: Step | StepGroup) -> StepGroup:
        return StepGroup([*self.steps, *_targets(other)])

    def __rshift__(self, other: Step | StepGroup) -> Any:
        StepGroup._counter += 1
        group = f"or{StepGroup._counter}"
        for target in _targets(other):
            for s in self.steps:
                s._connect(target, DEFAULT_ACTION, group)
        return other

    def __repr__(self) -> str:
        return " | ".join(_label(s) for s in self.steps)


def _targets(obj: Any) -> list[Step]:
    if isinstance(obj, Step):
        return [obj]
    if isinstance(obj, StepGroup):
        return list(obj.steps)
    if callable(obj) and not isinstance(obj, type):
        return [step_for_function(obj)]
    raise TypeError(f"can only chain to a Step or a group of steps, not {type(obj).__name__}")


_SCAN = 8  # lists up to this long are scanned for a repeat; longer ones get a set of keys


def _edge_key(edge: tuple[Any, str, str | None]) -> tuple[int, str, str | None]:
    return (id(edge[0]), edge[1], edge[2])


def _has(items: list[Any], d: dict[str, Any], name: str, key: Any, key_of: Callable[[Any], Any]) -> bool:
    """Whether ``items`` holds an item whose ``key_of`` is ``key``; records ``key`` when it does not."""
    seen = d.get(name)
    if seen is None:
        if len(items) < _SCAN:
            return any(key_of(x) == key for x in items)
        seen = d[name] = {key_of(x) for x in items}
    if key in seen:
        return True
    seen.add(key)
    return False


class Step:
    """A unit of work. Subclass it and implement :meth:`run_step`.

    Hooks, all optional, in Fuseline's order: ``before_all(shared)`` just
    before the step's first attempt, ``setup(shared)`` before each attempt,
    ``teardown(shared, setup_res, exec_res)`` after a successful one and
    ``after_all(shared)`` after its last attempt (even when it failed). A
    step that never starts (cancelled, or on a branch not taken) runs no
    hook. ``shared`` is the run's inputs dict. ``self.cur_retry`` is the
    running attempt, counted from 0.

    Parameters
    ----------
    name:
        The step's name in the workflow; defaults to the class name, made
        unique (``Load``, ``Load_2``).
    policies:
        Step policies such as ``RetryPolicy`` and ``StepTimeoutPolicy``.

    Examples
    --------
    >>> class Hello(Step):
    ...     def run_step(self, who: str) -> str:
    ...         return f"hello {who}"
    >>> Hello().run_step("you")
    'hello you'
    >>> a, b = Hello(name="a"), Hello(name="b")
    >>> (a >> b) is b
    True
    """

    kind = "step"
    #: The method whose parameters are bound (``AsyncStep``: ``run_step_async``).
    _entry = "run_step"
    #: ``False``: never reuse a cached result (a step with side effects); set it
    #: on the class or on one instance.
    cache: bool = True
    #: Pins the code fingerprint by hand, for a step that reads state the
    #: fingerprint cannot see (files, clocks, a database): bump it to re-run.
    code_version: str | None = None
    name: str | None = None
    state: Status = Status.PENDING
    policies: list[Any]
    #: Which attempt is running, counted from 0 (Fuseline's name): read it in
    #: ``run_step`` to behave differently on a retry. ``None`` before the first.
    cur_retry: int | None = None
    #: The step's depth in its workflow's graph (roots 0; a step one more than
    #: its deepest parent), set when a :class:`~fuseline_nb.Workflow` is built.
    execution_group: int = 0

    def __init__(self, *, name: str | None = None, policies: Iterable[Any] | None = None) -> None:
        if name is not None:
            self.name = name
        self.policies = list(policies or ())
        for policy in self.policies:
            attach = getattr(policy, "attach_to_step", None)
            if callable(attach):
                attach(self)

    # -- wiring -----------------------------------------------------------
    @property
    def edges(self) -> list[tuple[Step, str, str | None]]:
        """Outgoing edges declared on this step: ``(target, action, group)``."""
        return self.__dict__.setdefault("_edges", [])

    def _connect(self, target: Step, action: str, group: str | None) -> None:
        if not isinstance(target, Step):
            raise TypeError(f"can only chain to a Step, not {type(target).__name__}")
        if not isinstance(action, str) or not action:
            raise ValueError(f"an action must be a non-empty string, not {action!r}")
        # A repeated edge is a no-op, found in O(1): a short list is scanned, a
        # long one gets a set of ids beside it (a 1→100,000 fan-out would
        # otherwise scan its edges per edge; a set per step would cost ~200 bytes).
        d = self.__dict__
        edges = d.get("_edges")
        if edges is None:
            edges = d["_edges"] = []
        if not _has(edges, d, "_edge_keys", (id(target), action, group), _edge_key):
            edges.append((target, action, group))
            t = target.__dict__
            incoming = t.get("_incoming")
            if incoming is None:
                incoming = t["_incoming"] = []
            if not _has(incoming, t, "_incoming_ids", id(self), id):
                incoming.append(self)

    def __rshift__(self, other: Step | StepGroup) -> Any:
        for target in _targets(other):
            self._connect(target, DEFAULT_ACTION, None)
        return other

    def __sub__(self, action: str) -> _Link:
        if not isinstance(action, str):
            return NotImplemented
        return _Link(self, action)

    def __or__(self, other: Step | StepGroup) -> StepGroup:
        return StepGroup([self, *_targets(other)])

    # -- hooks --------------------------------------------------------------
    def before_all(self, shared: dict[str, Any]) -> None:
        """Called once per run, just before the step's first attempt."""

    def setup(self, shared: dict[str, Any]) -> Any:
        """Called before each run of the step; its value reaches :meth:`teardown`."""

    def run_step(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work. Override with named parameters; the return value is the result."""
        raise TypeError(f"{type(self).__name__} must implement run_step()")

    def teardown(self, shared: dict[str, Any], setup_res: Any, exec_res: Any) -> Any:
        """Called after each successful run of the step; a non-``None`` return replaces the result."""

    def after_all(self, shared: dict[str, Any]) -> None:
        """Called once per run, after the step's last attempt, whatever its outcome."""

    def run(self, shared: Any = None) -> Any:
        """Run this step alone (Fuseline's ``step.run(shared)``) and return its result.

        ``before_all`` → ``setup`` → ``run_step`` → ``teardown`` →
        ``after_all``, with the step's policies (retries, timeout); named
        parameters are read from ``shared``. A failure raises. Steps after
        it do not run (a warning says so); a step with ``Depends(...)``
        parameters is refused — run those in a :class:`~fuseline_nb.Workflow`.

        Examples
        --------
        >>> class Double(Step):
        ...     def run_step(self, x: int) -> int:
        ...         return 2 * x
        >>> Double().run({"x": 21})
        42
        """
        from .standalone import run_alone

        return run_alone(self, shared)

    def _invoke(self, binding: Any, kwargs: dict[str, Any], shared: dict[str, Any]) -> Any:
        """One attempt: ``setup`` → ``run_step`` → ``teardown`` (subclasses change how)."""
        setup_res = self.setup(shared)
        result = self._call(binding, kwargs, setup_res)
        replaced = self.teardown(shared, setup_res, result)
        # Fuseline lets teardown replace the result; a teardown that returns
        # nothing (the usual clean-up hook) keeps it.
        return result if replaced is None else replaced

    def _call(self, binding: Any, kwargs: dict[str, Any], setup_res: Any) -> Any:
        """Call ``run_step`` once (``BatchStep`` calls it per item)."""
        if binding.legacy:
            return self.run_step(setup_res)
        return self.run_step(**kwargs)

    def dependencies(self) -> list[tuple[str, Depends]]:
        """The ``Depends(...)`` defaults of :meth:`run_step`, by parameter name."""
        return _params(self)[1]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>" if self.name else f"<{type(self).__name__}>"


#: Signature and ``Depends`` defaults per entry function: inspected once per
#: step class (or function), not once per step. Weak keys: a notebook that
#: redefines a class or function lets the old one go.
_PARAMS: weakref.WeakKeyDictionary[Any, tuple[inspect.Signature, list[tuple[str, Depends]]]] = (
    weakref.WeakKeyDictionary()
)


def entry_key(step: Step) -> Any:
    """What a step's parameters come from: its function, or its class's entry method
    (``None`` when the instance carries its own, which no other step shares).

    Examples
    --------
    >>> entry_key(FunctionStep(len)) is len
    True
    """
    if isinstance(step, FunctionStep):
        return step.function
    if step._entry in step.__dict__:
        return None
    return getattr(type(step), step._entry, None)


def _params(step: Step) -> tuple[inspect.Signature, list[tuple[str, Depends]]]:
    """``(signature, Depends defaults)`` of the method whose parameters are bound."""
    key = entry_key(step)
    mine = step.__dict__.get("_params")  # (key, found): a step rebuilt into workflows asks often
    if mine is not None and key is not None and mine[0] is key:
        return mine[1]  # type: ignore[no-any-return]
    if key is not None:
        try:
            found = _PARAMS[key]
        except (KeyError, TypeError):  # TypeError: not weakly referenceable
            pass
        else:
            step.__dict__["_params"] = (key, found)
            return found
    fn = step.function if isinstance(step, FunctionStep) else getattr(step, step._entry)
    sig = inspect.signature(fn)
    found = (sig, [(p.name, p.default) for p in sig.parameters.values() if isinstance(p.default, Depends)])
    if key is not None:
        step.__dict__["_params"] = (key, found)
        with contextlib.suppress(TypeError):
            _PARAMS[key] = found
    return found


def _signature(step: Step) -> inspect.Signature:
    return _params(step)[0]


class FunctionStep(Step):
    """A step made from a plain function; the function receives only the
    parameters it declares.

    Usable as a call or as a decorator.

    Examples
    --------
    >>> @FunctionStep
    ... def square(x: int) -> int:
    ...     return x * x
    >>> square.name, square.function(3)
    ('square', 9)
    >>> FunctionStep(len, name="size").name
    'size'
    """

    kind = "function"

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        policies: Iterable[Any] | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"FunctionStep needs a callable, not {func!r}")
        super().__init__(name=name or getattr(func, "__name__", None) or "function", policies=policies)
        if self.name == "<lambda>":
            self.name = "lambda"
        if name is None:  # named after its function: numbered in a workflow (f, f_2) like classes
            self.__dict__["_auto_name"] = True
        self.function = func
        if name is None:
            _remember(func, self)

    def run_step(self, *args: Any, **kwargs: Any) -> Any:
        result = self.function(*args, **kwargs)
        if inspect.iscoroutine(result):  # an async function: run it to completion here
            return run_coro(result)
        return result


# The latest unnamed FunctionStep made from each function, so that
# ``Depends(f)``, ``FunctionStep(f)`` and ``>> f`` meet at one step.
_BY_FUNCTION: weakref.WeakKeyDictionary[Any, weakref.ref[FunctionStep]] = weakref.WeakKeyDictionary()


def _remember(func: Any, step: FunctionStep) -> None:
    try:
        _BY_FUNCTION[func] = weakref.ref(step)
    except TypeError:  # a builtin cannot be weakly referenced: nothing to meet
        pass


def known_function_step(func: Any) -> FunctionStep | None:
    """The latest unnamed :class:`FunctionStep` of ``func`` that is wired to others, if any.

    Examples
    --------
    >>> def train():
    ...     return 1
    >>> known_function_step(train) is None
    True
    >>> gate, t = FunctionStep(lambda: True, name="gate"), FunctionStep(train)
    >>> _ = gate >> t
    >>> known_function_step(train) is t
    True
    """
    try:
        ref = _BY_FUNCTION.get(func)
    except TypeError:
        return None
    step = ref() if ref is not None else None
    if step is None or not (step.__dict__.get("_edges") or step.__dict__.get("_incoming")):
        return None
    return step


def step_for_function(func: Any) -> FunctionStep:
    """The step ``>> func`` and ``Depends(func)`` mean: :func:`known_function_step`, or a new one.

    Examples
    --------
    >>> def report():
    ...     return "ok"
    >>> step_for_function(report).name
    'report'
    """
    known = known_function_step(func)
    return known if known is not None else FunctionStep(func)


#: Attributes the model keeps on a step instance to wire it into graphs (edges,
#: names, cached signatures, states, policies). They do not change what the step
#: computes, and some hold object ids, so code fingerprints leave them out: a new
#: attribute of this kind belongs here.
WIRING_ATTRIBUTES = frozenset({
    "_edges", "_incoming", "_edge_keys", "_incoming_ids", "_auto_name", "_params",
    "name", "state", "policies", "code_version", "cache",
    # set by building (Fuseline's depth) and by running (the attempt counter)
    "execution_group", "cur_retry",
})


#: Fuseline's older names, so code written against them runs unchanged.
Task = Step
FunctionTask = FunctionStep


def function_target(step: Step) -> str:
    """``module:qualname`` of a step's code, for schemas and people."""
    obj: Any = step.function if isinstance(step, FunctionStep) else type(step)
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"


__all__ = [
    "Condition",
    "Depends",
    "Equals",
    "FunctionStep",
    "FunctionTask",
    "Step",
    "StepGroup",
    "Task",
    "entry_key",
    "function_target",
    "known_function_step",
    "step_for_function",
]
