"""The result cache: the broker reuses a step's result when its key was seen.

A step's **key** is a digest of its code fingerprint (carried by the
``WorkflowSchema``) and the data fingerprints of everything it reads: the
run inputs it reads by name (all of them for a step that may read any), the
results of its upstream steps, and which member of an OR group it got.
Before a ready step is queued, a run with caching on looks its key up; on a
hit the step is SUCCEEDED at once with ``cached = True``, the stored result
and action, and the run it came from — no worker sees it. A step that ran
stores its SUCCEEDED result under its key. Because keys hold *data*
fingerprints, a re-run whose result is unchanged leaves its downstream
cached.

The entries live in the storage (:class:`MemoryCacheStore`, or the
DuckDB history file's ``cache`` view); this module holds the per-run state
and the keys, and never runs user code. Serving hits is a transition of
the live state (:func:`fuseline_nb.broker.transitions.serve`).

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> from fuseline_nb.broker import MemoryBroker
>>> from fuseline_nb.broker.clients import LocalBrokerClient
>>> from fuseline_nb.worker import ProcessEngine
>>> wf = Workflow(outputs=[FunctionStep(lambda x: x * 2, name="double")])
>>> broker = MemoryBroker()
>>> client = LocalBrokerClient(broker)
>>> first = broker.dispatch_workflow(wf.to_schema(), {"x": 21}, cache=True)
>>> ProcessEngine(client, [wf]).work()
>>> again = broker.dispatch_workflow(wf.to_schema(), {"x": 21}, cache=True)
>>> step = broker.get_run(again).steps["double"]
>>> step.result, step.cached, step.cached_from == first
(42, True, True)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..workflow.datafingerprint import data_fingerprint, new_hasher
from ..workflow.schema import WorkflowSchema
from ..workflow.value import Value

log = logging.getLogger(__name__)

#: Bumped when what a key covers changes, so older entries stop matching.
KEY_RECIPE = "1"


@dataclass(frozen=True)
class CacheEntry:
    """One cached result: where it came from and how often it was reused.

    Examples
    --------
    >>> CacheEntry("k", "wf", "load", "ab", "run1", "default", "cd", 12, 0, 1.0).hits
    0
    """

    key: str
    workflow_id: str
    step: str
    code_fingerprint: str
    run_id: str  # the run that computed the result (it is stored with that run's step)
    action: str | None
    result_fingerprint: str
    result_bytes: int | None
    hits: int
    created_at: float
    last_hit_at: float | None = None
    #: a hash of the result's stored bytes: a changed or damaged copy is a miss, never a wrong hit
    result_checksum: str | None = None


class CacheStore(Protocol):
    """Where entries live: memory, or the DuckDB history file."""

    def lookup(self, keys: Iterable[str]) -> dict[str, tuple[CacheEntry, Any]]:
        """Entries and their results for the keys that hit (a corrupt one is a miss, with a warning)."""

    def put(self, entry: CacheEntry, result: Any) -> None:
        """Store (or replace) an entry."""

    def hit(self, key: str, at: float) -> None:
        """Count a reuse of ``key``."""

    def entries(self) -> list[CacheEntry]:
        """Every entry, oldest first."""

    def clear(self, step: str | None = None, older_than: float | None = None) -> int:
        """Drop entries (of ``step``; created before ``older_than``); return how many."""

    def mark_cached(self, run_id: str, step: str, source_run: str) -> None:
        """Remember that ``step`` of ``run_id`` reused the result of ``source_run``."""


class MemoryCacheStore:
    """Entries in a dict: for brokers that keep their history in memory.

    Examples
    --------
    >>> store = MemoryCacheStore()
    >>> store.put(CacheEntry("k", "wf", "s", "fp", "r1", None, "d", None, 0, 1.0), [1])
    >>> store.lookup(["k", "other"])["k"][1]
    [1]
    >>> store.clear(step="s")
    1
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[CacheEntry, Any]] = {}

    def lookup(self, keys: Iterable[str]) -> dict[str, tuple[CacheEntry, Any]]:
        found = self._entries
        return {k: found[k] for k in keys if k in found}

    def put(self, entry: CacheEntry, result: Any) -> None:
        self._entries[entry.key] = (entry, result)

    def hit(self, key: str, at: float) -> None:
        known = self._entries.get(key)
        if known is not None:
            entry, result = known
            self._entries[key] = (replace(entry, hits=entry.hits + 1, last_hit_at=at), result)

    def entries(self) -> list[CacheEntry]:
        return sorted((e for e, _ in self._entries.values()), key=lambda e: e.created_at)

    def clear(self, step: str | None = None, older_than: float | None = None) -> int:
        drop = [k for k, (e, _) in self._entries.items() if _matches(e, step, older_than)]
        for k in drop:
            del self._entries[k]
        return len(drop)

    def mark_cached(self, run_id: str, step: str, source_run: str) -> None:
        """Nothing to do: the run's records in memory carry ``cached`` themselves."""


def _matches(entry: CacheEntry, step: str | None, older_than: float | None) -> bool:
    return (step is None or entry.step == step) and (older_than is None or entry.created_at < older_than)


