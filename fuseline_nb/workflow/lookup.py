"""What building looks up once, not per step: the step made from each function, each entry's signature.

- ``FunctionStep(f)``, ``Depends(f)`` and ``>> f`` meet at one step: the
  latest unnamed ``FunctionStep`` made from ``f`` is remembered (weakly).
- A step's policies are read without making the empty list of a step that
  has none (``Step.__getattr__`` makes it on first use).
- A step's parameters come from its function or its class's entry method:
  the signature and the ``Depends`` defaults are inspected once per such
  entry (weakly keyed: a notebook that redefines it lets the old one go).

Examples
--------
>>> from fuseline_nb import FunctionStep
>>> def train():
...     return 1
>>> t = FunctionStep(train)
>>> known_function_step(train) is None  # remembered, but wired to nothing yet
True
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .depends import Depends
from .wiring import is_linked

#: The latest unnamed FunctionStep made from each function.
_BY_FUNCTION: weakref.WeakKeyDictionary[Any, weakref.ref[Any]] = weakref.WeakKeyDictionary()

#: ``(signature, Depends defaults)`` per entry function or method.
_PARAMS: weakref.WeakKeyDictionary[Any, tuple[inspect.Signature, list[tuple[str, Depends]]]] = (
    weakref.WeakKeyDictionary()
)


def remember(func: Any, step: Any) -> None:
    """Note ``step`` as the latest unnamed step made from ``func``."""
    with contextlib.suppress(TypeError):  # a builtin cannot be weakly referenced: nothing to meet
        _BY_FUNCTION[func] = weakref.ref(step)


def known_function_step(func: Any) -> Any:
    """The latest unnamed ``FunctionStep`` of ``func`` that is wired to others, if any.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> def train():
    ...     return 1
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
    if step is None or not is_linked(step):
        return None
    return step


def params_for(key: Any, entry: Callable[[], Any]) -> tuple[inspect.Signature, list[tuple[str, Depends]]]:
    """``(signature, Depends defaults)`` of the entry ``entry()`` returns, kept under ``key``
    (``None``: an entry no other step shares, inspected each time).

    Examples
    --------
    >>> def f(a, b=Depends(len)):
    ...     return a
    >>> sig, deps = params_for(f, lambda: f)
    >>> list(sig.parameters), [name for name, _ in deps]
    (['a', 'b'], ['b'])
    """
    if key is not None:
        try:
            return _PARAMS[key]
        except (KeyError, TypeError):  # TypeError: not weakly referenceable
            pass
    sig = inspect.signature(entry())
    found = (sig, [(p.name, p.default) for p in sig.parameters.values() if isinstance(p.default, Depends)])
    if key is not None:
        with contextlib.suppress(TypeError):
            _PARAMS[key] = found
    return found


_NO_POLICIES: tuple[Any, ...] = ()


def step_policies(step: Any) -> Sequence[Any]:
    """A step's policies, read without making the empty list of a step that has none.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> from fuseline_nb.workflow.policies import RetryPolicy
    >>> step_policies(FunctionStep(len))
    ()
    >>> step_policies(FunctionStep(len, policies=[RetryPolicy(max_retries=2)]))
    [RetryPolicy(max_retries=2, wait=0)]
    """
    plain = _PLAIN.get(type(step))
    if plain is not None and "policies" not in plain[0] and "policies" not in plain[1]:
        return step.__dict__.get("policies", _NO_POLICIES)  # type: ignore[no-any-return]  # (the usual step)
    if getattr(type(step), "policies", None) is None:  # no class attribute, property or slot: the
        d = getattr(step, "__dict__", None)  # instance's own (a failed lookup would cost an exception)
        if d is not None:
            return d.get("policies", _NO_POLICIES)  # type: ignore[no-any-return]
    try:
        return object.__getattribute__(step, "policies")  # type: ignore[no-any-return]
    except AttributeError:
        return _NO_POLICIES


#: For ``FunctionStep``: the live ``__dict__`` of it and of ``Step`` (its whole MRO but ``object``), where a
#: ``policies`` class attribute would be. Without one, the step's own are in its ``__dict__``; looking for the
#: attribute on the class (``getattr``) costs a raised and caught ``AttributeError`` inside Python each time.
_PLAIN: dict[type, tuple[Any, Any]] = {}


def plain_steps(cls: type, base: type) -> None:
    """Let :func:`step_policies` look for ``policies`` in ``cls.__dict__`` and ``base.__dict__`` only
    (``cls``'s MRO is ``cls``, ``base``, ``object``; both dicts are read live, a later class attribute counts).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> FunctionStep.__mro__[1:]
    (<class 'fuseline_nb.workflow.steps.Step'>, <class 'object'>)
    """
    if cls.__mro__ != (cls, base, object):
        raise TypeError(f"{cls.__name__}'s MRO is not ({cls.__name__}, {base.__name__}, object)")
    _PLAIN[cls] = (cls.__dict__, base.__dict__)


__all__ = ["known_function_step", "params_for", "plain_steps", "remember", "step_policies"]
