"""The repository routes of the broker service, and their one message.

``POST /repository/register`` stores a :class:`~fuseline_nb.broker.RepositoryInfo`;
``GET /repository?name=`` answers one (404 ``unknown_repository`` when
none is registered under that name); ``GET /repositories?page=&page_size=``
answers a page, in registration order. Credentials are accepted but
answered masked (``"***"``): the service never hands a token back over the
network.

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
# client imports this module for the model, without loading FastAPI).
from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from .base import Broker
from .registry import RepositoryInfo

if TYPE_CHECKING:
    from fastapi import FastAPI

#: What the service answers in place of a credential's value.
MASK: Final = "***"

_Name = Annotated[str, Field(min_length=1, max_length=512)]


class RepositoryModel(BaseModel):
    """A workflow repository as it crosses HTTP."""

    model_config = ConfigDict(extra="forbid")

    name: _Name
    url: Annotated[str, Field(max_length=4096)]
    workflows: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=10_000)] = Field(
        default_factory=list)
    credentials: Annotated[dict[str, Annotated[str, Field(max_length=8192)]], Field(max_length=100)] = Field(
        default_factory=dict)


def repository_to_wire(repo: RepositoryInfo) -> dict[str, Any]:
    """The JSON-ready dict of ``repo`` with credential values masked."""
    return {"name": repo.name, "url": repo.url, "workflows": list(repo.workflows),
            "credentials": dict.fromkeys(repo.credentials, MASK)}


def repository_from_wire(m: RepositoryModel) -> RepositoryInfo:
    """The :class:`RepositoryInfo` of a received model."""
    return RepositoryInfo(m.name, m.url, list(m.workflows), dict(m.credentials))


def add_repository_routes(app: "FastAPI", broker: Broker) -> None:
    """Add the three repository routes for ``broker`` to ``app``."""
    from fastapi import Query, Response
    from fastapi.responses import JSONResponse

    @app.post("/repository/register", status_code=204, responses={204: {"description": "stored"}},
              tags=["repositories"])
    async def register_repository(body: RepositoryModel) -> Response:
        """Store a repository (replacing one of the same name)."""
        broker.register_repository(repository_from_wire(body))
        return Response(status_code=204)

    @app.get("/repository", response_model=RepositoryModel, tags=["repositories"],
             responses={404: {"description": "no repository of that name"}})
    async def get_repository(name: Annotated[str, Query(min_length=1, max_length=512)]) -> Response:
        """One repository by name (credentials masked)."""
        repo = broker.get_repository(name)
        if repo is None:
            return JSONResponse({"error": "unknown_repository", "errors": [],
                                 "detail": f"no repository is registered as {name!r}"}, 404)
        return JSONResponse(repository_to_wire(repo))

    @app.get("/repositories", response_model=list[RepositoryModel], tags=["repositories"])
    async def list_repositories(page: Annotated[int, Query(ge=1)] = 1,
                                page_size: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        """One page of repositories, in registration order (credentials masked)."""
        return JSONResponse([repository_to_wire(r) for r in broker.list_repositories(page, page_size)])


__all__ = ["MASK", "RepositoryModel", "add_repository_routes", "repository_from_wire", "repository_to_wire"]
