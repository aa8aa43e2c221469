"""Shipping workflows to worker processes by value, and loading them there.

A workflow travels as cloudpickle bytes, so steps whose classes or functions
were defined in a notebook cell (``__main__``) run in spawned workers. When
something a step holds cannot be pickled, :func:`ship` raises
:class:`~fuseline_nb.errors.PicklingError` naming the step and the path to
the offending object (``attribute 'db' -> attribute 'conn'``), found by
pickling each step *shallowly* (other steps stand in as references).

Code defined in a notebook cell travels with its file name and the cell's
source lines (cloudpickle alone would rename it ``<dynamic-code>``), so a
worker's traceback shows the same ``File ".../ipykernel_.../....py", line 3``
and source line as an in-process one.

In a worker, :func:`load` unpickles the workflows and drops their
``StepTimeoutPolicy`` wrappers: there the kernel enforces a timeout by
killing the process, which, unlike a helper thread, really stops the step.

The bytes are two pickles back to back: the workflow, whose schema is only a
reference to the kernel's, then the schema itself. A pool worker reads the
first alone — it runs steps by name and registers by reference, so it never
builds the schema (at 1→1,000,000→1 that saves each worker about 830 MB and
60 % of its loading time); a process that needs the schema (a kernel
resuming a stored definition, a Dask worker) reads both.

Examples
--------
>>> import threading
>>> from fuseline_nb import FunctionStep, Workflow
>>> lock = threading.Lock()
>>> def guarded(x: int) -> int:
...     with lock:
...         return x
>>> ship(Workflow(outputs=[FunctionStep(guarded)]))
Traceback (most recent call last):
fuseline_nb.errors.PicklingError: step 'guarded' cannot be sent to a worker process: attribute 'function' -> global 'lock' (a lock) cannot be pickled (TypeError: cannot pickle '_thread.lock' object). Create such objects inside run_step or setup, so each worker makes its own.
"""

from __future__ import annotations

import copy
import copyreg
import io
import linecache
import pickle
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import cloudpickle

from ..errors import PicklingError
from ..workflow.graph import Workflow
from ..workflow.policies import StepTimeoutPolicy
from ..workflow.schema import WorkflowSchema, refer_to_shipped, remember_shipped
from ..workflow.steps import Step, step_policies
from ._cachewrap import CACHE_WRAPPER, reduce_cached
from ._freshmods import refresh as fresh_modules
from .channel import WorkflowBlob

_CLOUDPICKLE_CODE_REDUCE = cloudpickle.Pickler.dispatch_table[types.CodeType]
_DEEP_STACK = 512 * 1024 * 1024  # reserved, not committed: only the pages used cost memory
_HINT = "Create such objects inside run_step or setup, so each worker makes its own."


def ship(wf: Workflow) -> WorkflowBlob:
    """``wf`` as ``((workflow_id, version), bytes)`` for worker processes.

    The copy that travels leaves out what only the kernel needs (the last
    in-process run, the trace file and the default engine).

    Raises
    ------
    PicklingError
        When a step holds something that cannot be pickled.
    """
    if not isinstance(wf, Workflow):
        raise TypeError(f"expected a Workflow, not {wf!r}")
    schema = wf.to_schema()
    ref = remember_shipped(schema)
    clone = copy.copy(wf)  # shallow: the same steps
    clone.__dict__ = dict(wf.__dict__)
    clone.__dict__.pop("_last_run", None)
    clone.trace = None
    clone.execution_engine = None
    clone._schema_cache = _SchemaRef(ref)  # type: ignore[assignment]  # the schema follows, in a pickle of its own
    try:
        data = _dumps((clone, ref), schema)
    except Exception as exc:
        raise _diagnose(clone, exc) from exc
    return (wf.workflow_id, wf.version), data


class _SchemaRef:
    """In the kernel, while shipping: a workflow's schema, pickled as a reference to it."""

    __slots__ = ("ref",)

    def __init__(self, ref: tuple[str, str, str]) -> None:
        self.ref = ref

    def __reduce__(self) -> tuple[Any, ...]:
        return _WorkerSchema.of, self.ref


