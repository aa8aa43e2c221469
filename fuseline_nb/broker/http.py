"""The broker as an HTTP service: an ASGI app (FastAPI) over any :class:`Broker`.

Served by uvicorn (``fuseline-nb broker``). Workers talk to it with
:class:`~fuseline_nb.broker.http_client.HttpBrokerClient`.

The hot path is one request per step: ``POST /workflow/step`` carries the
report of the step just run and answers with the worker's next assignment
(``"next": true``). ``GET /workflow/step?wait=S`` long-polls: it answers as
soon as a step is queued, or with 204 after ``S`` seconds. Schemas travel
only at registration and dispatch.

Security: every endpoint but ``/status`` and the API description
(``/openapi.json``, ``/docs``) needs ``Authorization: Bearer <token>`` when a
token is set; bodies are bounded (16 MiB by default). Pickled values stay
closed in the service: it never unpickles what it receives.

Errors answer ``{"error": code, "detail": sentence, "errors": [...]}``:
400 malformed JSON, 401 missing/wrong token, 404 unknown worker/run, 409
stale report or schema mismatch, 413 body too large, 422 a wrong field
(named in ``detail``), 503 broker closed.

Examples
--------
>>> import asyncio, httpx
>>> from fuseline_nb.broker import MemoryBroker
>>> app = create_app(MemoryBroker(), token="s3cret")
>>> async def get(path, **kw):
...     async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
...         return await c.get(path, **kw)
>>> asyncio.run(get("/status")).json()["status"]
'ok'
>>> asyncio.run(get("/workers")).status_code
401
>>> asyncio.run(get("/workers", headers={"Authorization": "Bearer s3cret"})).json()
[]
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..workflow.events import Event
from ..workflow.runinfo import RunInfo
from ..workflow.schema import WorkflowSchema
from ._http_front import ERRORS, MAX_WAIT, PUBLIC, Front, Service, answer, error_body, field_errors
from ._http_repos import add_repository_routes
from .base import Broker, WorkerInfo
from .edge import fingerprint, workflow_error
from .wire import (
    WIRE_VERSION,
    Cancelled,
    CancelRequest,
    Dispatched,
    DispatchRequest,
    ErrorModel,
    KeptAlive,
    Registered,
    RegisterRequest,
    ReportRequest,
    StepAnswer,
    WorkerRef,
    check_schema,
)

log = logging.getLogger(__name__)

#: Most events one ``GET /runs/{id}/events`` answer carries.
MAX_EVENTS: Final = 10_000

#: Default bound on a request body.
MAX_BODY: Final = 16 * 1024 * 1024

# The answers are the broker's own records, written by pydantic straight from the dataclasses.
_RUN = TypeAdapter(RunInfo)
_RUNS = TypeAdapter(list[RunInfo])
_EVENTS = TypeAdapter(list[Event])
_WORKERS = TypeAdapter(list[WorkerInfo])
_WORKFLOWS = TypeAdapter(list[WorkflowSchema])
_workflow_json = TypeAdapter(WorkflowSchema).dump_json


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status, media_type="application/json")


def _error(status: int, code: str, detail: str, errors: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(status, code, detail, errors), status, headers=headers, media_type="application/json")


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class _Checked:
    """Schemas checked already, by digest: a workflow dispatched again (every run) is not walked again."""

    def __init__(self, size: int = 256) -> None:
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.size = size

    def __call__(self, schema: WorkflowSchema, where: str) -> tuple[WorkflowSchema, str]:
        """``(schema, its digest)`` when the broker can run it; else 422 naming the field."""
        if (err := workflow_error(schema, where)) is not None:  # first: too deep to write
            raise _Refused(422, "invalid_request", err)
        digest = hashlib.sha256(_workflow_json(schema)).hexdigest()  # written by pydantic, in Rust
        if digest not in self.seen:
            try:
                check_schema(schema)
            except ValueError as exc:
                raise _Refused(422, "invalid_request", f"{where}.{exc}") from None
            self.seen[digest] = None
            if len(self.seen) > self.size:
                self.seen.popitem(last=False)
        return schema, digest


def create_app(broker: Broker, *, token: str | None = None, max_body: int = MAX_BODY) -> FastAPI:
    """An ASGI app serving ``broker`` over HTTP.

    Parameters
    ----------
    broker:
        The broker to serve (the app does not close it; the CLI does).
    token:
        When given, every endpoint but ``/status`` and the API description
        requires ``Authorization: Bearer <token>``.
    max_body:
        Largest request body accepted, in bytes (413 above it).

    Examples
    --------
    >>> from fuseline_nb.broker import MemoryBroker
    >>> app = create_app(MemoryBroker())
    >>> sorted(r.path for r in app.routes if r.path.startswith("/worker/"))
    ['/worker/keep-alive', '/worker/register', '/worker/unregister']
    """
    if token is not None and not token.strip():
        raise ValueError("the token is empty or only whitespace: give a real secret (or None for no token)")
    service = Service(broker)
    checked = _Checked()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.unsubscribe()

    app = FastAPI(
        lifespan=lifespan,
        title="fuseline_nb broker",
        version=str(WIRE_VERSION),
        description=__doc__.split("Examples")[0] if __doc__ else "",
        responses={401: {"model": ErrorModel}, 422: {"model": ErrorModel}},
    )
    app.state.broker = broker

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        status, code, detail, errors = field_errors(list(exc.errors()))
        return _error(status, code, detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                      headers=getattr(exc, "headers", None))

    @app.exception_handler(_Refused)
    async def _refused(_: Request, exc: _Refused) -> Response:
        return _error(exc.status, exc.code, exc.detail)

    for cls, http_status, code in ERRORS:
        async def handler(_: Request, exc: Exception, status: int = http_status, code: str = code) -> Response:
            return _error(status, code, str(exc))
        app.add_exception_handler(cls, handler)

    ok: dict[str, Any] = {"description": "done"}
    r404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorModel, "description": "unknown worker"}}
    unknown_run: dict[int | str, dict[str, Any]] = {404: {"model": ErrorModel, "description": "unknown run"}}

    @app.post("/worker/register", response_model=Registered, tags=["workers"])
    async def register(body: RegisterRequest) -> Response:
        """Register a worker for the given workflows; answers its id."""
        schemas = [checked(w, f"workflows[{i}]")[0] for i, w in enumerate(body.workflows)]
        return _json(Registered(worker_id=broker.register_worker(schemas, body.name)).model_dump_json().encode())

    @app.post("/worker/keep-alive", response_model=KeptAlive, responses=r404, tags=["workers"])
    async def keep_alive(body: WorkerRef) -> Response:
        """Extend the leases of the worker's assignments; answers those cancelled meanwhile."""
        cancelled = broker.keep_alive(body.worker_id) or []
        return _json(KeptAlive(cancelled=list(cancelled)).model_dump_json().encode())

    @app.post("/worker/unregister", status_code=204, responses={204: ok}, tags=["workers"])
    async def unregister(body: WorkerRef) -> Response:
        """Forget a worker; its unfinished assignments are queued again at once."""
        leave = getattr(broker, "unregister_worker", None)
        if callable(leave):
            leave(body.worker_id)
        return Response(status_code=204)

    @app.post("/workflow/dispatch", response_model=Dispatched, tags=["runs"],
              responses={409: {"model": ErrorModel,
                               "description": "schema mismatch, or a request_id reused for another dispatch"}})
    async def dispatch(body: DispatchRequest) -> Response:
        """Start a run of a workflow with inputs; answers the run id."""
        schema, key = checked(body.workflow, "workflow")
        digest = fingerprint({"workflow": key, "inputs": {k: v.fingerprint for k, v in body.inputs.items()}}) \
            if body.request_id else ""
        run_id = service.dispatched(body.request_id, digest)
        if run_id is None:
            run_id = broker.dispatch_workflow(schema, dict(body.inputs))
            service.remember(body.request_id, run_id, digest)
        return _json(Dispatched(run_id=run_id).model_dump_json().encode())

    @app.get("/workflow/step", response_model=StepAnswer, tags=["steps"],
             responses={204: {"description": "no step is ready"}, **r404})
    async def get_step(worker_id: Annotated[str, Query(min_length=1, max_length=512)],
                       wait: Annotated[float, Query(ge=0, le=MAX_WAIT, allow_inf_nan=False)] = 0.0) -> Response:
        """The worker's next step (204 when none is ready after ``wait`` seconds)."""
        a = await service.next_step(worker_id, wait)
        return _json(answer(a)) if a is not None else Response(status_code=204)

    @app.get("/runs", response_model=list[RunInfo], tags=["runs"])
    async def list_runs() -> Response:
        """Every run, oldest first."""
        return _json(_RUNS.dump_json(broker.list_runs()))

    @app.get("/runs/{run_id}", response_model=RunInfo, tags=["runs"], responses=unknown_run)
    async def get_run(run_id: str, steps: bool = True,
                      wait: Annotated[float, Query(ge=0, le=MAX_WAIT, allow_inf_nan=False)] = 0.0) -> Response:
        """One run with its steps (``steps=false`` leaves them out).

        ``wait`` > 0 answers as soon as the run has ended, or after ``wait``
        seconds with the run as it is then.
        """
        info = await service.poll(lambda: service.finished(run_id), wait, recheck=1.0) if wait else None
        info = info or broker.get_run(run_id)
        if not steps:
            info = copy.copy(info)  # a shallow copy: its values stay closed
            info.steps = {}
        return _json(_RUN.dump_json(info))

    @app.get("/runs/{run_id}/events", response_model=list[Event], tags=["runs"], responses=unknown_run)
    async def run_events(run_id: str, after: Annotated[int, Query(ge=0)] = 0,
                         wait: Annotated[float, Query(ge=0, le=MAX_WAIT, allow_inf_nan=False)] = 0.0,
                         limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = MAX_EVENTS) -> Response:
        """The run's events with ``seq`` > ``after``, oldest first, at most ``limit``.

        ``wait`` > 0 long-polls: the answer comes as soon as there is a newer
        event, or after ``wait`` seconds (an empty list). A live view follows a
        run with ``after`` = the last ``seq`` it saw.
        """
        broker.get_run(run_id)  # 404 for an unknown run

        def newer() -> list[Any] | None:
            found = [e for e in broker.events(run_id) if e.seq > after]
            return found or None

        found = (await service.poll(newer, wait, recheck=1.0) if wait else newer()) or []
        return _json(_EVENTS.dump_json(found[:limit]))

    @app.post("/runs/{run_id}/cancel", response_model=Cancelled, tags=["runs"], responses=unknown_run)
    async def cancel_run(run_id: str, body: CancelRequest | None = None) -> Response:
        """Cancel a run: its unfinished steps become CANCELLED, running ones are stopped.

        Cancelling a run that has ended changes nothing: ``cancelled`` is false.
        """
        reason = body.reason if body is not None else None
        done = broker.cancel_run(run_id, reason)
        state = broker.get_run(run_id).state
        message = (f"run {run_id!r} cancelled" if done
                   else f"run {run_id!r} had already ended ({state.value}): nothing to cancel")
        return _json(Cancelled(run_id=run_id, cancelled=done, state=state, message=message)
                     .model_dump_json().encode())

    @app.get("/workers", response_model=list[WorkerInfo], tags=["workers"])
    async def list_workers() -> Response:
        """Registered workers."""
        return _json(_WORKERS.dump_json(broker.list_workers()))

    @app.get("/workflows", response_model=list[WorkflowSchema], tags=["runs"])
    async def list_workflows() -> Response:
        """Registered workflow schemas."""
        return _json(_WORKFLOWS.dump_json(broker.list_workflows()))

    add_repository_routes(app, broker)

    @app.get("/status", tags=["service"])
    async def status() -> dict[str, Any]:
        """Health summary; needs no token."""
        return {**broker.status(), "api_version": WIRE_VERSION}

    _describe(app, token is not None)
    # Outermost, before even the framework's own middleware: the token check and the per-step
    # route (POST /workflow/step), which the framework's layers would cost more than the step.
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: Front(build(), service=service, token=token,  # type: ignore[method-assign]
                                               max_body=max_body)
    return app


