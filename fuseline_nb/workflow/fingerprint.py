"""Code fingerprints: a stable digest of what a step runs.

A step's fingerprint covers

- the code of its function, or of its class (every user class of its MRO)
  and its instance attributes: bytecode, constants and names, not line
  numbers, whitespace, comments or docstrings;
- the user functions and classes that code calls or subclasses (defined in
  ``__main__`` or in the user's own modules, followed transitively);
  installed libraries and the standard library count by package version;
- the values of the plain globals and closure variables it reads (numbers,
  strings, tuples, small containers, frozen dataclasses, enums; anything
  else by a digest of its pickle, or of its buffers for arrays and tables;
  an object of a user class also by its class's code).

The same code gives the same fingerprint in another process and after a
kernel restart. A step that reads state the fingerprint cannot see (files,
clocks, a database) pins it with ``code_version = "..."``; the fingerprint is
then that string (with the step's kind).

Examples
--------
>>> from fuseline_nb import FunctionStep
>>> def double(x):
...     return 2 * x
>>> fp = step_fingerprint(FunctionStep(double))
>>> len(fp), fp == step_fingerprint(FunctionStep(double))
(32, True)
>>> def double(x):  # the same code, with a comment
...     # twice x
...     return 2 * x
>>> step_fingerprint(FunctionStep(double)) == fp
True
>>> def double(x):
...     return 3 * x
>>> step_fingerprint(FunctionStep(double)) == fp
False
"""
from __future__ import annotations

import types
import weakref
from itertools import compress, repeat
from operator import attrgetter, is_, is_not
from typing import Any

from ._fingerprint_walk import _ABSENT, _WIRING, _digest, _Walker
from .steps import Step

#: Bumped when the recipe changes, so old cache entries stop matching.
RECIPE = "1"


def step_fingerprint(step: Step, _classes: dict[int, list[str]] | None = None) -> str:
    """The 32-hex-digit fingerprint of ``step`` (see the module docstring).

    Examples
    --------
    >>> from fuseline_nb import Step
    >>> class Pinned(Step):
    ...     code_version = "2024-06"
    ...     def run_step(self):
    ...         return open("data.csv").read()
    >>> step_fingerprint(Pinned()) == step_fingerprint(Pinned(name="other"))
    True
    """
    pinned = getattr(step, "code_version", None)
    if pinned is not None:
        return _digest(f"{RECIPE}|pinned|{step.kind}|{pinned}")
    parts: list[str] = [RECIPE, step.kind]
    _Walker(parts, _classes).step(step)
    return _digest("\x1f".join(parts))


#: function -> (step class, fingerprint, witness) of the last bare step of that class and function walked
_WALKED: weakref.WeakKeyDictionary[Any, tuple[type, str, list[tuple[Any, Any, Any, Any]]]] = \
    weakref.WeakKeyDictionary()


def _shared_fingerprint(step: Step, classes: dict[int, list[str]]) -> str:
    """:func:`step_fingerprint` of a step holding nothing of its own (its class and function make it).

    Remembered per function with the witness of its walk (see :class:`_Walker`):
    while every global, closure cell and attribute the walk read is still the
    very same object, the text would be the same, and so is the fingerprint;
    otherwise (an edited global, a helper's cell run again) it is walked again.
    Functions reading values that can change in place are walked every time.
    """
    fn = step.__dict__.get("function")
    cls = type(step)
    if fn.__class__ is not types.FunctionType or getattr(step, "code_version", None) is not None:
        return step_fingerprint(step, classes)
    known = _WALKED.get(fn)
    if known is not None and known[0] is cls:
        for get, holder, key, value in known[2]:
            if get(holder, key, _ABSENT) is not value:
                break
        else:
            return known[1]
    kind = step.kind
    parts: list[str] = [RECIPE, kind]
    walker = _Walker(parts, classes, [(getattr, cls, "kind", kind), (getattr, cls, "code_version",
                                                                     getattr(cls, "code_version", _ABSENT))])
    walker.step(step)
    fp = _digest("\x1f".join(parts))
    if walker.witness is not None and getattr(cls, "kind", _ABSENT) is kind:
        _WALKED[fn] = (cls, fp, walker.witness)
    return fp



#: What a step instance may hold without changing its fingerprint beyond its function or class.
_BARE = _WIRING | {"function"}
#: What a step may hold and share its fingerprint with every step of its class and function: not its own
#: ``code_version`` (one instance pinned among steps of one function has a fingerprint of its own).
_SHARED = _BARE - {"code_version"}
_DICT = attrgetter("__dict__")


