"""A notebook function wrapped by ``functools.cache`` / ``lru_cache``, shipped to workers by value.

cloudpickle pickles a function of the notebook (``__main__``) by value, but the
wrapper ``functools.cache`` puts around it pickles by name, as
``__main__.helper``: a worker process has no such name, so the workflow could
not be loaded there. :func:`reduce_cached` pickles such a wrapper as its
wrapped function (by value) and its cache's settings; the worker wraps it
again (its cache starts empty). A wrapper of an importable function still
travels by name.

Examples
--------
>>> import functools, pickle
>>> @functools.lru_cache(maxsize=8)
... def double(x):
...     return 2 * x
>>> again, (fn, maxsize, typed) = reduce_cached(double)
>>> again is cached_again, fn is double.__wrapped__, maxsize, typed
(True, True, 8, False)
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

#: The type of what ``functools.cache`` / ``functools.lru_cache(...)`` return.
CACHE_WRAPPER: type = functools._lru_cache_wrapper  # type: ignore[attr-defined]


def reduce_cached(wrapper: Any) -> Any:
    """How ``wrapper`` pickles: by value when it wraps a function a worker cannot import, else by name."""
    module = sys.modules.get(getattr(wrapper, "__module__", None) or "")
    if module is not None and module.__name__ != "__main__" and \
            getattr(module, wrapper.__qualname__, None) is wrapper:
        return wrapper.__reduce__()  # importable where the worker runs: by name, as pickle does
    params = wrapper.cache_parameters()
    return cached_again, (wrapper.__wrapped__, params["maxsize"], params["typed"])


def cached_again(fn: Callable[..., Any], maxsize: int | None, typed: bool) -> Any:
    """``fn`` wrapped again as it was in the kernel (in a worker process: its cache starts empty)."""
    return functools.lru_cache(maxsize=maxsize, typed=typed)(fn)


__all__ = ["CACHE_WRAPPER", "cached_again", "reduce_cached"]
