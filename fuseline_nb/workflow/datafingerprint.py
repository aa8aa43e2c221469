"""Data fingerprints: a fast digest of a value, equal for equal data.

One function, :func:`data_fingerprint`, used for step results, run inputs
and the globals a step reads. NumPy arrays, pandas objects and Arrow arrays
and tables are hashed from their buffers, without pickling; other values
from their pickled bytes (a :class:`~fuseline_nb.workflow.value.Value`
carries the fingerprint it was made with). The hash is xxHash's XXH3-128 when the ``xxhash``
package is installed, BLAKE2b otherwise (a different hash only means a cache
miss, never a wrong hit).

Two equal values may still differ here (a dict built in another order, a
set of strings in another process): that costs a re-run, not a wrong result.

Examples
--------
>>> data_fingerprint([1, 2, 3]) == data_fingerprint([1, 2, 3])
True
>>> data_fingerprint([1, 2, 3]) == data_fingerprint([1, 2, 4])
False
>>> len(data_fingerprint("x"))
32
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

try:
    import xxhash

    def new_hasher() -> Any:
        return xxhash.xxh3_128()

    _digest = xxhash.xxh3_128_hexdigest
    HASH_NAME = "xxh3_128"
except ImportError:  # pragma: no cover - xxhash is a dependency; this keeps a broken install working
    import hashlib

    def new_hasher() -> Any:
        return hashlib.blake2b(digest_size=16)

    def _digest(data: bytes) -> str:  # type: ignore[misc]  # the same call as xxhash's
        return hashlib.blake2b(data, digest_size=16).hexdigest()

    HASH_NAME = "blake2b"

_PLAIN = (type(None), bool, int, float, str, bytes)


def data_fingerprint(value: Any, pickled: bytes | None = None) -> str:
    """A 32-hex-digit digest of ``value``'s data.

    A :class:`~fuseline_nb.workflow.value.Value` gives the fingerprint it was
    made with; ``pickled`` is the value's pickle when the caller has it
    already (so nothing is pickled twice).

    Raises
    ------
    TypeError
        When ``value`` can be neither hashed from its buffers nor pickled
        (the message names the type and the pickling error).

    Examples
    --------
    >>> import threading
    >>> data_fingerprint(threading.Lock())
    Traceback (most recent call last):
    TypeError: a _thread.lock cannot be fingerprinted: it cannot be pickled (TypeError: cannot pickle '_thread.lock' object)
    """
    if isinstance(value, _PLAIN):
        if type(value) not in _PLAIN:  # a subclass (an IntEnum member, a str with its own __repr__)
            return _subclass(value, pickled)
        if isinstance(value, bytes):
            return str(_digest(f"{type(value).__name__}:".encode() + value))
        try:
            text = repr(value)
        except ValueError:  # an int over Python's digit limit for str(): its hex has no limit
            text = hex(int(value))  # type: ignore[arg-type]
        return scalar_fingerprint(value, text)
    h = new_hasher()
    if type(value).__name__ == "Value" and isinstance(fp := getattr(value, "fingerprint", None), str):
        return fp  # made once where the value was born (workflow/value.py; no import: value imports us)
    try:
        hashed = _buffers(value, h)
    except Exception:  # a buffer layout we did not foresee: the pickle is still exact
        h, hashed = new_hasher(), False
    if not hashed:
        h.update(b"pickle:")
        h.update(_pickle(value) if pickled is None else pickled)
    return str(h.hexdigest())


def scalar_fingerprint(value: Any, text: str) -> str:
    """The fingerprint of a plain scalar other than ``bytes`` whose ``repr`` is ``text`` (what
    :func:`data_fingerprint` gives it; a caller that has the ``repr`` already need not make it twice).

    Examples
    --------
    >>> scalar_fingerprint(42, "42") == data_fingerprint(42)
    True
    """
    return str(_digest(f"{type(value).__name__}:{text}".encode("utf-8", "surrogatepass")))


def _subclass(value: Any, pickled: bytes | None) -> str:
    """A subclass of a plain type: its repr may hide its data (``__repr__`` of its own) and its pickle
    may name it only (an enum member): its class, its data as the plain type shows it, and its pickle."""
    t = type(value)
    h = new_hasher()
    h.update(f"{t.__module__}.{t.__qualname__}:".encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes):
        h.update(bytes(value))
    else:
        base = next(b for b in _PLAIN[2:] if isinstance(value, b))
        try:
            text = base.__repr__(value)
        except ValueError:  # an int over Python's digit limit for str(): its hex has no limit
            text = hex(int(value))
        h.update(text.encode("utf-8", "surrogatepass"))
    try:
        h.update(_pickle(value) if pickled is None else pickled)
    except TypeError:  # its plain data is hashed: an attribute that cannot be pickled is left out
        pass
    return str(h.hexdigest())


def _pickle(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        pass
    try:
        import cloudpickle

        return bytes(cloudpickle.dumps(value, protocol=5))
    except Exception as exc:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        raise TypeError(
            f"a {kind} cannot be fingerprinted: it cannot be pickled ({type(exc).__name__}: {exc})"
        ) from exc


def _buffers(value: Any, h: Any) -> bool:
    """Feed ``value``'s buffers to ``h`` when it is an array or a table; whether it was."""
    module = type(value).__module__.partition(".")[0]
    if module == "numpy" and "numpy" in sys.modules:
        return _numpy(value, h)
    if module == "pandas" and "pandas" in sys.modules:
        return _pandas(value, h)
    if module == "pyarrow" and "pyarrow" in sys.modules:
        return _arrow(value, h)
    return False


