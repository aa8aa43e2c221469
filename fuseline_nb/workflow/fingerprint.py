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

import dataclasses
import enum
import functools
import hashlib
import types
from itertools import compress, repeat
from operator import attrgetter, is_, is_not
from typing import Any

from ._fingerprint_code import code_digest, global_names, is_user, library
from .depends import label
from .steps import WIRING_ATTRIBUTES, Depends, FunctionStep, Step

#: Bumped when the recipe changes, so old cache entries stop matching.
RECIPE = "1"
_SMALL = 256  # containers up to this many items are hashed item by item
_PLAIN = (type(None), bool, int, float, complex, str, bytes)
_WIRING = WIRING_ATTRIBUTES
_CLASS_SKIP = frozenset({"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__",
                         "__annotations__", "_abc_impl", "__slots__", "__firstlineno__",
                         "__static_attributes__", "__parameters__", "__orig_bases__",
                         "__slotnames__"})  # (copyreg caches it in the class at its first pickle)


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


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class _Walker:
    """Appends the canonical text of everything a step runs to ``parts``."""

    def __init__(self, parts: list[str], classes: dict[int, list[str]] | None = None) -> None:
        self.parts = parts
        self.seen: set[int] = set()
        #: the text of each step class, shared by the steps of one workflow (walked once per call)
        self.classes = classes

    def step(self, step: Step) -> None:
        # the step's own function or class counts by its code wherever it was defined
        if isinstance(step, FunctionStep):
            fn = step.function
            if isinstance(fn, types.FunctionType):
                self.seen.add(id(fn))
                self.function(fn)
            else:
                self.obj(fn)
        elif self.classes is None:
            self.cls(type(step), own=True)
        else:
            cls = type(step)
            text = self.classes.get(id(cls))
            if text is None:
                text = self.classes[id(cls)] = []
                _Walker(text).cls(cls, own=True)
            self.parts.extend(text)
        for key in sorted(k for k in vars(step) if k not in _WIRING and k != "function"):
            self.parts.append(f"attr {key}")
            self.value(vars(step)[key])

    # -- code ---------------------------------------------------------------------
    def obj(self, obj: Any) -> None:
        """A global, closure variable or attribute the code reads."""
        if isinstance(obj, (types.FunctionType, type, types.ModuleType)) and id(obj) in self.seen:
            self.parts.append(f"again {getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}")
            return
        if isinstance(obj, types.FunctionType):
            if is_user(obj.__module__):
                self.seen.add(id(obj))
                self.function(obj)
            else:
                self.parts.append(f"lib {library(obj.__module__)}:{obj.__qualname__}")
        elif isinstance(obj, type):
            self.cls(obj)
        elif isinstance(obj, types.ModuleType):
            self.parts.append(f"module {obj.__name__}")
            if not is_user(obj.__name__):
                self.parts.append(library(obj.__name__))
        elif isinstance(obj, (types.BuiltinFunctionType, types.MethodWrapperType)):
            self.parts.append(f"builtin {getattr(obj, '__module__', None)}.{obj.__qualname__}")
        elif isinstance(obj, types.MethodType):
            self.parts.append("method")
            self.obj(obj.__func__)
            self.value(obj.__self__)
        elif isinstance(obj, functools.partial):
            self.parts.append("partial")
            self.obj(obj.func)
            self.value(obj.args)
            self.value(obj.keywords)
        else:
            self.value(obj)

    def function(self, fn: types.FunctionType) -> None:
        code = fn.__code__
        self.parts.append(f"def {fn.__qualname__} {code_digest(code)}")
        self.value(fn.__defaults__)
        self.value(fn.__kwdefaults__)
        for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell (a name bound later)
                continue
            self.parts.append(f"free {name}")
            self.obj(contents)
        for name in global_names(code):
            if name in fn.__globals__:
                self.parts.append(f"global {name}")
                value = fn.__globals__[name]
                if isinstance(value, types.ModuleType) and is_user(value.__name__):
                    self.user_module(value, code)
                else:
                    self.obj(value)

    def user_module(self, module: types.ModuleType, code: types.CodeType) -> None:
        """``helpers.f()`` where ``helpers`` is the user's module: the attributes the code names."""
        if id(module) in self.seen:
            self.parts.append(f"again module {module.__name__}")
            return
        self.seen.add(id(module))
        self.parts.append(f"module {module.__name__}")
        for name in global_names(code):
            if name in vars(module):
                self.parts.append(f"{module.__name__}.{name}")
                self.obj(vars(module)[name])

    def cls(self, cls: type, own: bool = False) -> None:
        if id(cls) in self.seen:
            self.parts.append(f"again {cls.__qualname__}")
            return
        self.seen.add(id(cls))
        if not own and not is_user(cls.__module__):
            self.parts.append(f"class {library(cls.__module__)}:{cls.__qualname__}")
            return
        self.parts.append(f"class {cls.__qualname__}")
        for base in cls.__bases__:
            self.cls(base)
        for key in sorted(k for k in vars(cls) if k not in _CLASS_SKIP):
            member = vars(cls)[key]
            self.parts.append(f"member {key}")
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, property):
                for accessor in (member.fget, member.fset, member.fdel):
                    if accessor is not None:
                        self.obj(accessor)
                continue
            self.obj(member)

    # -- values --------------------------------------------------------------------
    def value(self, value: Any, depth: int = 0) -> None:
        parts = self.parts
        if isinstance(value, _PLAIN):
            try:
                parts.append(f"{type(value).__name__}:{value!r}")
            except ValueError:  # an int over Python's digit limit for str(): its hex has no limit
                parts.append(f"{type(value).__name__}:{hex(int(value))}")  # type: ignore[arg-type]
        elif isinstance(value, (tuple, list, frozenset, set)) and len(value) <= _SMALL and depth < 8:
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            parts.append(f"{type(value).__name__}[{len(value)}]")
            for item in items:
                self.value(item, depth + 1)
        elif isinstance(value, dict) and len(value) <= _SMALL and depth < 8:
            parts.append(f"dict[{len(value)}]")
            for k, v in value.items():
                self.value(k, depth + 1)
                self.value(v, depth + 1)
        elif isinstance(value, enum.Enum):
            parts.append(f"enum {type(value).__module__}.{type(value).__qualname__}.{value.name}")
        elif isinstance(value, Depends):
            # the upstream step's own fingerprint and result count through the data, not here
            condition = value.condition
            if condition is None:
                parts.append(f"depends {value!r}")
            else:  # a condition counts by its code and data (its repr may hold an address, or hide its code)
                parts.append(f"depends Depends({', '.join(map(label, value.steps))}) condition")
                self.obj(condition)
        elif isinstance(value, Step):
            parts.append(f"step {type(value).__qualname__} {value.name}")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type) and _frozen(value) and depth < 8:
            parts.append(f"dataclass {type(value).__module__}.{type(value).__qualname__}")
            for f in dataclasses.fields(value):
                self.value(getattr(value, f.name), depth + 1)
        elif isinstance(value, (types.FunctionType, type, types.ModuleType, types.MethodType,
                                types.BuiltinFunctionType, functools.partial)):
            self.obj(value)
        else:
            from .datafingerprint import data_fingerprint

            cls = type(value)
            if is_user(cls.__module__):
                # an object of a notebook class pickles by reference to its class: its methods count by code
                self.cls(cls)
            try:
                parts.append(f"data {type(value).__qualname__} {data_fingerprint(value)}")
            except Exception:  # cannot be pickled: its type is all there is (docs: use code_version)
                parts.append(f"opaque {type(value).__module__}.{type(value).__qualname__}")