class _WorkerSchema(WorkflowSchema):
    """A worker's stand-in for the schema its kernel shipped: the id, version and structure key.

    Registering pickles it back as the kernel's own object; its steps and
    edges cannot be read here (the worker does not hold them), and saying
    so beats answering with none.

    Examples
    --------
    >>> s = _WorkerSchema.of("w", "1", "ab12")
    >>> s.workflow_id, s.structure_key()
    ('w', 'ab12')
    >>> s.steps
    Traceback (most recent call last):
    RuntimeError: workflow 'w' version '1' was loaded in a worker process without its schema (the kernel holds it): its steps and edges cannot be read here
    """

    @classmethod
    def of(cls, workflow_id: str, version: str, key: str) -> _WorkerSchema:
        """The stand-in for the kernel's schema ``(workflow_id, version, key)``."""
        schema = object.__new__(cls)
        object.__setattr__(schema, "__dict__", {
            "workflow_id": workflow_id, "version": version, "outputs": (), "name": "", "policies": (),
            "_structure_key": key})
        refer_to_shipped(schema, (workflow_id, version, key))
        return schema

    def __repr__(self) -> str:
        return f"<schema of workflow {self.workflow_id!r} version {self.version!r}, held by the kernel>"

    def _absent(self) -> Any:
        raise RuntimeError(
            f"workflow {self.workflow_id!r} version {self.version!r} was loaded in a worker process without "
            "its schema (the kernel holds it): its steps and edges cannot be read here")

    steps = property(_absent)  # type: ignore[assignment]
    edges = property(_absent)  # type: ignore[assignment]


def _code_reduce(code: types.CodeType) -> tuple[Any, ...]:
    """Reduce a code object as cloudpickle does, keeping its file name and that file's lines."""
    ctor, args = _CLOUDPICKLE_CODE_REDUCE(code)
    filename = code.co_filename
    lines = linecache.getlines(filename) if not filename.startswith("<") or filename in linecache.cache else []
    return _rebuild_code, (ctor, args, filename, lines or None)


def _rebuild_code(ctor: Any, args: tuple[Any, ...], filename: str, lines: list[str] | None) -> types.CodeType:
    r"""In a worker: the code object under its own file name, its source lines known to ``linecache``.

    Examples
    --------
    >>> import linecache
    >>> code = compile("x = 1\n", "<cell-7>", "exec")
    >>> rebuilt = pickle.loads(_dumps_once(code))
    >>> rebuilt.co_filename, linecache.getline("<cell-7>", 1)
    ('<cell-7>', '')
    >>> linecache.cache["<cell-8>"] = (6, None, ["y = 2\n"], "<cell-8>")
    >>> blob = _dumps_once(compile("y = 2\n", "<cell-8>", "exec"))
    >>> del linecache.cache["<cell-8>"]  # as in a fresh worker process
    >>> rebuilt = pickle.loads(blob)
    >>> rebuilt.co_filename, linecache.getline("<cell-8>", 1)
    ('<cell-8>', 'y = 2\n')
    """
    code: types.CodeType = ctor(*args).replace(co_filename=filename)
    if lines:
        # mtime None: linecache.checkcache() keeps the entry (there may be no such file here)
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return code


class _SourcePickler(cloudpickle.Pickler):
    """cloudpickle, except that code keeps its file name and source lines.

    Its dispatch table is one plain dict made per pickler (copyreg's
    registrations as they are now, cloudpickle's, ours): the C pickler looks
    a plain dict up without calling Python, where cloudpickle's ``ChainMap``
    costs a Python call per object (a third of the time on large workflows).
    """

    def __init__(self, file: Any, protocol: int | None = None) -> None:
        table = dict(copyreg.dispatch_table)
        table.update(cloudpickle.Pickler.dispatch_table.maps[0])
        table[types.CodeType] = _code_reduce
        table[CACHE_WRAPPER] = reduce_cached  # a notebook helper under functools.cache: by value
        self.dispatch_table = table  # before the C pickler's __init__, which reads it
        super().__init__(file, protocol=protocol)


