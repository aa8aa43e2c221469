"""A plain HTTP/1.1 keep-alive transport for the worker's requests to a broker service over ``http://``.

A worker sends two small requests per step. Through httpx's own transport
(httpcore and h11) most of a worker's CPU per step went to that layering:
pool bookkeeping, trace contexts, h11's state machine and header
validation, one system call for the head and one for the body. This
transport writes each request as one buffer on a kept-alive socket and reads
the answer's status line, headers and body itself (``Content-Length`` or
chunked), and hands httpx the finished :class:`httpx.Response`. The
:class:`~fuseline_nb.broker._http_send.Sender` above it is unchanged: its
retries, timeouts and refusals behave as with httpx's transport, because
failures are raised as httpx's own errors (``ConnectError``,
``ReadTimeout``, ``RemoteProtocolError``...). ``https://`` keeps httpx's
transport.

An idle connection the service has closed (its keep-alive timeout) is
noticed before reuse (it reads as ready) and replaced; a request that finds
its reused connection closed before any byte of the answer is sent again
once on a new one, as httpcore does.

Examples
--------
>>> import httpx
>>> t = KeepAliveTransport()
>>> t.handle_request(httpx.Request("GET", "http://127.0.0.1:9/status"))
Traceback (most recent call last):
httpx.ConnectError: [Errno 111] Connection refused
>>> t.close()
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Any

import httpx

_MAX_HEAD = 65536  # bytes of status line + headers accepted from the service


class _Closed(httpx.RemoteProtocolError):
    """The service closed the connection before any byte of the answer (an idle keep-alive it dropped)."""


class _Conn:
    """One kept-alive socket and what was read past the last answer."""

    __slots__ = ("buf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def stale(self) -> bool:
        """True when the idle socket reads as ready: the service closed it (or sent what nobody asked)."""
        if self.buf:
            return True
        try:
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def _more(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise httpx.RemoteProtocolError("the broker service closed the connection in the middle of an answer")
        return data

    def read_answer(self, head_only: bool = False) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        """(status, headers, body, keep-alive) of one answer (``head_only``: the answer to a HEAD)."""
        buf = self.buf
        if not buf:
            buf = self.sock.recv(65536)
            if not buf:
                raise _Closed("the broker service closed the connection before answering")
        try:
            return self._answer(buf, head_only)
        except ValueError as exc:
            raise httpx.RemoteProtocolError(f"a malformed answer from the broker service: {exc}") from exc

    def _answer(self, buf: bytes, head_only: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > _MAX_HEAD:
                raise httpx.RemoteProtocolError("the broker service's answer head is too large")
            buf += self._more()
        lines = buf[:end].split(b"\r\n")
        buf = buf[end + 4:]
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(f"not an HTTP/1.1 answer: {lines[0][:80]!r}")
        status = int(parts[1])
        headers = []
        length = -1
        chunked = False
        keep = parts[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise httpx.RemoteProtocolError(f"bad header line in the answer: {line[:80]!r}")
            value = value.strip()
            low = name.strip().lower()
            headers.append((name.strip(), value))
            if low == b"content-length":
                length = int(value)
            elif low == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif low == b"connection":
                keep = b"close" not in value.lower() and (keep or b"keep-alive" in value.lower())
        if status in (204, 304) or status < 200 or head_only:  # no body, whatever the headers say
            body = b""
        elif chunked:
            body, buf = self._chunks(buf)
        elif length >= 0:
            while len(buf) < length:
                buf += self._more()
            body, buf = buf[:length], buf[length:]
        else:  # neither: the body runs to the end of the connection
            pieces = [buf]
            while data := self.sock.recv(65536):
                pieces.append(data)
            body, buf, keep = b"".join(pieces), b"", False
        self.buf = buf
        return status, headers, body, keep

    def _chunks(self, buf: bytes) -> tuple[bytes, bytes]:
        pieces: list[bytes] = []
        while True:
            while (eol := buf.find(b"\r\n")) < 0:
                buf += self._more()
            size = int(buf[:eol].split(b";", 1)[0], 16)
            buf = buf[eol + 2:]
            if size == 0:
                while (eot := buf.find(b"\r\n")) != 0:  # trailers, then the blank line
                    if eot < 0:
                        buf += self._more()
                    else:
                        buf = buf[eot + 2:]
                return b"".join(pieces), buf[2:]
            while len(buf) < size + 2:
                buf += self._more()
            pieces.append(buf[:size])
            buf = buf[size + 2:]


class KeepAliveTransport(httpx.BaseTransport):
    """httpx's transport seam over plain kept-alive sockets to one ``http://`` service (see the module)."""

    def __init__(self) -> None:
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self, request: httpx.Request, timeout: float | None) -> _Conn:
        host, port = request.url.host, request.url.port or 80
        try:
            sock = socket.create_connection((host, port), timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{exc}", request=request) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(sock)

    def _idle_conn(self) -> _Conn | None:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.stale():
                    return conn
                conn.sock.close()
        return None

    @staticmethod
    def _exchange(conn: _Conn, data: bytes, request: httpx.Request,
                  timeouts: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        """Send ``data`` on ``conn`` and read the answer; on a failure the socket is closed."""
        try:
            conn.sock.settimeout(timeouts.get("read"))
            conn.sock.sendall(data)
            return conn.read_answer(request.method == "HEAD")
        except httpx.RemoteProtocolError:
            conn.sock.close()
            raise
        except TimeoutError as exc:
            conn.sock.close()
            raise httpx.ReadTimeout(f"no answer from the broker service within {timeouts.get('read')}s",
                                    request=request) from exc
        except OSError as exc:
            conn.sock.close()
            raise httpx.ReadError(f"{exc}", request=request) from exc

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on an idle connection (or a new one) in one write and read its answer."""
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        target = url.raw_path
        head = [request.method.encode(), b" ", target, b" HTTP/1.1\r\nHost: ", url.netloc, b"\r\n"]
        for name, value in request.headers.raw:
            if name.lower() != b"host":
                head += [name, b": ", value, b"\r\n"]
        body = request.content
        if body and "content-length" not in request.headers:
            head += [b"Content-Length: ", str(len(body)).encode(), b"\r\n"]
        head += [b"\r\n", body]
        data = b"".join(head)
        reused = self._idle_conn()
        answer = None
        if reused is not None:
            try:
                answer = self._exchange(reused, data, request, timeouts)
                conn = reused
            except (_Closed, httpx.ReadError):  # a reused connection the service dropped: once more, anew
                answer = None
        if answer is None:
            conn = self._connect(request, timeouts.get("connect"))
            answer = self._exchange(conn, data, request, timeouts)
        status, headers, content, keep = answer
        if keep and not self._closed:
            with self._lock:
                self._idle.append(conn)
        else:
            conn.sock.close()
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        """Close the idle connections (a request in flight closes its own when it ends)."""
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.sock.close()


__all__: list[str] = []