def workflow_fingerprints(steps: dict[str, Step]) -> dict[str, str]:
    """``{name: fingerprint}`` of every step (what ``Workflow.fingerprints()`` returns).

    Steps that share a function (or a class) and hold nothing else of their
    own share a fingerprint: it is computed once per call, so a 1→100,000→1
    fan-out of one function walks that function's code once.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> def f():
    ...     return 1
    >>> fps = workflow_fingerprints({"a": FunctionStep(f, name="a"), "b": FunctionStep(f, name="b")})
    >>> fps["a"] == fps["b"] == step_fingerprint(FunctionStep(f))
    True
    """
    classes: dict[int, list[str]] = {}
    shared: dict[tuple[type, int], str] = {}
    out: dict[str, str] = {}
    last: tuple[type, Any] | None = None  # the (class, function) of the step before, and its fingerprint:
    last_fp = ""  # neighbours mostly share one (no key to make, no lookup)
    for name, step in steps.items():
        d = step.__dict__
        if d.keys() <= _BARE and getattr(step, "code_version", None) is None:
            cls, fn = type(step), d.get("function")
            if last is not None and last[0] is cls and last[1] is fn:
                out[name] = last_fp
                continue
            key = (cls, id(fn))
            fp = shared.get(key)
            if fp is None:
                fp = shared[key] = _shared_fingerprint(step, classes)
            last, last_fp = (cls, fn), fp
        else:
            fp = step_fingerprint(step, classes)
        out[name] = fp
    return out


def _fingerprint_list(steps: list[Step], kind: list[Any] | None = None) -> list[str]:
    """The fingerprints of ``steps``, in order (what :func:`workflow_fingerprints` maps by name).

    ``Workflow.refresh`` compares this list with the schema's column: no
    name-keyed table is built (at 200,000 steps building one costs as much as
    computing the fingerprints).

    Column at a time: one C-level pass per column (each step's ``__dict__``,
    whether it holds nothing of its own, its class and function), then one
    fingerprint per distinct (class, function) of the steps that hold
    nothing else, and one per step that does.

    ``kind``, when given, receives the ``(class, function)`` every step
    holds when they are all of one kind (what the stale check then need
    not look for again).
    """
    classes: dict[int, list[str]] = {}
    dicts = list(map(_DICT, steps))
    one = _one_kind(steps, dicts)
    if one is not None:  # (most workflows: a fan-out or a chain of one function)
        if kind is not None:
            kind.append(one)
        return [_shared_fingerprint(steps[0], classes)] * len(steps)
    types = list(map(type, steps))
    bare = list(map(_SHARED.issuperset, dicts))
    functions = list(map(id, map(dict.get, dicts, repeat("function"))))
    kinds: list[Any]
    if (not types or types.count(types[0]) == len(types)) and bare.count(True) == len(bare):
        kinds = functions  # one class, nothing of their own: the function tells the kind (no tuples)
    else:
        kinds = list(zip(types, functions, bare, strict=True))
    fp_of: dict[Any, str | None] = {}
    for kind, step in dict(zip(kinds, steps, strict=True)).items():  # one step of each kind
        own = not _BARE.issuperset(step.__dict__) or getattr(step, "code_version", None) is not None
        fp_of[kind] = None if own else _shared_fingerprint(step, classes)
    out: list[Any] = list(map(fp_of.__getitem__, kinds))
    if None in fp_of.values():  # steps with something of their own: one each
        for i in compress(range(len(out)), map(is_, out, repeat(None))):
            out[i] = step_fingerprint(steps[i], classes)
    return out


def one_class(steps: list[Step]) -> type | None:
    """The one class of every step in ``steps`` (``None``: none, or several): one C-level pass.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep
    >>> one_class([FunctionStep(len), FunctionStep(abs)]).__name__, one_class([])
    ('FunctionStep', None)
    """
    if not steps:
        return None
    cls = type(steps[0])
    return None if any(map(is_not, map(type, steps), repeat(cls))) else cls


def _one_kind(steps: list[Step], dicts: list[dict[str, Any]]) -> tuple[type, Any] | None:
    """``(class, function)`` when ``steps`` (``dicts``: their ``__dict__``) share one fingerprint without a
    look at each (else ``None``):
    one class, one function (the same object, or none), and nothing of their own that
    :func:`step_fingerprint` reads (every attribute a wiring one, no ``code_version`` of their own).

    C-level passes (about 0.1 µs a step), exact: such steps' fingerprints are made from their
    class and function alone, so the first step's is every step's.
    """
    cls = one_class(steps)
    if cls is None or not set().union(*dicts) <= _SHARED:
        return None
    fn = dicts[0].get("function")
    return None if any(map(is_not, map(dict.get, dicts, repeat("function")), repeat(fn))) else (cls, fn)


def reads_all_inputs(step: Step) -> bool:
    """Whether a step may read every run input (``**kwargs``, ``shared`` hooks), not only its parameters."""
    cls = type(step)
    return any(getattr(cls, hook) is not getattr(Step, hook) for hook in ("setup", "before_all", "teardown"))


__all__: list[str] = ["one_class", "reads_all_inputs", "step_fingerprint", "workflow_fingerprints"]