def _dumps_once(*objs: Any) -> bytes:
    """The pickles of ``objs`` back to back, made by one pickler: a later one refers to what an earlier one
    holds (names shared by the workflow and its schema are written once); read them with one unpickler."""
    buf = io.BytesIO()
    pickler = _SourcePickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    for obj in objs:
        pickler.dump(obj)
    return buf.getvalue()


def _dumps(*objs: Any) -> bytes:
    try:
        return _dumps_once(*objs)
    except pickle.PicklingError as exc:
        if "recursion" not in str(exc):
            raise
    # Steps hold their successors, so pickling a long chain recurses once per
    # step: retry on a thread with a deep stack and a high recursion limit.
    box: dict[str, Any] = {}

    def target() -> None:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 1_000_000))
        try:
            box["data"] = _dumps_once(*objs)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            sys.setrecursionlimit(limit)

    size = threading.stack_size(_DEEP_STACK)
    try:
        worker = threading.Thread(target=target, name="fuseline-ship")
        worker.start()
    finally:
        threading.stack_size(size)
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["data"]  # type: ignore[no-any-return]


def _unpickle(data: bytes, *, schema: bool = True) -> tuple[Any, tuple[str, str, str] | None]:
    """``(workflow, reference to the shipping process's schema)`` from :func:`ship`'s bytes.

    ``schema=False`` reads the workflow alone: its schema stays a stand-in
    for the kernel's (:class:`_WorkerSchema`). Bytes stored before the schema
    travelled on its own hold it inside the workflow; older ones hold the
    workflow alone.
    """
    unpickler = pickle.Unpickler(io.BytesIO(data))
    obj = unpickler.load()
    if not (isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], Workflow)):
        return obj, None
    wf, ref = obj
    if schema and isinstance(wf._schema_cache, _WorkerSchema):
        wf._schema_cache = unpickler.load()
    return wf, ref


def load(blobs: list[WorkflowBlob], *, by_reference: bool = False) -> dict[tuple[str, str], Workflow]:
    """Unpickle shipped workflows (in a worker); a later blob of the same key wins.

    ``by_reference``: the worker talks only to the kernel that shipped them,
    so their schemas are not loaded: each workflow's schema is a stand-in
    that, pickled back (``register_worker``), travels as a reference to the
    kernel's own schema object instead of every step.

    Raises
    ------
    PicklingError
        When a workflow cannot be rebuilt here (e.g. a step's module cannot be
        imported by the worker).
    """
    out: dict[tuple[str, str], Workflow] = {}
    fresh_modules()  # a user module the notebook reloaded since: reloaded here too (see _freshmods)
    for key, data in blobs:
        try:
            wf, ref = _unpickle(data, schema=not by_reference)
        except Exception as exc:
            err = PicklingError(
                f"workflow {key[0]!r} version {key[1]!r} cannot be loaded in a worker process "
                f"({type(exc).__name__}: {exc}); a step class or function must be defined in the "
                "notebook or in a module the worker can import, and an object of the notebook must not "
                "pickle by name (a __reduce__ returning a name): its run fails, other workflows go on"
            )
            err.workflow_key = key
            raise err from exc
        if by_reference and ref is not None and not isinstance(wf._schema_cache, _WorkerSchema):
            refer_to_shipped(wf.to_schema(), ref)  # bytes from before the schema travelled on its own
        elif not by_reference:
            wf.to_schema()  # made before the timeouts go: the schema as shipped, policies included
        for step in wf.steps.values():
            if step_policies(step):  # (a step without policies gets no list)
                step.policies = [p for p in step.policies if not isinstance(p, StepTimeoutPolicy)]
        out[key] = wf
    fresh_modules()  # the modules these imported: their files as they are now
    return out


