"""A cache entry whose result the broker still holds (it writes a step's result after its answer to the
worker) is a miss until that result is written, not a broken entry: a flush falling between the two must not
drop it (``broker/storage/_duckdb_cache.py``; found by the eighth session's audit)."""

from __future__ import annotations

import logging

import pytest

from fuseline_nb import Status
from fuseline_nb.broker.cache import CacheEntry
from fuseline_nb.broker.storage import DuckDBRuntimeStorage
from fuseline_nb.workflow.runinfo import StepInfo
from fuseline_nb.workflow.value import Value


def test_a_flush_between_an_entry_and_its_result_keeps_the_entry(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    big = Value.of(list(range(40_000)))  # over the size kept in memory: its hits read the file
    entry = CacheEntry("k", "wf", "a", "fp", "r1", "default", big.fingerprint, big.size, 0, 1.0)
    with DuckDBRuntimeStorage(str(tmp_path / "h.duckdb"), flush_interval=3600) as st:
        st._stopping = True  # the test's flushes only
        st.create_run("r1", "wf", "1", {}, ["a"], created_at=0.0)
        store = st.cache_store()
        store.put(entry, big)
        st.flush()  # the flusher ran before the broker wrote the step's result
        with caplog.at_level(logging.WARNING):
            assert store.lookup(["k"]) == {}  # not there yet: the step runs again, as on a miss
        assert "no stored result" not in caplog.text
        assert [e.key for e in store.entries()] == ["k"]  # kept
        st.save_step("r1", "a", StepInfo(Status.SUCCEEDED, attempts=1, action="default", finished_at=2.0))
        st.set_result("r1", "a", big)
        got = store.lookup(["k"])  # the result now written (the lookup flushes what is buffered)
        assert got["k"][0] == entry and got["k"][1].load() == list(range(40_000))
    with DuckDBRuntimeStorage(str(tmp_path / "h.duckdb")) as st:  # and in the file for the next session
        assert st.cache_store().lookup(["k"])["k"][1].load() == list(range(40_000))


def test_an_entry_whose_result_is_gone_is_still_dropped(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    big = Value.of(list(range(40_000)))
    entry = CacheEntry("k", "wf", "a", "fp", "gone", "default", big.fingerprint, big.size, 0, 1.0)
    with DuckDBRuntimeStorage(str(tmp_path / "h.duckdb"), flush_interval=3600) as st:
        st._stopping = True
        st.cache_store().put(entry, big)
        st.flush()
    with DuckDBRuntimeStorage(str(tmp_path / "h.duckdb")) as st:  # another session: nothing of it is held
        store = st.cache_store()
        with caplog.at_level(logging.WARNING):
            assert store.lookup(["k"]) == {}
        assert "has no stored result any more" in caplog.text
        assert store.entries() == []
