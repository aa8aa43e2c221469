"""The worker's keep-alive HTTP transport (broker/_http_conn.py) against real sockets on 127.0.0.1:
a scripted HTTP/1.1 server (exact bytes: chunked bodies, closed connections, silence) and the real
uvicorn service closing an idle keep-alive connection."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from fuseline_nb.broker._http_conn import KeepAliveTransport
from fuseline_nb.broker.clients import HttpBrokerClient
from fuseline_nb.errors import BrokerUnavailableError


class Scripted:
    """A server on 127.0.0.1: ``reply(request_bytes)`` gives the bytes to answer (None: close at once)."""

    def __init__(self, reply: Callable[[bytes], bytes | None]) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.close_after = False  # close each connection after its first answer
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(buf) < length:
                    buf += conn.recv(65536)
                request, buf = head + b"\r\n\r\n" + buf[:length], buf[length:]
                self.requests.append(request)
                answer = self.reply(request)
                if answer is None:
                    return
                conn.sendall(answer)
                if self.close_after:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[bytes], bytes | None]], Scripted]]:
    made: list[Scripted] = []

    def make(reply: Callable[[bytes], bytes | None]) -> Scripted:
        made.append(Scripted(reply))
        return made[-1]

    yield make
    for s in made:
        s.close()


def ok(body: bytes = b'{"ok": true}') -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def test_requests_share_one_connection_and_leave_in_one_piece(scripted: Callable[..., Scripted]) -> None:
    server = scripted(lambda _: ok())
    t = KeepAliveTransport()
    for i in range(5):
        resp = t.handle_request(httpx.Request("POST", f"{server.url}/x?i={i}", content=b'{"a": 1}',
                                              headers={"Content-Type": "application/json"}))
        assert resp.status_code == 200 and resp.json() == {"ok": True}
    t.close()
    assert server.connections == 1
    assert server.requests[3].startswith(b"POST /x?i=3 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert server.requests[3].endswith(b"Content-Length: 8\r\n\r\n{\"a\": 1}")


def test_chunked_and_bodiless_answers_are_read_and_the_connection_kept(scripted: Callable[..., Scripted]) -> None:
    answers = iter([b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n[1, \r\n2;x=y\r\n2]\r\n0\r\n\r\n",
                    b"HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\n", ok(b"[3]")])
    server = scripted(lambda _: next(answers))
    t = KeepAliveTransport()
    assert t.handle_request(httpx.Request("GET", f"{server.url}/a")).json() == [1, 2]
    assert t.handle_request(httpx.Request("GET", f"{server.url}/b")).content == b""
    assert t.handle_request(httpx.Request("GET", f"{server.url}/c")).json() == [3]
    t.close()
    assert server.connections == 1


def test_an_idle_connection_the_server_closed_is_replaced(scripted: Callable[..., Scripted]) -> None:
    # the server answers and closes (as uvicorn does after its keep-alive timeout, without saying so)
    server = scripted(lambda _: ok())
    server.reply = lambda _: ok() if len(server.requests) % 2 else None
    t = KeepAliveTransport()
    for _ in range(3):  # every second request meets a closed connection: sent again on a new one
        assert t.handle_request(httpx.Request("GET", f"{server.url}/s")).status_code == 200
    t.close()
    assert server.connections >= 2


def test_a_connection_dropped_mid_answer_is_an_error_not_a_retry(scripted: Callable[..., Scripted]) -> None:
    server = scripted(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{\"partial")
    server.close_after = True
    t = KeepAliveTransport()
    with pytest.raises(httpx.RemoteProtocolError, match="closed the connection in the middle of an answer"):
        t.handle_request(httpx.Request("GET", f"{server.url}/p"))
    t.close()
    assert len(server.requests) == 1  # not sent twice: the service may have acted on it


def test_the_client_keeps_its_timeout_and_retries_over_this_transport(scripted: Callable[..., Scripted]) -> None:
    silent = scripted(lambda _: b"")  # reads the request, never answers
    client = HttpBrokerClient(silent.url, retries=1, timeout=0.3, backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=r"unreachable \(GET /status, 2 attempt\(s\)\): ReadTimeout"):
        client.status()
    assert 0.6 <= time.monotonic() - t0 < 5
    client.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nobody = HttpBrokerClient(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(BrokerUnavailableError, match=r"unreachable \(GET /status, 1 attempt\(s\)\): ConnectError"):
        nobody.status()
    nobody.close()


def test_the_real_service_closing_an_idle_connection_goes_unnoticed() -> None:
    uvicorn = pytest.importorskip("uvicorn")
    from fuseline_nb.broker import MemoryBroker
    from fuseline_nb.broker.http import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = MemoryBroker()
    server = uvicorn.Server(uvicorn.Config(create_app(broker), host="127.0.0.1", port=port, log_level="warning",
                                           timeout_keep_alive=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    client = HttpBrokerClient(f"http://127.0.0.1:{port}", retries=0)
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        assert client.status()["workers"] == 0
        transport = client._sender.transport
        assert isinstance(transport, KeepAliveTransport)
        (conn,) = transport._idle
        # wait (for an event: the socket reads as closed) until uvicorn drops the idle connection
        conn.sock.settimeout(10)
        assert conn.sock.recv(1, socket.MSG_PEEK) == b""
        assert client.status()["workers"] == 0  # retries=0: the transport itself replaced the connection
        assert client.list_workers() == []
    finally:
        client.close()
        server.should_exit = True
        thread.join(10)
        broker.close()