def _frozen(value: Any) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return bool(getattr(params, "frozen", False))


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
                fp = shared[key] = step_fingerprint(step, classes)
            last, last_fp = (cls, fn), fp
        else:
            fp = step_fingerprint(step, classes)
        out[name] = fp
    return out


def _fingerprint_list(steps: list[Step]) -> list[str]:
    """The fingerprints of ``steps``, in order (what :func:`workflow_fingerprints` maps by name).

    ``Workflow.refresh`` compares this list with the schema's column: no
    name-keyed table is built (at 200,000 steps building one costs as much as
    computing the fingerprints).

    Column at a time: one C-level pass per column (each step's ``__dict__``,
    whether it holds nothing of its own, its class and function), then one
    fingerprint per distinct (class, function) of the steps that hold
    nothing else, and one per step that does.
    """
    classes: dict[int, list[str]] = {}
    dicts = list(map(_DICT, steps))
    if _one_kind(steps, dicts):  # (most workflows: a fan-out or a chain of one function)
        return [step_fingerprint(steps[0], classes)] * len(steps)
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
        fp_of[kind] = None if own else step_fingerprint(step, classes)
    out: list[Any] = list(map(fp_of.__getitem__, kinds))
    if None in fp_of.values():  # steps with something of their own: one each
        for i in compress(range(len(out)), map(is_, out, repeat(None))):
            out[i] = step_fingerprint(steps[i], classes)
    return out


def _one_kind(steps: list[Step], dicts: list[dict[str, Any]]) -> bool:
    """Whether ``steps`` (``dicts``: their ``__dict__``) share one fingerprint without a look at each:
    one class, one function (the same object, or none), and nothing of their own that
    :func:`step_fingerprint` reads (every attribute a wiring one, no ``code_version`` of their own).

    C-level passes (about 0.1 µs a step), exact: such steps' fingerprints are made from their
    class and function alone, so the first step's is every step's.
    """
    if not steps:
        return False
    first = steps[0]
    if any(map(is_not, map(type, steps), repeat(type(first)))):
        return False
    if not set().union(*dicts) <= _SHARED:
        return False
    fn = dicts[0].get("function")
    return not any(map(is_not, map(dict.get, dicts, repeat("function")), repeat(fn)))


def reads_all_inputs(step: Step) -> bool:
    """Whether a step may read every run input (``**kwargs``, ``shared`` hooks), not only its parameters."""
    cls = type(step)
    return any(getattr(cls, hook) is not getattr(Step, hook) for hook in ("setup", "before_all", "teardown"))


__all__: list[str] = ["reads_all_inputs", "step_fingerprint", "workflow_fingerprints"]
