"""What a step's parameter depends on: ``Depends(step)``, OR groups, conditions, ``Computed[T]``.

Examples
--------
>>> d = Depends(len, condition=Equals(3))
>>> d, d.is_group
(Depends(len, condition=Equals(3)), False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, Union

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
        names = ", ".join(label(s) for s in self.steps)
        cond = f", condition={self.condition!r}" if self.condition is not None else ""
        return f"Depends({names}{cond})"


def label(obj: Any) -> str:
    """How messages name a step, a step class or a function: ``'load'``, ``Load``, ``load``.

    Examples
    --------
    >>> label(len), label("x")
    ('len', "'x'")
    """
    if not isinstance(obj, type) and callable(getattr(obj, "run_step", None)):  # a step instance
        return obj.name or type(obj).__name__
    return getattr(obj, "__name__", repr(obj))


__all__ = ["Computed", "Condition", "Depends", "Equals", "label"]
