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

import asyncio
import hmac
import logging
import threading
import time
from collections import OrderedDict
from typing import Annotated, Any, Final

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import (
    SchemaMismatchError,
    StaleReportError,
    StorageClosedError,
    UnknownRunError,
    UnknownWorkerError,
    UnknownWorkflowError,
)
from ..workflow.events import Event
from .base import Broker
from .wire import (
    WIRE_VERSION,
    AssignmentModel,
    Dispatched,
    DispatchRequest,
    ErrorModel,
    Registered,
    RegisterRequest,
    ReportAnswer,
    ReportRequest,
    RunModel,
    WorkerModel,
    WorkerRef,
    WorkflowModel,
    assignment_to_wire,
    check_schema,
    decode_value,
    report_from_wire,
    run_to_wire,
    schema_from_model,
    worker_to_wire,
)

log = logging.getLogger(__name__)

#: Default bound on a request body.
MAX_BODY: Final = 16 * 1024 * 1024
#: Longest long-poll a client may ask for, in seconds.
MAX_WAIT: Final = 60.0
_PUBLIC: Final = frozenset({"/status", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
_RECHECK = 0.25  # a long-poll re-checks this often, so expired leases are re-queued

#: Broker errors → (HTTP status, error code).
_ERRORS: Final[tuple[tuple[type[Exception], int, str], ...]] = (
    (UnknownWorkerError, 404, "unknown_worker"),
    (UnknownRunError, 404, "unknown_run"),
    (UnknownWorkflowError, 404, "unknown_workflow"),
    (StaleReportError, 409, "stale_report"),
    (SchemaMismatchError, 409, "schema_mismatch"),
    (StorageClosedError, 503, "broker_closed"),
)


def _error(status: int, code: str, detail: str, errors: list[dict[str, Any]] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, "errors": errors or []}, status, headers=headers)


def _json(body: Any, status: int = 200) -> Response:
    # The bodies are built from validated dataclasses, so they skip a second validation.
    import json

    return Response(json.dumps(body, separators=(",", ":")), status, media_type="application/json")


class _Guard:
    """ASGI middleware: the bearer token on every non-public path."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is not None and scope["type"] == "http" and scope["path"] not in _PUBLIC:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                detail = ("missing Authorization header: send 'Authorization: Bearer <token>'" if not given
                          else "wrong token in the Authorization header")
                resp = _error(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Wakeup:
    """Wakes long-polls when the broker queues a step (any thread may poke)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: int | None = None
        self.event: asyncio.Event | None = None
        self.waiters = 0
        self._posted = False

    def bind(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if loop is not self.loop or self.event is None:  # first use, or a new loop (tests, restarts)
            self.loop, self.thread, self.event = loop, threading.get_ident(), asyncio.Event()
        return self.event

    def on_event(self, event: Event) -> None:
        if event.kind != "step_queued" or not self.waiters or self.loop is None:
            return
        if threading.get_ident() == self.thread:
            self._fire()
        elif not self._posted:
            self._posted = True
            self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self._posted = False
        if self.event is not None:
            self.event.set()
            self.event = asyncio.Event()


class _Dedup:
    """Remembers recent dispatch request ids, so a retried dispatch starts one run."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def get(self, key: str | None) -> str | None:
        return self._seen.get(key) if key else None

    def put(self, key: str | None, run_id: str) -> None:
        if key:
            self._seen[key] = run_id
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)


def _schema_or_422(m: WorkflowModel, where: str) -> Any:
    schema = schema_from_model(m)
    try:
        check_schema(schema)
    except ValueError as exc:
        raise _Refused(422, "invalid_request", f"{where}.{exc}") from None
    return schema


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _field_errors(exc: RequestValidationError) -> tuple[int, str, str, list[dict[str, Any]]]:
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    if any(e["type"] == "json_invalid" for e in errors):
        return 400, "invalid_json", "the request body is not valid JSON", errors
    parts = [f"{'.'.join(e['loc'][1:] if e['loc'][:1] == ['body'] else e['loc']) or 'body'}: {e['msg']}"
             for e in errors[:5]]
    return 422, "invalid_request", "; ".join(parts), errors


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
    wake = _Wakeup()
    dedup = _Dedup()
    app = FastAPI(
        title="fuseline_nb broker",
        version=str(WIRE_VERSION),
        description=__doc__.split("Examples")[0] if __doc__ else "",
        max_body_size=max_body,
        responses={401: {"model": ErrorModel}, 422: {"model": ErrorModel}},
    )
    app.state.broker = broker
    app.state.unsubscribe = broker.subscribe(wake.on_event)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, detail, errors = _field_errors(exc)
        return _error(status, code, detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                      headers=getattr(exc, "headers", None))

    @app.exception_handler(_Refused)
    async def _refused(_: Request, exc: _Refused) -> JSONResponse:
        return _error(exc.status, exc.code, exc.detail)

    for cls, http_status, code in _ERRORS:
        async def handler(_: Request, exc: Exception, status: int = http_status, code: str = code) -> JSONResponse:
            return _error(status, code, str(exc))
        app.add_exception_handler(cls, handler)

    async def next_step(worker_id: str, wait: float) -> dict[str, Any] | None:
        event = wake.bind()
        a = broker.get_step(worker_id)
        deadline = time.monotonic() + min(wait, MAX_WAIT)
        while a is None and (left := deadline - time.monotonic()) > 0:
            wake.waiters += 1
            try:
                await asyncio.wait_for(event.wait(), min(left, _RECHECK))
            except TimeoutError:
                pass
            finally:
                wake.waiters -= 1
            event = wake.bind()
            a = broker.get_step(worker_id)
        return assignment_to_wire(a) if a is not None else None

    ok: dict[str, Any] = {"description": "done"}
    r404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorModel, "description": "unknown worker"}}

    @app.post("/worker/register", response_model=Registered, tags=["workers"])
    async def register(body: RegisterRequest) -> Response:
        """Register a worker for the given workflows; answers its id."""
        schemas = [_schema_or_422(w, f"workflows[{i}]") for i, w in enumerate(body.workflows)]
        return _json({"v": WIRE_VERSION, "worker_id": broker.register_worker(schemas, body.name)})

    @app.post("/worker/keep-alive", status_code=204, responses={204: ok, **r404}, tags=["workers"])
    async def keep_alive(body: WorkerRef) -> Response:
        """Extend the leases of the worker's assignments."""
        broker.keep_alive(body.worker_id)
        return Response(status_code=204)

    @app.post("/worker/unregister", status_code=204, responses={204: ok}, tags=["workers"])
    async def unregister(body: WorkerRef) -> Response:
        """Forget a worker; its unfinished assignments are queued again at once."""
        leave = getattr(broker, "unregister_worker", None)
        if callable(leave):
            leave(body.worker_id)
        return Response(status_code=204)

    @app.post("/workflow/dispatch", response_model=Dispatched, tags=["runs"],
              responses={409: {"model": ErrorModel, "description": "schema mismatch"}})
    async def dispatch(body: DispatchRequest) -> Response:
        """Start a run of a workflow with inputs; answers the run id."""
        run_id = dedup.get(body.request_id)
        if run_id is None:
            schema = _schema_or_422(body.workflow, "workflow")
            inputs = {k: decode_value(v, side="broker") for k, v in body.inputs.items()}
            run_id = broker.dispatch_workflow(schema, inputs)
            dedup.put(body.request_id, run_id)
        return _json({"v": WIRE_VERSION, "run_id": run_id})

    @app.get("/workflow/step", response_model=AssignmentModel, tags=["steps"],
             responses={204: {"description": "no step is ready"}, **r404})
    async def get_step(worker_id: Annotated[str, Query(min_length=1, max_length=512)],
                       wait: Annotated[float, Query(ge=0, le=MAX_WAIT, allow_inf_nan=False)] = 0.0) -> Response:
        """The worker's next step (204 when none is ready after ``wait`` seconds)."""
        a = await next_step(worker_id, wait)
        return _json(a) if a is not None else Response(status_code=204)

    @app.post("/workflow/step", response_model=ReportAnswer, tags=["steps"],
              responses={409: {"model": ErrorModel, "description": "stale report"}, **r404})
    async def report(body: ReportRequest) -> Response:
        """Report one attempt; with ``next`` answer the worker's next step too."""
        broker.report_step(body.worker_id, report_from_wire(body.report))
        a = await next_step(body.worker_id, body.wait) if body.next else None
        return _json({"v": WIRE_VERSION, "next": a})

    @app.get("/runs", response_model=list[RunModel], tags=["runs"])
    async def list_runs() -> Response:
        """Every run, oldest first."""
        return _json([run_to_wire(r) for r in broker.list_runs()])

    @app.get("/runs/{run_id}", response_model=RunModel, tags=["runs"],
             responses={404: {"model": ErrorModel, "description": "unknown run"}})
    async def get_run(run_id: str, steps: bool = True) -> Response:
        """One run with its steps (``steps=false`` leaves them out)."""
        return _json(run_to_wire(broker.get_run(run_id), steps))

    @app.get("/workers", response_model=list[WorkerModel], tags=["workers"])
    async def list_workers() -> Response:
        """Registered workers."""
        return _json([worker_to_wire(w) for w in broker.list_workers()])

    @app.get("/workflows", response_model=list[WorkflowModel], tags=["runs"])
    async def list_workflows() -> Response:
        """Registered workflow schemas."""
        return _json([s.to_dict() for s in broker.list_workflows()])

    @app.get("/status", tags=["service"])
    async def status() -> dict[str, Any]:
        """Health summary; needs no token."""
        return {**broker.status(), "api_version": WIRE_VERSION}

    _add_security(app, token is not None)
    app.add_middleware(_Guard, token=token)
    return app


def _add_security(app: FastAPI, enabled: bool) -> None:
    """Describe the bearer token in the OpenAPI document (the docs' Authorize button)."""
    if not enabled:
        return
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}}
            for path, ops in doc.get("paths", {}).items():
                if path not in _PUBLIC:
                    for op in ops.values():
                        op["security"] = [{"bearer": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["MAX_BODY", "MAX_WAIT", "create_app"]
