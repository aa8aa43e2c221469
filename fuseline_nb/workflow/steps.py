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

import inspect
from collections.abc import Callable, Iterable
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .coro import run_coro
from .depends import Computed, Condition, Depends, Equals, label
from .lookup import known_function_step, params_for, plain_steps, remember, step_policies
from .schema import DEFAULT_ACTION
from .status import Status
from .wiring import WIRING_ATTRIBUTES as WIRING_ATTRIBUTES  # (fingerprints read it from here)
from .wiring import link, out_edges


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
        return " | ".join(label(s) for s in self.steps)


def _targets(obj: Any) -> list[Step]:
    if isinstance(obj, Step):
        return [obj]
    if isinstance(obj, StepGroup):
        return list(obj.steps)
    if callable(obj) and not isinstance(obj, type):
        return [step_for_function(obj)]
    raise TypeError(f"can only chain to a Step or a group of steps, not {type(obj).__name__}")


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

    # Links (see wiring.py), read before __init__ ran (a subclass that skips it) and after unpickling.
    _out: Any = None
    _in: Any = None
    _out_keys: dict[int, Any] | None = None
    _auto_name = False

    def __init__(self, *, name: str | None = None, policies: Iterable[Any] | None = None) -> None:
        _start(self, self.name if name is None else name, policies, False)  # a class may name its steps

    if not TYPE_CHECKING:  # (hidden from the type checker, which would then accept any attribute)

        def __getattr__(self, name: str) -> Any:
            # Called only for an attribute the step lacks. ``policies`` is made on first use: most
            # steps have none, and an empty list each costs a 1M-step workflow 56 MB and a million
            # objects for the garbage collector to scan while the steps are made.
            if name == "policies":
                made: list[Any] = []
                self.policies = made
                return made
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self)

    # -- wiring -----------------------------------------------------------
    @property
    def edges(self) -> list[tuple[Step, str, str | None]]:
        """Outgoing edges declared on this step: ``(target, action, group)`` (a new list).

        Examples
        --------
        >>> a, b = FunctionStep(len, name="a"), FunctionStep(len, name="b")
        >>> _ = (a - "big") >> b
        >>> [(t.name, action) for t, action, _ in a.edges]
        [('b', 'big')]
        """
        return out_edges(self)

    def _connect(self, target: Step, action: str, group: str | None) -> None:
        if not isinstance(target, Step):
            raise TypeError(f"can only chain to a Step, not {type(target).__name__}")
        if not isinstance(action, str) or not action:
            raise ValueError(f"an action must be a non-empty string, not {action!r}")
        link(self, target, action, group)

    def __rshift__(self, other: Step | StepGroup) -> Any:
        if isinstance(other, Step):
            link(self, other, DEFAULT_ACTION, None)
            return other
        for target in _targets(other):
            link(self, target, DEFAULT_ACTION, None)
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


def _start(step: Step, name: str | None, policies: Iterable[Any] | None, auto: bool) -> None:
    """What every step holds from the start (``Step.__init__``; ``FunctionStep`` calls it directly)."""
    # Every attribute the model sets later is set here first: an instance whose attributes are all
    # set in __init__ keeps them in its class's compact (key-sharing) layout, and one added later
    # makes that step's dict ~270 bytes larger (a 1M-step workflow: 270 MB).
    step.name = name
    if policies:  # none: no list until ``policies`` is first read (Step.__getattr__)
        step.policies = list(policies)
    step._out = step._in = None
    step.execution_group = 0
    step._auto_name = auto
    if policies:
        for policy in step.policies:
            attach = getattr(policy, "attach_to_step", None)
            if callable(attach):
                attach(step)


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
    entry = step._entry
    shared = getattr(type(step), entry, None)
    # Read through the attribute (not the instance's __dict__, which reading would make for every step).
    mine = getattr(step, entry, None)
    if mine is shared or (getattr(mine, "__self__", None) is step and getattr(mine, "__func__", None) is shared):
        return shared
    return None


def _params(step: Step) -> tuple[inspect.Signature, list[tuple[str, Depends]]]:
    """``(signature, Depends defaults)`` of the method whose parameters are bound."""
    return params_for(entry_key(step), lambda: step.function if isinstance(step, FunctionStep)
                      else getattr(step, step._entry))


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
        # Step.__init__'s work, without its keyword call: a million steps are made in a loop.
        given = name or getattr(func, "__name__", None) or "function"
        # named after its function: numbered in a workflow (f, f_2) like classes
        if policies:
            _start(self, "lambda" if given == "<lambda>" else given, policies, name is None)
        else:  # _start's stores, in its order (the instance's layout), without the call
            self.name = "lambda" if given == "<lambda>" else given
            self._out = self._in = None
            self.execution_group = 0
            self._auto_name = name is None
        self.function = func
        if name is None:
            remember(func, self)

    def run_step(self, *args: Any, **kwargs: Any) -> Any:
        result = self.function(*args, **kwargs)
        if isinstance(result, CoroutineType):  # an async function: run it to completion here
            return run_coro(result)
        return result

    def _invoke(self, binding: Any, kwargs: dict[str, Any], shared: dict[str, Any]) -> Any:
        """:meth:`Step._invoke`; when none of its hooks is replaced (on a subclass, on the class, on this
        step) that is the function's call alone, made here without the calls of the hooks that do nothing."""
        cls = type(self)
        if (cls.setup is _SETUP and cls.teardown is _TEARDOWN and cls._call is _CALL and cls.run_step is _RUN
                and not binding.legacy and self.__dict__.keys().isdisjoint(_HOOKS)):
            result = self.function(**kwargs)
            if isinstance(result, CoroutineType):  # an async function: run it to completion here
                return run_coro(result)
            return result
        return Step._invoke(self, binding, kwargs, shared)


plain_steps(FunctionStep, Step)  # step_policies reads a FunctionStep's without a failed class lookup

#: What FunctionStep._invoke checks is not replaced: the hooks that do nothing, and the calls around them.
_SETUP, _TEARDOWN, _CALL, _RUN = Step.setup, Step.teardown, Step._call, FunctionStep.run_step
_HOOKS = frozenset({"setup", "teardown", "_call", "run_step"})


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
    return known if known is not None else FunctionStep(func)  # type: ignore[no-any-return]


#: Fuseline's older names, so code written against them runs unchanged.
Task = Step
FunctionTask = FunctionStep


def function_target(step: Step) -> str:
    """``module:qualname`` of a step's code, for schemas and people."""
    obj: Any = step.function if isinstance(step, FunctionStep) else type(step)
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"


__all__ = [
    "Computed",
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
    "step_policies",
]
