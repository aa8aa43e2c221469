"""The repository routes of the broker service.

``POST /repository/register`` stores a :class:`~fuseline_nb.broker.RepositoryInfo`
(the message is the dataclass, validated by pydantic); ``GET /repository?name=``
answers one (404 ``unknown_repository`` when none is registered under that
name); ``GET /repositories?page=&page_size=`` answers a page, in
registration order. Credentials are accepted but answered masked
(``"***"``): the service never hands a token back over the network.

Examples
--------
>>> import asyncio, httpx
>>> from fastapi import FastAPI
>>> from fuseline_nb.broker import MemoryBroker
>>> app = FastAPI()
>>> add_repository_routes(app, MemoryBroker())
>>> async def talk():
...     async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
...         await c.post("/repository/register", json={"name": "etl", "url": "u", "credentials": {"token": "x"}})
...         return (await c.get("/repositories")).json()
>>> asyncio.run(talk())
[{'name': 'etl', 'url': 'u', 'workflows': [], 'credentials': {'token': '***'}}]
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route
# annotations, and they name imports local to add_repository_routes (the
# client imports this module for the adapters, without loading FastAPI).
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Final

from pydantic import TypeAdapter

from .base import Broker
from .registry import RepositoryInfo

if TYPE_CHECKING:
    from fastapi import FastAPI

#: What the service answers in place of a credential's value.
MASK: Final = "***"
#: A repository in JSON.
REPOSITORY: Final = TypeAdapter(RepositoryInfo)
#: A page of repositories in JSON.
REPOSITORIES: Final = TypeAdapter(list[RepositoryInfo])


def masked(repo: RepositoryInfo) -> RepositoryInfo:
    """``repo`` with its credential values masked.

    Examples
    --------
    >>> masked(RepositoryInfo("r", "u", [], {"token": "x"})).credentials
    {'token': '***'}
    """
    return replace(repo, credentials=dict.fromkeys(repo.credentials, MASK))


def add_repository_routes(app: "FastAPI", broker: Broker) -> None:
    """Add the three repository routes for ``broker`` to ``app``."""
    from fastapi import Query, Response

    from ._http_front import error_body

    def json(body: bytes, status: int = 200) -> Response:
        return Response(body, status, media_type="application/json")

    @app.post("/repository/register", status_code=204, responses={204: {"description": "stored"}},
              tags=["repositories"])
    async def register_repository(body: RepositoryInfo) -> Response:
        """Store a repository (replacing one of the same name)."""
        broker.register_repository(body)
        return Response(status_code=204)

    @app.get("/repository", response_model=RepositoryInfo, tags=["repositories"],
             responses={404: {"description": "no repository of that name"}})
    async def get_repository(name: Annotated[str, Query(min_length=1, max_length=512)]) -> Response:
        """One repository by name (credentials masked)."""
        repo = broker.get_repository(name)
        if repo is None:
            return json(error_body(404, "unknown_repository", f"no repository is registered as {name!r}"), 404)
        return json(REPOSITORY.dump_json(masked(repo)))

    @app.get("/repositories", response_model=list[RepositoryInfo], tags=["repositories"])
    async def list_repositories(page: Annotated[int, Query(ge=1)] = 1,
                                page_size: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        """One page of repositories, in registration order (credentials masked)."""
        return json(REPOSITORIES.dump_json([masked(r) for r in broker.list_repositories(page, page_size)]))


__all__ = ["MASK", "REPOSITORIES", "REPOSITORY", "add_repository_routes", "masked"]