class RunCache:
    """The cache state of one run: what it reads, and the keys of its steps."""

    __slots__ = ("cacheable", "fingerprints", "input_fps", "inputs", "keys", "reads", "rerun",
                 "result_fps", "workflow_id")

    def __init__(self, schema: WorkflowSchema, inputs: dict[str, Any], rerun: Iterable[str]) -> None:
        self.workflow_id = schema.workflow_id
        self.fingerprints = {s.name: s.fingerprint for s in schema.steps}
        self.cacheable = {s.name: s.cache and bool(s.fingerprint) for s in schema.steps}
        self.reads = {s.name: s.reads for s in schema.steps}
        self.inputs = inputs
        self.rerun = set(rerun)
        unknown = self.rerun - set(self.fingerprints)
        if unknown:
            raise ValueError(f"rerun names unknown steps: {sorted(unknown)} (steps: {sorted(self.fingerprints)})")
        self.input_fps: dict[str, str | None] = {}
        self.result_fps: dict[str, str | None] = {}
        self.keys: dict[str, str | None] = {}

    def _input_fp(self, name: str) -> str | None:
        if name not in self.input_fps:
            if name not in self.inputs:
                self.input_fps[name] = "missing"
            else:
                try:
                    self.input_fps[name] = data_fingerprint(self.inputs[name])
                except TypeError as exc:
                    log.warning("input %r cannot be fingerprinted (%s): the steps that read it are "
                                "not cached", name, exc)
                    self.input_fps[name] = None
        return self.input_fps[name]

    def key(self, step: str, sources: Iterable[str], results: Mapping[str, Any],
            winners: dict[str, str]) -> str | None:
        """The step's cache key, or ``None`` when something it reads has no fingerprint."""
        reads = self.reads.get(step)
        # (by str: a key that is not one — refused by a step that takes it — must not break the sort)
        names = sorted(self.inputs, key=str) if reads is None else reads
        parts = [KEY_RECIPE, self.fingerprints[step]]
        for name in names:
            fp = self._input_fp(name)
            if fp is None:
                return None
            parts.append(f"in {name}={fp}")
        for src in sorted(sources):
            if src in results:
                fp = self.result_fps.get(src)
                if fp is None:
                    return None
                parts.append(f"up {src}={fp}")
            else:
                parts.append(f"up {src}=none")
        parts.extend(f"or {g}={m}" for g, m in sorted(winners.items()))
        h = new_hasher()
        h.update("\x1f".join(parts).encode("utf-8", "surrogatepass"))  # a name from undecodable bytes
        key = str(h.hexdigest())
        self.keys[step] = key
        return key

    def note_result(self, step: str, result: Any) -> str | None:
        """Fingerprint a result that arrived (downstream keys are built from it)."""
        try:
            fp = data_fingerprint(result)
        except Exception as exc:  # never let a fingerprint fail the report that carries the result
            log.warning("step %r: its result is not cached and the steps that read it cannot be "
                        "cached either: %s", step, exc)
            fp = None
        self.result_fps[step] = fp
        return fp


def new_entry(cache: RunCache, run_id: str, step: str, action: str | None, result: Any,
              now: float) -> CacheEntry | None:
    """The entry a SUCCEEDED step leaves, or ``None`` when it may not be cached."""
    fp = cache.note_result(step, result)
    key = cache.keys.get(step)
    if fp is None or key is None or not cache.cacheable.get(step, False):
        return None
    size = result.size if isinstance(result, Value) else None
    return CacheEntry(key, cache.workflow_id, step, cache.fingerprints[step], run_id, action, fp, size, 0, now,
                      None, checksum(result.data) if isinstance(result, Value) else None)


def checksum(data: bytes) -> str:
    """The hash a cache entry keeps of its result's bytes.

    Examples
    --------
    >>> checksum(b"abc") == checksum(b"abc") != checksum(b"abd")
    True
    """
    h = new_hasher()
    h.update(data)
    return str(h.hexdigest())


class CacheView:
    """What ``session.cache`` shows: size, entries, and clearing.

    Examples
    --------
    >>> view = CacheView(MemoryCacheStore())
    >>> len(view), view.clear()
    (0, 0)
    >>> view
    <cache: 0 entries, 0 hits>
    """

    def __init__(self, store: CacheStore) -> None:
        self._store = store

    def entries(self) -> list[CacheEntry]:
        """Every entry, oldest first."""
        return self._store.entries()

    @property
    def size(self) -> int:
        """How many entries there are."""
        return len(self._store.entries())

    def __len__(self) -> int:
        return self.size

    def clear(self, step: str | None = None, older_than: float | None = None) -> int:
        """Drop entries — all, those of ``step``, or those created more than ``older_than`` seconds ago.

        Returns how many were dropped.
        """
        if older_than is not None and older_than < 0:
            raise ValueError(f"older_than must be >= 0 seconds, not {older_than!r}")
        cutoff = None if older_than is None else time.time() - older_than
        return self._store.clear(step, cutoff)

    def __repr__(self) -> str:
        entries = self._store.entries()
        return f"<cache: {len(entries)} entries, {sum(e.hits for e in entries)} hits>"


__all__ = ["CacheEntry", "CacheStore", "CacheView", "MemoryCacheStore", "RunCache", "checksum", "new_entry"]
