"""The result cache in the DuckDB history file: table ``fl_cache``, view ``cache``.

An entry points at the run whose step computed the result (``fl_steps``
holds the pickle), so a cached result is stored once. The entries are also
kept in memory (loaded on first use), so a lookup costs a dict access; small
results this process stored or read are kept too (up to ``_KEEP`` of them),
and other results of hits are read from the file, all of a round in one query.
New entries, hit counts and which steps were served from the cache are
buffered and written with the storage's next flush.

The broker's thread changes these buffers while the storage's flusher
thread writes them: both take the storage's buffer lock for the swap. An
entry stored in this process stays *fresh* until a lookup has read its
result back from the file: the broker may still hold that result's row
(it writes a step's result after its answer to the worker), so a flush
between the entry and its result must not make the entry look broken. A
fresh entry whose result is not in the file yet is a miss that keeps the
entry, not a broken entry that is dropped.

Examples
--------
>>> from fuseline_nb.broker.storage import DuckDBRuntimeStorage
>>> with DuckDBRuntimeStorage(":memory:") as st:
...     st.sql("SELECT count(*) FROM cache").fetchall()
[(0,)]
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import astuple, fields, replace
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa

from ..cache import CacheEntry, checksum
from ._duckdb_rows import result_value

if TYPE_CHECKING:
    from .duckdb import DuckDBRuntimeStorage

log = logging.getLogger(__name__)

#: Created on every open (``IF NOT EXISTS``): a file from before the cache gains them.
CREATE: Final = (
    """CREATE TABLE IF NOT EXISTS fl_cache (
        key VARCHAR PRIMARY KEY, workflow_id VARCHAR NOT NULL, step VARCHAR NOT NULL,
        code_fingerprint VARCHAR NOT NULL, run_id VARCHAR NOT NULL, action VARCHAR,
        result_fingerprint VARCHAR NOT NULL, result_bytes BIGINT, hits BIGINT NOT NULL,
        created_at DOUBLE NOT NULL, last_hit_at DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS fl_cached_steps (
        run_id VARCHAR NOT NULL, step VARCHAR NOT NULL, cached_from VARCHAR NOT NULL,
        PRIMARY KEY (run_id, step))""",
    "ALTER TABLE fl_cache ADD COLUMN IF NOT EXISTS result_checksum VARCHAR",
)
#: The documented view of the cache.
VIEW: Final = ("cache", """SELECT c.step, c.key, c.code_fingerprint,
    coalesce(c.result_bytes, s.result_bytes) AS result_bytes, c.hits,
    to_timestamp(c.created_at) AS created_at, to_timestamp(c.last_hit_at) AS last_hit_at,
    c.workflow_id, c.run_id, c.action, c.result_fingerprint
    FROM fl_cache c LEFT JOIN fl_steps s ON s.run_id = c.run_id AND s.step = c.step""")
_COLUMNS: Final = tuple(f.name for f in fields(CacheEntry))
SELECT_ENTRIES: Final = f"SELECT {', '.join(_COLUMNS)} FROM fl_cache ORDER BY created_at, rowid"
UPSERT: Final = f"INSERT OR REPLACE INTO fl_cache SELECT {', '.join(_COLUMNS)} FROM batch_cache"
DELETE: Final = "DELETE FROM fl_cache WHERE key IN (SELECT key FROM batch_cache_drop)"
MARK: Final = "INSERT OR REPLACE INTO fl_cached_steps SELECT run_id, step, cached_from FROM batch_cached_steps"
SELECT_CACHED: Final = "SELECT step, cached_from FROM fl_cached_steps WHERE run_id = ?"
SELECT_RESULTS: Final = """
SELECT p.key, s.result_pickle, s.result_fingerprint, s.result_preview, s.result_type, s.result_rich,
    s.result_file
FROM batch_cache_wanted p
LEFT JOIN fl_steps s ON s.run_id = p.run_id AND s.step = p.step
"""


class DuckDBCacheStore:
    """The :class:`~fuseline_nb.broker.cache.CacheStore` of a :class:`DuckDBRuntimeStorage`."""

    def __init__(self, storage: DuckDBRuntimeStorage) -> None:
        self._storage = storage
        self._entries: dict[str, CacheEntry] = {
            row[0]: CacheEntry(*row) for row in storage._execute(SELECT_ENTRIES)
        }
        self._dirty: dict[str, CacheEntry] = {}
        self._dropped: set[str] = set()
        self._marks: dict[tuple[str, str], str] = {}
        self._results: OrderedDict[str, Any] = OrderedDict()  # small results, most recent last
        self._hits: dict[str, tuple[int, float]] = {}  # reuses not yet folded into their entries
        self._fresh: set[str] = set()  # entries whose result may still be buffered by the storage

    # -- the CacheStore protocol ----------------------------------------------------------
    def lookup(self, keys: Iterable[str]) -> dict[str, tuple[CacheEntry, Any]]:
        out: dict[str, tuple[CacheEntry, Any]] = {}
        found = []
        for k in keys:
            entry = self._entries.get(k)
            if entry is None:
                continue
            if k in self._results:
                self._results.move_to_end(k)
                out[k] = (entry, self._results[k])
            else:
                found.append(entry)
        if not found:
            return out
        if self._fresh.intersection(e.key for e in found):
            self._storage.flush()  # the results these hits point at may still be buffered
        wanted = pa.table({"key": [e.key for e in found], "run_id": [e.run_id for e in found],
                           "step": [e.step for e in found]})
        rows = self._with_table("batch_cache_wanted", wanted, SELECT_RESULTS, fetch=True)
        stored = {row[0]: self._storage._with_bytes(row[1:], f"cache entry {row[0]}") for row in rows}
        for entry in found:
            row = stored.get(entry.key)
            blob = row[0] if row is not None else None
            if blob is None and entry.key in self._fresh:
                continue  # its result's row is not written yet (held by the broker): a miss, entry kept
            self._fresh.discard(entry.key)
            result = self._load(entry, row)
            if result is not _MISS:
                out[entry.key] = (entry, result)
                if blob is not None and len(blob) <= _SMALL:
                    self._keep(entry.key, result)
        return out

    def _keep(self, key: str, result: Any) -> None:
        self._results[key] = result
        self._results.move_to_end(key)
        while len(self._results) > _KEEP:
            self._results.popitem(last=False)

    def put(self, entry: CacheEntry, result: Any) -> None:
        with self._storage._buf_lock:  # the flusher swaps these buffers under it
            self._entries[entry.key] = self._dirty[entry.key] = entry
            self._dropped.discard(entry.key)
            self._fresh.add(entry.key)
        if _small(result):
            self._keep(entry.key, result)
        else:
            self._results.pop(entry.key, None)

    def hit(self, key: str, at: float) -> None:
        if key in self._entries:  # counted here, folded into the entry when it is read or written
            with self._storage._buf_lock:
                hits, _ = self._hits.get(key, (0, at))
                self._hits[key] = (hits + 1, at)

    def entries(self) -> list[CacheEntry]:
        self._fold_hits()
        return sorted(self._entries.values(), key=lambda e: e.created_at)

    def _fold_hits(self) -> None:
        with self._storage._buf_lock:
            hits, self._hits = self._hits, {}
            for key, (n, at) in hits.items():
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries[key] = self._dirty[key] = replace(entry, hits=entry.hits + n, last_hit_at=at)

    def clear(self, step: str | None = None, older_than: float | None = None) -> int:
        drop = [k for k, e in self._entries.items()
                if (step is None or e.step == step) and (older_than is None or e.created_at < older_than)]
        for k in drop:
            self._forget(k)
        self._storage.flush()
        return len(drop)

    def mark_cached(self, run_id: str, step: str, source_run: str) -> None:
        with self._storage._buf_lock:
            self._marks[(run_id, step)] = source_run

    # -- reading and writing --------------------------------------------------------------
    def _forget(self, key: str) -> None:
        with self._storage._buf_lock:
            self._entries.pop(key, None)
            self._results.pop(key, None)
            self._dirty.pop(key, None)
            self._fresh.discard(key)
            self._dropped.add(key)

    def _load(self, entry: CacheEntry, row: tuple[Any, ...] | None) -> Any:
        if row is None or row[0] is None:
            log.warning("cache entry of step %r (result of run %s) has no stored result any more: "
                        "the step runs again", entry.step, entry.run_id)
            self._forget(entry.key)
            return _MISS
        if entry.result_checksum is not None and checksum(row[0]) != entry.result_checksum:
            log.warning("cache entry of step %r (result of run %s) cannot be read (its stored bytes "
                        "changed since it was cached): the step runs again", entry.step, entry.run_id)
            self._forget(entry.key)
            return _MISS
        try:  # closed: the value's bytes go on to downstream workers as they are
            return result_value(*row)
        except Exception as exc:
            log.warning("cache entry of step %r (result of run %s) cannot be read (%s: %s): the step "
                        "runs again", entry.step, entry.run_id, type(exc).__name__, exc)
            self._forget(entry.key)
            return _MISS

    def write_pending(self) -> None:
        """Write buffered entries, hits, drops and cached marks (the storage's flush calls this)."""
        self._fold_hits()
        with self._storage._buf_lock:  # the broker's thread adds to them meanwhile: swap, then write
            dirty, self._dirty = self._dirty, {}
            dropped, self._dropped = self._dropped, set()
            marks, self._marks = self._marks, {}
        try:
            if dirty:
                table = pa.table(dict(zip(_COLUMNS, zip(*(astuple(e) for e in dirty.values()), strict=True),
                                          strict=True)), schema=_SCHEMA)
                self._with_table("batch_cache", table, UPSERT)
                dirty = {}
            if dropped:
                self._with_table("batch_cache_drop", pa.table({"key": sorted(dropped)}), DELETE)
                dropped = set()
            if marks:
                table = pa.table({"run_id": [r for r, _ in marks], "step": [s for _, s in marks],
                                  "cached_from": list(marks.values())})
                self._with_table("batch_cached_steps", table, MARK)
        except BaseException:  # the file refused (a full disk): keep what was not written for the next flush
            with self._storage._buf_lock:
                self._dirty = {**dirty, **self._dirty}
                self._dropped |= {k for k in dropped if k not in self._dirty}
                self._marks = {**marks, **self._marks}
            raise

    def _with_table(self, name: str, table: pa.Table, sql: str, fetch: bool = False) -> list[Any]:
        st = self._storage
        with st._io_lock:
            st._db(st._con.register, name, table)
            try:
                return st._execute(sql) if fetch else (st._execute(sql) and [])
            finally:
                st._db(st._con.unregister, name)


_MISS = object()
_KEEP = 4096  # small results kept in memory
_SMALL = 64 * 1024  # bytes (pickled, or shallow size in memory)


def _small(result: Any) -> bool:
    data = getattr(result, "data", None) if type(result).__name__ == "Value" else None
    if isinstance(data, bytes):
        return len(data) <= _SMALL
    nbytes = getattr(result, "nbytes", None)  # arrays and Arrow tables
    if isinstance(nbytes, int):
        return nbytes <= _SMALL
    if type(result).__module__.startswith("pandas"):
        return False
    try:
        return sys.getsizeof(result) <= _SMALL and (not hasattr(result, "__len__") or len(result) <= 4096)
    except Exception:  # an odd object: read it from the file when needed
        return False
_SCHEMA = pa.schema([("key", pa.string()), ("workflow_id", pa.string()), ("step", pa.string()),
                     ("code_fingerprint", pa.string()), ("run_id", pa.string()), ("action", pa.string()),
                     ("result_fingerprint", pa.string()), ("result_bytes", pa.int64()),
                     ("hits", pa.int64()), ("created_at", pa.float64()), ("last_hit_at", pa.float64()),
                     ("result_checksum", pa.string())])

__all__ = ["CREATE", "SELECT_CACHED", "VIEW", "DuckDBCacheStore"]
