"""Shared fixtures: one contract suite runs over every broker storage."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from fuseline_nb.broker import MemoryBroker, StorageBroker

#: Storages the broker contract tests run against. Each entry builds a broker
#: given a temporary directory.
BROKER_KINDS: dict[str, Callable[..., StorageBroker]] = {
    "memory": lambda tmp_path, **kw: MemoryBroker(**kw),
    # a fresh file per broker, so a test may hold several brokers at once
    "duckdb": lambda tmp_path, **kw: _duckdb_broker(tmp_path, **kw),
}


def _duckdb_broker(tmp_path, **kw: object) -> StorageBroker:
    import uuid

    from fuseline_nb.broker import DuckDBBroker

    return DuckDBBroker(tmp_path / f"broker-{uuid.uuid4().hex[:8]}.duckdb", **kw)


@pytest.fixture(params=sorted(BROKER_KINDS))
def make_broker(request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[..., StorageBroker]]:
    """A factory of brokers of one storage kind; every broker made is closed afterwards."""
    made: list[StorageBroker] = []

    def factory(**kw: object) -> StorageBroker:
        b = BROKER_KINDS[request.param](tmp_path, **kw)
        made.append(b)
        return b

    yield factory
    for b in made:
        b.close()