class _ShallowPickler(cloudpickle.Pickler):
    """Pickles one step, standing in a reference for every other step or workflow."""

    def __init__(self, file: Any, root: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.root = root

    def persistent_id(self, obj: Any) -> Any:
        if obj is not self.root and isinstance(obj, (Step, Workflow)):
            return id(obj)
        return None


def _fails(obj: Any, root: Any) -> BaseException | None:
    try:
        _ShallowPickler(io.BytesIO(), root).dump(obj)
    except Exception as exc:
        return exc
    return None


def _parts(obj: Any) -> Iterator[tuple[str, Any]]:
    """Named parts of ``obj`` that pickling it pickles too."""
    if isinstance(obj, types.FunctionType):
        code = obj.__code__
        for name, cell in zip(code.co_freevars, obj.__closure__ or (), strict=False):
            try:
                yield f"closure variable {name!r}", cell.cell_contents
            except ValueError:  # an empty cell
                continue
        for name in code.co_names:
            if name in obj.__globals__:
                yield f"global {name!r}", obj.__globals__[name]
        for i, default in enumerate(obj.__defaults__ or ()):
            yield f"default #{i}", default
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield f"key {k!r}", v
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, v in enumerate(obj):
            yield f"item {i}", v
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for k, v in vars(obj).items():
            yield f"attribute {k!r}", v


def _culprit(obj: Any, root: Any, path: list[str], depth: int) -> tuple[list[str], Any, BaseException] | None:
    exc = _fails(obj, root)
    if exc is None:
        return None
    if depth > 0:
        for label, part in _parts(obj):
            if isinstance(part, (Step, Workflow)) and part is not root:
                continue
            found = _culprit(part, root, [*path, label], depth - 1)
            if found is not None:
                return found
    return path, obj, exc


def _describe(obj: Any) -> str:
    name = type(obj).__name__
    if name == "lock":
        return "a lock"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}" if type(obj).__module__ != "builtins" else f"a {name}"


def _diagnose(wf: Workflow, exc: BaseException) -> PicklingError:
    for name, step in wf.steps.items():
        found = _culprit(step, step, [], 4)
        if found is not None:
            path, obj, err = found
            where = " -> ".join(path) if path else "the step itself"
            return PicklingError(
                f"step {name!r} cannot be sent to a worker process: {where} ({_describe(obj)}) "
                f"cannot be pickled ({type(err).__name__}: {err}). {_HINT}"
            )
    for key, value in vars(wf).items():
        if key not in ("steps", "graph", "bindings", "outputs") and _fails(value, None) is not None:
            return PicklingError(f"workflow attribute {key!r} ({_describe(value)}) cannot be pickled: {exc}")
    return PicklingError(f"workflow {wf.workflow_id!r} cannot be sent to a worker process: "
                         f"{type(exc).__name__}: {exc}")


def load_definition(key: tuple[str, str], blob: bytes) -> Workflow:
    """Rebuild, in this process, workflow bytes that :func:`ship` made (a stored definition).

    Engines call it before shipping stored bytes on, so a definition that
    cannot be loaded (a step's module missing) is refused before any worker
    sees it.

    Raises
    ------
    PicklingError
        The bytes cannot be unpickled here (names the workflow and the error).
    TypeError
        The bytes hold something other than a :class:`Workflow`.

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> load_definition(*ship(Workflow(outputs=[FunctionStep(len, name="n")], workflow_id="w"))).workflow_id
    'w'
    >>> try:
    ...     load_definition(("w", "1"), b"not a pickle")
    ... except PicklingError as exc:
    ...     print(str(exc)[:62])
    workflow 'w' version '1' cannot be loaded in this process (Unp
    """
    try:
        wf, _ = _unpickle(blob)
    except Exception as exc:
        raise PicklingError(
            f"workflow {key[0]!r} version {key[1]!r} cannot be loaded in this process "
            f"({type(exc).__name__}: {exc}); a step class or function must be defined in the "
            "notebook or in a module this process can import"
        ) from exc
    if not isinstance(wf, Workflow):
        raise TypeError(f"the bytes of workflow {key[0]!r} version {key[1]!r} hold {wf!r}, not a Workflow")
    remember_shipped(wf.to_schema())  # shipped on from here: workers may name it by reference
    return wf


__all__ = ["load", "load_definition", "ship"]
