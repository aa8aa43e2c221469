"""The front of the broker app: token check, long-poll wake-ups, and the per-step route.

:class:`Front` is plain ASGI middleware in front of the FastAPI app. It
checks the bearer token and the body bound, and serves ``POST /workflow/step``
— the one request a worker sends per step — itself (it is the route's only
implementation; :mod:`.http` documents it in the OpenAPI description): the
framework's routing and dependency machinery would cost more than the step.

Examples
--------
>>> error_body(404, "unknown_run", "no such run").decode()
'{"error":"unknown_run","detail":"no such run","errors":[]}'
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import (
    MissingInputError,
    SchemaMismatchError,
    StaleReportError,
    StorageClosedError,
    UnknownRunError,
    UnknownWorkerError,
    UnknownWorkflowError,
)
from ..workflow.events import Event
from .base import Broker, StepAssignment
from .edge import report_error
from .wire import WIRE_VERSION, ReportRequest

#: Paths anyone may read: the health check and the API description (no data).
PUBLIC: Final = frozenset({"/status", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
#: Longest long-poll a client may ask for, in seconds.
MAX_WAIT: Final = 60.0
_RECHECK = 0.25  # a long-poll re-checks this often, so expired leases are re-queued


class ReusedRequestError(ValueError):
    """A dispatch ``request_id`` sent again with another workflow or other inputs (409)."""


#: Broker errors → (HTTP status, error code).
ERRORS: Final[tuple[tuple[type[Exception], int, str], ...]] = (
    (UnknownWorkerError, 404, "unknown_worker"),
    (UnknownRunError, 404, "unknown_run"),
    (UnknownWorkflowError, 404, "unknown_workflow"),
    (StaleReportError, 409, "stale_report"),
    (SchemaMismatchError, 409, "schema_mismatch"),
    (ReusedRequestError, 409, "request_id_reused"),
    (MissingInputError, 422, "missing_input"),
    (StorageClosedError, 503, "broker_closed"),
)
_BROKER_ERRORS = tuple(cls for cls, _, _ in ERRORS)


def dumps(body: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(body, separators=(",", ":")).encode()


def answer(a: StepAssignment | None) -> bytes:
    """The JSON of a :class:`~.wire.StepAnswer` carrying ``a`` (written without building the envelope).

    Examples
    --------
    >>> answer(None)
    b'{"v":2,"next":null}'
    """
    return _HEAD + _next_json(a) + b"}"


_HEAD: Final = b'{"v":%d,"next":' % WIRE_VERSION
_next_json = TypeAdapter(StepAssignment | None).dump_json


def too_large(max_body: int) -> str:
    """What a 413 answer says, whichever layer noticed the body was too large."""
    return f"the request body is over {max_body} bytes (the service's --max-body)"


def error_body(status: int, code: str, detail: str, errors: list[dict[str, Any]] | None = None) -> bytes:
    """The JSON of every error answer (``status`` is implied by the response)."""
    return dumps({"error": code, "detail": detail, "errors": errors or []})


def field_errors(raw: list[Any]) -> tuple[int, str, str, list[dict[str, Any]]]:
    """(status, code, detail, errors) for pydantic/FastAPI validation errors.

    Malformed JSON is 400; anything else 422 with the field paths in ``detail``.
    """
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in raw]
    if any(e["type"] == "json_invalid" for e in errors):
        return 400, "invalid_json", "the request body is not valid JSON", errors
    parts = [f"{'.'.join(e['loc'][1:] if e['loc'][:1] == ['body'] else e['loc']) or 'body'}: {e['msg']}"
             for e in errors[:5]]
    return 422, "invalid_request", "; ".join(parts), errors


def broker_error(exc: Exception) -> tuple[int, str]:
    """(status, code) of a broker error."""
    for cls, status, code in ERRORS:
        if isinstance(exc, cls):
            return status, code
    raise exc


class Wakeup:
    """Wakes long-polls when the broker queues a step or ends a run (any thread may poke)."""

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
        if event.kind not in ("step_queued", "run_finished") or not self.waiters or self.loop is None:
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


class Service:
    """What the routes share: the broker, wake-ups and dispatch de-duplication."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.wake = Wakeup()
        self.unsubscribe = broker.subscribe(self.wake.on_event)
        self._dispatched: OrderedDict[str, tuple[str, str]] = OrderedDict()

    async def poll(self, check: Callable[[], Any], wait: float, recheck: float = _RECHECK) -> Any:
        """``check()`` until it answers, woken by broker events, for up to ``wait`` seconds."""
        wake = self.wake
        event = wake.bind()
        found = check()
        deadline = time.monotonic() + min(wait, MAX_WAIT)
        while found is None and (left := deadline - time.monotonic()) > 0:
            wake.waiters += 1
            try:
                await asyncio.wait_for(event.wait(), min(left, recheck))
            except TimeoutError:
                pass
            finally:
                wake.waiters -= 1
            event = wake.bind()
            found = check()
        return found

    async def next_step(self, worker_id: str, wait: float) -> StepAssignment | None:
        """The worker's next step, waiting up to ``wait`` seconds for one."""
        return await self.poll(lambda: self.broker.get_step(worker_id), wait)  # type: ignore[no-any-return]

    async def report(self, body: ReportRequest) -> bytes:
        """Record a report; answer the worker's next step when it asked for one."""
        self.broker.report_step(body.worker_id, body.report)
        return answer(await self.next_step(body.worker_id, body.wait) if body.next else None)

    def finished(self, run_id: str) -> Any:
        info = self.broker.get_run(run_id)
        return info if info.done else None

    def dispatched(self, request_id: str | None, digest: str = "") -> str | None:
        """The run a retried dispatch started; :class:`ReusedRequestError` for another dispatch."""
        seen = self._dispatched.get(request_id) if request_id else None
        if seen is None:
            return None
        run_id, first = seen
        if first != digest:
            raise ReusedRequestError(
                f"request_id {request_id!r} already started run {run_id} with another workflow or "
                "other inputs: use a new request_id for a new dispatch (repeat one only to retry the "
                "same request)")
        return run_id

    def remember(self, request_id: str | None, run_id: str, digest: str = "", size: int = 4096) -> None:
        if request_id:
            self._dispatched[request_id] = (run_id, digest)
            while len(self._dispatched) > size:
                self._dispatched.popitem(last=False)


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a whole JSON response."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Front:
    """ASGI middleware: the token on every non-public path, and the per-step fast lane."""

    def __init__(self, app: ASGIApp, service: Service, token: str | None, max_body: int) -> None:
        self.app = app
        self.service = service
        self.expected = token.encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.expected is not None and scope["path"] not in PUBLIC:
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, credentials = given.strip().partition(b" ")
            # the scheme is case-insensitive (RFC 7235); the token is compared in constant time
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), self.expected):
                detail = ("missing Authorization header: send 'Authorization: Bearer <token>'" if not given
                          else "wrong token in the Authorization header")
                await respond(send, 401, error_body(401, "unauthorized", detail),
                              [(b"www-authenticate", b"Bearer")])
                return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            await self._too_large(send)
            return
        if scope["path"] == "/workflow/step" and scope["method"] == "POST":
            await self._report(receive, send)
            return
        await self.app(scope, self._bounded(receive), send)

    def _bounded(self, receive: Receive) -> Receive:
        seen = 0

        async def bounded() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:  # a chunked body that grew past the bound: the app answers 413
                raise HTTPException(413, too_large(self.max_body))
            return message

        return bounded

    async def _too_large(self, send: Send) -> None:
        await respond(send, 413, error_body(413, "payload_too_large", too_large(self.max_body)))

    async def _report(self, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        try:
            body = ReportRequest.model_validate_json(b"".join(chunks))
        except ValidationError as exc:
            raw = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            status, code, detail, errors = field_errors(raw)
            await respond(send, status, error_body(status, code, detail, errors))
            return
        if (err := report_error(body.report, "report")) is not None:
            await respond(send, 422, error_body(422, "invalid_request", err))
            return
        try:
            reply = await self.service.report(body)
        except _BROKER_ERRORS as exc:
            status, code = broker_error(exc)
            await respond(send, status, error_body(status, code, str(exc)))
            return
        await respond(send, 200, reply)
