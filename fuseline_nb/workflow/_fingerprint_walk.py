"""The walk behind a step's code fingerprint (:mod:`.fingerprint`): the canonical text of what it runs.

:class:`_Walker` appends the text of a step's function or class, the user
code it reaches and the values it reads; with a witness list it also notes
what each part of the text was read from, so :mod:`.fingerprint` can tell
later, without walking again, that nothing it read was replaced.

Examples
--------
>>> parts = []
>>> def double(x):
...     return 2 * x
>>> _Walker(parts).function(double)
>>> parts[0].startswith("def double ")
True
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import types
from typing import Any

from ._fingerprint_code import code_digest, global_names, is_user, library
from .depends import label
from .steps import WIRING_ATTRIBUTES, Depends, FunctionStep, Step

_CACHE_WRAPPER: Any = functools._lru_cache_wrapper  # type: ignore[attr-defined]  # what functools.cache returns
#: What :meth:`_Walker.function` reads of a function besides its globals and closure cells.
_FUNCTION_READS = ("__code__", "__defaults__", "__kwdefaults__", "__closure__", "__qualname__", "__module__")
_ABSENT: Any = object()  # what a witness reads where nothing is bound (a global not defined, an empty cell)


def _length(holder: Any, _key: Any, _default: Any) -> int:
    return len(holder)


def _cell_contents(cell: Any, _key: Any, default: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return default


_SMALL = 256  # containers up to this many items are hashed item by item
_PLAIN = (type(None), bool, int, float, complex, str, bytes)
_WIRING = WIRING_ATTRIBUTES
_CLASS_SKIP = frozenset({"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__",
                         "__annotations__", "_abc_impl", "__slots__", "__firstlineno__",
                         "__static_attributes__", "__parameters__", "__orig_bases__",
                         "__slotnames__"})  # (copyreg caches it in the class at its first pickle)



def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class _Walker:
    """Appends the canonical text of everything a step runs to ``parts``.

    With ``witness`` (a list), it also notes each read the text depends on as
    ``(getter, holder, key, value)``: a global's value, a closure cell's
    contents, a function's code, defaults, name. Every value read is kept by
    identity, so the list says the text is still the same when each getter
    still returns the very same object — which holds only for values that
    cannot change in place: a read of anything that can (a list, a dict, an
    object hashed by its data, a class's members) drops the witness
    (``witness`` becomes ``None``: the text must be made again next time).
    """

    def __init__(self, parts: list[str], classes: dict[int, list[str]] | None = None,
                 witness: list[tuple[Any, Any, Any, Any]] | None = None) -> None:
        self.parts = parts
        self.seen: set[int] = set()
        #: the text of each step class, shared by the steps of one workflow (walked once per call)
        self.classes = classes
        self.witness = witness

    def read(self, getter: Any, holder: Any, key: Any, value: Any) -> None:
        """Note that the text depends on ``getter(holder, key, _ABSENT) is value`` (see the class docstring)."""
        if self.witness is not None:
            self.witness.append((getter, holder, key, value))

    def volatile(self) -> None:
        """A value that may change in place was read: no witness can vouch for this text."""
        self.witness = None

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
        elif isinstance(obj, _CACHE_WRAPPER):  # functools.cache / lru_cache: the function it wraps
            self.parts.append("cached")
            self.obj(obj.__wrapped__)  # type: ignore[attr-defined]
        elif isinstance(obj, types.MethodType):
            self.volatile()
            self.parts.append("method")
            self.obj(obj.__func__)
            self.value(obj.__self__)
        elif isinstance(obj, functools.partial):
            self.volatile()
            self.parts.append("partial")
            self.obj(obj.func)
            self.value(obj.args)
            self.value(obj.keywords)
        else:
            self.value(obj)

    def function(self, fn: types.FunctionType) -> None:
        code = fn.__code__
        if self.witness is not None:
            for attr in _FUNCTION_READS:
                self.read(getattr, fn, attr, getattr(fn, attr))
        self.parts.append(f"def {fn.__qualname__} {code_digest(code)}")
        self.value(fn.__defaults__)
        self.value(fn.__kwdefaults__)
        attrs = fn.__dict__  # ``helper.factor = 3``: attributes set on a function are data its code may read
        self.read(_length, attrs, None, len(attrs))  # (one added or removed)
        for key in sorted(attrs):
            self.read(dict.get, attrs, key, attrs[key])
            self.parts.append(f"attribute {key}")
            self.value(attrs[key])
        for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell (a name bound later)
                self.read(_cell_contents, cell, None, _ABSENT)
                continue
            self.read(_cell_contents, cell, None, contents)
            self.parts.append(f"free {name}")
            self.obj(contents)
        for name in global_names(code):
            self.read(dict.get, fn.__globals__, name, fn.__globals__.get(name, _ABSENT))
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
            self.read(dict.get, vars(module), name, vars(module).get(name, _ABSENT))
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
        self.volatile()  # its members can be replaced in place
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
        cls = type(value)
        if cls not in _BARE_TYPES and is_user(cls.__module__) and not isinstance(value, _CODE):
            # an object of a notebook class — a frozen dataclass, an enum member, a namedtuple, a float
            # with methods — pickles by reference to its class: its methods (and members) count by code
            self.cls(cls)
        if isinstance(value, _PLAIN):
            try:
                parts.append(f"{type(value).__name__}:{value!r}")
            except ValueError:  # an int over Python's digit limit for str(): its hex has no limit
                parts.append(f"{type(value).__name__}:{hex(int(value))}")  # type: ignore[arg-type]
        elif isinstance(value, (tuple, list, frozenset, set)) and len(value) <= _SMALL and depth < 8:
            if not isinstance(value, (tuple, frozenset)):
                self.volatile()  # a list or set can change in place
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            parts.append(f"{type(value).__name__}[{len(value)}]")
            for item in items:
                self.value(item, depth + 1)
        elif isinstance(value, dict) and len(value) <= _SMALL and depth < 8:
            self.volatile()
            parts.append(f"dict[{len(value)}]")
            for k, v in value.items():
                self.value(k, depth + 1)
                self.value(v, depth + 1)
        elif isinstance(value, enum.Enum):
            parts.append(f"enum {type(value).__module__}.{type(value).__qualname__}.{value.name}")
            self.value(value.value, depth + 1)  # (a member pickles by name: its value is the class's)
        elif isinstance(value, Depends):
            self.volatile()
            # the upstream step's own fingerprint and result count through the data, not here
            condition = value.condition
            if condition is None:
                parts.append(f"depends {value!r}")
            else:  # a condition counts by its code and data (its repr may hold an address, or hide its code)
                parts.append(f"depends Depends({', '.join(map(label, value.steps))}) condition")
                self.obj(condition)
        elif isinstance(value, Step):
            self.volatile()
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

            self.volatile()  # hashed by its data, which may change in place
            try:
                parts.append(f"data {type(value).__qualname__} {data_fingerprint(value)}")
            except Exception:  # cannot be pickled: its type is all there is (docs: use code_version)
                parts.append(f"opaque {type(value).__module__}.{type(value).__qualname__}")
            self.held_functions(value)

    def held_functions(self, value: Any) -> None:
        """The notebook functions a library object holds (``np.vectorize(f)``'s ``pyfunc``): its pickle
        names them only (``__main__.f``), so their code counts here."""
        inner = getattr(value, "__dict__", None)
        if type(inner) is not dict or len(inner) > _SMALL or is_user(type(value).__module__):
            return
        for key in sorted(k for k, v in inner.items() if isinstance(v, types.FunctionType) and is_user(v.__module__)):
            self.parts.append(f"holds {key}")
            self.obj(inner[key])


#: Types whose values are walked without a look at their class; what counts as code, not a value.
_BARE_TYPES = frozenset({*_PLAIN, tuple, list, frozenset, set, dict})
_CODE = (types.FunctionType, type, types.ModuleType, types.MethodType, types.BuiltinFunctionType,
         functools.partial, Depends, Step)


def _frozen(value: Any) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return bool(getattr(params, "frozen", False))


__all__: list[str] = []
