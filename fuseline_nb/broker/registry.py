"""What a broker knows besides runs: workflow repositories, and which workers are still alive.

Fuseline's broker keeps a directory of *repositories* (where the code of
workflows lives, for workers to install) and forgets workers whose
keep-alives stopped. Both live in the broker's memory, like its workers:
a repository's ``credentials`` are never written into a history file, so
register repositories again when a broker starts.

Examples
--------
>>> repos = Repositories()
>>> repos.register(RepositoryInfo("etl", "https://example.com/etl.git", ["etl:wf"], {"token": "x"}))
>>> repos.get("etl").url, [r.name for r in repos.page(1)]
('https://example.com/etl.git', ['etl'])
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from ..limits import Bound, Name

__all__ = ["Repositories", "RepositoryInfo", "idle_workers"]


@dataclass
class RepositoryInfo:
    """Where the code of some workflows lives, as Fuseline describes it.

    Parameters
    ----------
    name:
        The key it is registered under (registering the same name again
        replaces the entry).
    url:
        Where to fetch it from (a git URL, a package index, a path).
    workflows:
        The workflows it provides, as ``"module:attribute"`` specs.
    credentials:
        What a worker needs to fetch it (tokens). Kept in memory only;
        the HTTP service answers them masked.

    Examples
    --------
    >>> RepositoryInfo("r", "u", [], {}) == RepositoryInfo("r", "u", [], {})
    True
    """

    name: Name
    url: Annotated[str, Bound(max_length=4096)]
    workflows: Annotated[Sequence[Annotated[str, Bound(max_length=1024)]], Bound(max_length=10_000)] = field(
        default_factory=list)
    credentials: Annotated[Mapping[str, Annotated[str, Bound(max_length=8192)]], Bound(max_length=100)] = field(
        default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a repository needs a non-empty name, not {self.name!r}")
        if not isinstance(self.url, str):
            raise TypeError(f"repository {self.name!r}: url must be a string, not {self.url!r}")
        if isinstance(self.workflows, str) or not all(isinstance(w, str) for w in self.workflows):
            raise TypeError(
                f"repository {self.name!r}: workflows must be a list of 'module:attribute' "
                f"strings, not {self.workflows!r}"
            )
        if not isinstance(self.credentials, Mapping):
            raise TypeError(f"repository {self.name!r}: credentials must be a mapping, not {self.credentials!r}")


class Repositories:
    """Registered repositories by name, in registration order (thread-safe).

    Examples
    --------
    >>> repos = Repositories()
    >>> repos.page(1)
    []
    >>> repos.page(0)
    Traceback (most recent call last):
    ValueError: page must be >= 1 (pages count from 1), not 0
    """

    def __init__(self) -> None:
        self._by_name: dict[str, RepositoryInfo] = {}
        self._lock = threading.Lock()

    def register(self, repo: RepositoryInfo) -> None:
        """Add ``repo``, or replace the repository of the same name."""
        if not isinstance(repo, RepositoryInfo):
            raise TypeError(f"expected a RepositoryInfo, not {repo!r}")
        with self._lock:
            self._by_name[repo.name] = repo

    def get(self, name: str) -> RepositoryInfo | None:
        """The repository registered as ``name``, or ``None``."""
        with self._lock:
            return self._by_name.get(name)

    def page(self, page: int = 1, page_size: int = 50) -> list[RepositoryInfo]:
        """Repositories ``(page-1)*page_size`` to ``page*page_size``, in registration order."""
        if not isinstance(page, int) or page < 1:
            raise ValueError(f"page must be >= 1 (pages count from 1), not {page!r}")
        if not isinstance(page_size, int) or page_size < 1:
            raise ValueError(f"page_size must be >= 1, not {page_size!r}")
        with self._lock:
            repos = list(self._by_name.values())
        start = (page - 1) * page_size
        return repos[start : start + page_size]

    def __len__(self) -> int:
        return len(self._by_name)


def idle_workers(last_seen: Iterable[tuple[str, float, bool]], now: float, ttl: float) -> list[str]:
    """Ids of workers not seen for more than ``ttl`` seconds that hold no assignment.

    ``last_seen`` yields ``(worker id, last seen, holds an assignment)``. A
    worker running a step is governed by its lease instead (an expired lease
    queues the step again; the worker is pruned once it holds nothing).

    Examples
    --------
    >>> idle_workers([("a", 0.0, False), ("b", 0.0, True), ("c", 9.5, False)], now=10.0, ttl=1.0)
    ['a']
    """
    return [wid for wid, seen, busy in last_seen if not busy and now - seen > ttl]