def _report_operation(components: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI operation of ``POST /workflow/step`` (served by :class:`Front`, not by a FastAPI route)."""
    ref = "#/components/schemas/{model}"
    request = ReportRequest.model_json_schema(ref_template=ref, mode="validation")
    reply = StepAnswer.model_json_schema(ref_template=ref, mode="serialization")
    error = ErrorModel.model_json_schema(ref_template=ref)
    for schema in (request, reply, error):
        for name, d in schema.pop("$defs", {}).items():
            components.setdefault(name, d)
    components.setdefault("ReportRequest", request)
    components.setdefault("StepAnswer", reply)
    components.setdefault("ErrorModel", error)

    def err(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": ref.format(model="ErrorModel")}}}}

    return {
        "tags": ["steps"], "summary": "Report",
        "description": "Report one attempt; with ``next`` answer the worker's next step too.",
        "operationId": "report_workflow_step_post",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": ref.format(model="ReportRequest")}}}},
        "responses": {
            "200": {"description": "the report was recorded", "content": {"application/json": {
                "schema": {"$ref": ref.format(model="StepAnswer")}}}},
            "404": err("unknown worker or run"), "409": err("stale report"),
            "422": err("a wrong field, named in detail"),
        },
    }


def _describe(app: FastAPI, token: bool) -> None:
    """Complete the OpenAPI document: the per-step route, and the bearer token (the docs' Authorize button)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            components = doc.setdefault("components", {})
            doc["paths"].setdefault("/workflow/step", {})["post"] = _report_operation(
                components.setdefault("schemas", {}))
            if token:
                components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                for path, ops in doc.get("paths", {}).items():
                    if path not in PUBLIC:
                        for op in ops.values():
                            op["security"] = [{"bearer": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["MAX_BODY", "MAX_WAIT", "create_app"]
