"""The transport half of :class:`~fuseline_nb.broker.http_client.HttpBrokerClient`: send, retry, read.

:class:`Sender` writes a request body (an envelope of :mod:`.wire`, a
record, or JSON bytes), sends it over one keep-alive connection pool,
retries connection failures with backoff, turns a refusal into the matching
error of :mod:`fuseline_nb.errors`, and :func:`parse` reads an answer
straight into the broker's dataclasses.

Examples
--------
>>> import httpx
>>> sender = Sender("http://b", None, 1.0, 0, 0.1, httpx.MockTransport(lambda r: httpx.Response(200, json=[])))
>>> parse(list[str], sender.send("GET", "/workflows"))
[]
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import httpcore
import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..errors import (
    BrokerAuthError,
    BrokerRequestError,
    BrokerUnavailableError,
    SchemaMismatchError,
    StaleReportError,
    UnknownRunError,
    UnknownWorkerError,
    UnknownWorkflowError,
)
from ._http_conn import KeepAliveTransport

log = logging.getLogger("fuseline_nb.broker.http_client")

#: Error codes of the service → the exception raised here.
CODES: Final[dict[str, type[Exception]]] = {
    "unknown_worker": UnknownWorkerError,
    "unknown_run": UnknownRunError,
    "unknown_workflow": UnknownWorkflowError,
    "stale_report": StaleReportError,
    "schema_mismatch": SchemaMismatchError,
    "unauthorized": BrokerAuthError,
    "broker_closed": BrokerUnavailableError,
}
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def adapter(kind: Any) -> TypeAdapter[Any]:
    """The (cached) pydantic adapter of ``kind``: a dataclass, an envelope, ``list[...]`` of them."""
    found = _ADAPTERS.get(kind)
    if found is None:
        found = _ADAPTERS[kind] = TypeAdapter(kind)
    return found


def dump(body: Any) -> bytes:
    """The JSON of a request body: an envelope of :mod:`.wire`, a record, or JSON bytes already."""
    if body.__class__ is bytes:
        return body  # type: ignore[no-any-return]
    if isinstance(body, BaseModel):
        return body.__pydantic_serializer__.to_json(body)
    return adapter(type(body)).dump_json(body)


def parse(kind: Any, resp: httpx.Response) -> Any:
    """The answer read as ``kind`` (an envelope, a record, a list of records); a bad one is named."""
    try:
        return adapter(kind).validate_json(resp.content)
    except ValidationError as exc:
        name = getattr(kind, "__name__", None) or str(kind)
        raise BrokerRequestError(resp.status_code, "bad_answer",
                                 f"the broker's answer is not a valid {name}: {exc}") from exc


def refusal(method: str, path: str, resp: httpx.Response) -> Exception:
    """The exception for a 4xx/5xx answer, with the service's explanation and the request."""
    try:
        body = resp.json()
        code, detail = str(body.get("error", "")), str(body.get("detail", ""))
    except (ValueError, AttributeError):
        code, detail = "", resp.text[:500]
    where = f"{method} {path} → {resp.status_code}"
    cls = CODES.get(code)
    if cls is not None:
        return cls(f"{detail} ({where})")
    if resp.status_code >= 500:
        return BrokerUnavailableError(f"the broker failed: {detail or resp.reason_phrase} ({where})")
    return BrokerRequestError(resp.status_code, code or "http_error", f"{detail} ({where})")


class _OneWrite(httpcore.NetworkStream):
    """A connection that sends a request's head and body in one write, when the answer is first read.

    httpcore writes the head and the body of a request separately: two
    system calls, and two wake-ups of the service (which reads the head,
    then waits for the body). Held back until the answer is read, they
    leave as one.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._held: list[bytes] = []

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._held.append(buffer)

    def _flush(self, timeout: float | None) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            self._inner.write(data, timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush(timeout)
        return self._inner.read(max_bytes, timeout)

    def close(self) -> None:
        self._held.clear()
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        self._flush(timeout)
        return self._inner.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _OneWriteBackend(httpcore.SyncBackend):
    """httpcore's own backend, its connections sending each request in one write (see :class:`_OneWrite`)."""

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _OneWrite(super().connect_tcp(*args, **kwargs))


def one_write_transport() -> httpx.HTTPTransport:
    """httpx's keep-alive connection pool, each request leaving in one write.

    Examples
    --------
    >>> one_write_transport().close()
    """
    made = httpx.HTTPTransport()
    pool = getattr(made, "_pool", None)
    if isinstance(pool, httpcore.ConnectionPool):  # httpx's seam to httpcore; else keep httpx's own
        made._pool = httpcore.ConnectionPool(network_backend=_OneWriteBackend())
    return made


class Sender:
    """Requests to one service over a keep-alive connection pool, retried after connection failures."""

    def __init__(self, base_url: str, token: str | None, timeout: float, retries: int, backoff: float,
                 transport: httpx.BaseTransport | None) -> None:
        self.base_url, self.timeout, self.retries, self.backoff = base_url, timeout, retries, backoff
        auth = [("Authorization", f"Bearer {token}")] if token else []
        # Built once (a request copies them): parsing headers and URLs costs more than the step's message.
        self._headers = httpx.Headers([("Accept", "application/json"), ("User-Agent", "fuseline-nb"), *auth])
        self._json_headers = httpx.Headers([*self._headers.raw, (b"Content-Type", b"application/json")])
        self._urls: dict[str, httpx.URL] = {}
        # The transport seam itself (a keep-alive connection pool), not httpx.Client: the client
        # layer (auth flows, redirects, cookies, hooks) costs more CPU than a step here.
        if transport is None:
            transport = KeepAliveTransport() if base_url.startswith("http://") else one_write_transport()
        self.transport = transport

    def send(self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None,
             extra_timeout: float = 0.0) -> httpx.Response:
        """The answer to one request (raises the matching error for a refusal)."""
        delay = self.backoff
        timeout = {"timeout": httpx.Timeout(self.timeout + extra_timeout).as_dict()}
        url = self._urls.get(path) if params is None else None
        if url is None:
            url = httpx.URL(self.base_url + path, params=params)
            if params is None and len(self._urls) < 64:
                self._urls[path] = url
        content = None if body is None else dump(body)
        headers = self._headers if content is None else self._json_headers
        for attempt in range(self.retries + 1):
            try:
                request = httpx.Request(method, url, content=content, headers=headers, extensions=timeout)
                resp = self.transport.handle_request(request)
                resp.read()
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise BrokerUnavailableError(
                        f"broker at {self.base_url} unreachable ({method} {path}, "
                        f"{attempt + 1} attempt(s)): {type(exc).__name__}: {exc}"
                    ) from exc
                log.info("%s %s failed (%s); retrying in %.1fs", method, path, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if resp.status_code >= 400:
                raise refusal(method, path, resp)
            return resp
        raise AssertionError("unreachable")  # the loop returns or raises