def _numpy(value: Any, h: Any) -> bool:
    import numpy as np

    if not isinstance(value, np.ndarray) or value.dtype.hasobject or isinstance(value, np.ma.MaskedArray):
        return False  # (a masked array's mask is data its buffer does not hold: its pickle has it)
    t = type(value)
    # a structured dtype's str names its size only ('|V16'): its fields' names and types are data
    dtype = value.dtype.str if value.dtype.names is None else repr(value.dtype.descr)
    kind = "ndarray" if t is np.ndarray else f"ndarray {t.__module__}.{t.__qualname__}"  # np.matrix multiplies
    h.update(f"{kind}:{dtype}:{value.shape}:".encode())
    # a byte view, not memoryview(value): the buffer protocol refuses datetime64 / timedelta64
    # ("cannot include dtype 'M' in a buffer") while a uint8 view of the same memory is fine
    h.update(memoryview(np.ascontiguousarray(value).reshape(-1).view(np.uint8)))  # type: ignore[arg-type]
    return True


def _pandas(value: Any, h: Any) -> bool:
    import pandas as pd

    t = type(value)
    if isinstance(value, pd.Series):  # a Series is not its one-column frame (``x.sum()`` differs)
        kind = "series"
        value = value.to_frame()
    elif isinstance(value, pd.DataFrame):
        kind = "frame"
    else:
        return False
    if t is not pd.Series and t is not pd.DataFrame:
        kind = f"{kind} {t.__module__}.{t.__qualname__}"
    h.update(f"{kind}:{value.shape}:".encode())
    h.update(_pickle((list(value.columns), value.index.dtype.str if hasattr(value.index.dtype, "str") else "",
                      list(value.dtypes.astype(str)), list(value.index.names), list(value.columns.names))))
    if not _index(value.index, h):
        return False
    for _, column in value.items():
        if not _column(column, h):
            return False
    return True


def _index(index: Any, h: Any) -> bool:
    import pandas as pd

    if isinstance(index, pd.RangeIndex):
        h.update(f"range:{index.start}:{index.stop}:{index.step}".encode())
        return True
    return _column(pd.Series(index), h)


def _column(column: Any, h: Any) -> bool:
    import numpy as np
    import pandas as pd

    values = column.array
    if isinstance(values, pd.Categorical):  # its categories (unused ones too) and order are data
        h.update(f"categorical:{values.ordered}:".encode())
        return _index(values.categories, h) and _numpy(values.codes, h)
    buffers = getattr(values, "_pa_array", None)  # Arrow-backed columns (string[pyarrow], ...)
    if buffers is not None:
        return _arrow(buffers, h)
    values = column.to_numpy()
    if isinstance(values, np.ndarray) and not values.dtype.hasobject:
        return _numpy(values, h)
    h.update(_pickle(values))  # Python objects (str columns of object dtype): their pickle, made once
    return True


def _arrow(value: Any, h: Any) -> bool:
    import pyarrow as pa

    if isinstance(value, pa.ChunkedArray):
        h.update(b"chunked:")
        arrays = value.chunks
    elif isinstance(value, pa.Array):
        arrays = [value]
    elif isinstance(value, (pa.Table, pa.RecordBatch)):
        h.update(f"{'table' if isinstance(value, pa.Table) else 'batch'}:{value.schema}".encode())
        return all([_arrow(column, h) for column in value.columns])
    else:
        return False
    for arr in arrays:
        h.update(f"array:{arr.type}:{len(arr)}:{arr.offset}:".encode())
        if isinstance(arr, pa.DictionaryArray):  # its buffers are the indices': the dictionary is data too
            _arrow(arr.indices, h)
            if not _arrow(arr.dictionary, h):
                return False
            continue
        if "dictionary<" in str(arr.type):  # a dictionary inside (a list's, a struct's): its pickle has it
            return False
        for buf in arr.buffers():
            h.update(b"-" if buf is None else memoryview(buf))
    return True


__all__ = ["HASH_NAME", "data_fingerprint", "new_hasher", "scalar_fingerprint"]
