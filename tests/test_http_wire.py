"""Tests of the HTTP/1.1 layer of small-file downloads (codemate_setup.http_wire).

A raw loopback server produces what the reference middleware cannot: idle
connections closed by the server, bytes beyond the declared body, chunked
bodies.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from download_support import fast_limits, sha256
from packaging.version import Version
from raw_server import ConnectionServer, request_heads

from codemate_setup.client import USER_AGENT, MiddlewareClient
from codemate_setup.download import DownloadItem, download_all
from codemate_setup.errors import MiddlewareError
from codemate_setup.http_wire import parse_head
from codemate_setup.small_transport import SmallFileTransport

V1 = Version("1.0.0")
LIMITS = fast_limits(read_timeout=1.0)


@pytest.fixture
def stage(tmp_path) -> Path:
    return tmp_path / "staging"


# Connection handling, against a raw server


def respond(body: bytes, *, extra: bytes = b"", headers: str = "") -> bytes:
    head = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{headers}\r\n").encode()
    return head + body + extra


class RawServer:
    """A loopback server that sends the bytes from ``reply`` for each request.

    ``reply`` gets the raw request head and returns the bytes to send, or
    None to close the connection without a response.
    """

    def __init__(self, reply: Callable[[str], bytes | None]) -> None:
        self.reply = reply
        self.requests: list[str] = []
        self.close_after_each = False
        self._server = ConnectionServer(self._serve)
        self.port = self._server.port

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return self._server.connections

    def _serve(self, conn: socket.socket, _index: int) -> None:
        # A client that closes with bytes unread resets the connection, and
        # close() shuts down a connection that may be sending.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for request in request_heads(conn):
                self.requests.append(request)
                answer = self.reply(request)
                if answer is None:
                    return
                conn.sendall(answer)
                if self.close_after_each:
                    # Close as an idle keep-alive connection is closed.
                    time.sleep(0.05)
                    return

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.close()


def fetch_from(server: RawServer, items: list[DownloadItem]):
    with MiddlewareClient(f"http://127.0.0.1:{server.port}", limits=LIMITS) as client:
        return download_all(client, items, workers=1)


def raw_items(stage: Path, count: int, body: bytes = b"payload") -> list[DownloadItem]:
    return [
        DownloadItem(V1, f"f{n}.py", stage / f"f{n}.py", sha256(body), len(body))
        for n in range(count)
    ]


def test_one_connection_carries_every_file(stage) -> None:
    with RawServer(lambda request: respond(b"payload")) as server:
        fetch_from(server, raw_items(stage, 5))

    assert server.connections == 1


def test_small_file_request_is_one_lean_get(stage) -> None:
    with RawServer(lambda request: respond(b"payload")) as server:
        fetch_from(server, raw_items(stage, 1))

    assert server.requests == [
        f"GET /download/v1.0.0/f0.py HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"User-Agent: {USER_AGENT}\r\nAccept-Encoding: identity"
    ]


def test_small_file_credentials_sent_and_never_logged(stage, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = RawServer(lambda request: respond(b"payload"))
    url = f"http://user:s3cret@127.0.0.1:{server.port}"
    item = DownloadItem(V1, "a.py", stage / "a.py", sha256(b"payload"), 7)

    with server, MiddlewareClient(url, limits=LIMITS) as client:
        download_all(client, [item])

    expected = base64.b64encode(b"user:s3cret").decode()
    assert f"Authorization: Basic {expected}" in server.requests[0]
    assert "s3cret" not in caplog.text


def test_idle_connection_closed_by_server_reopened(stage) -> None:
    with RawServer(lambda request: respond(b"payload")) as server:
        server.close_after_each = True
        with MiddlewareClient(f"http://127.0.0.1:{server.port}", limits=LIMITS) as c:
            stats = download_all(c, raw_items(stage, 3), workers=1)

    assert stats.retries == 0
    assert len(server.requests) == 3


def test_bytes_beyond_body_drop_the_connection(stage) -> None:
    with RawServer(lambda request: respond(b"payload", extra=b"junk")) as server:
        fetch_from(server, raw_items(stage, 3))

    assert server.connections == 3


def test_chunked_response_goes_through_requests(stage) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7\r\npayload\r\n0\r\n\r\n"
    )
    with RawServer(lambda request: chunked) as server:
        fetch_from(server, raw_items(stage, 2))

    assert (stage / "f1.py").read_bytes() == b"payload"


def test_redirect_to_remote_http_rejected(stage) -> None:
    redirect = (
        b"HTTP/1.1 307 Temporary Redirect\r\n"
        b"Location: http://cdn.example.com/f0.py?sig=s\r\nContent-Length: 0\r\n\r\n"
    )
    with (
        RawServer(lambda request: redirect) as server,
        pytest.raises(MiddlewareError, match="which is not https"),
    ):
        fetch_from(server, raw_items(stage, 1))

    assert len(server.requests) == 1


def test_closed_without_response_retried(stage) -> None:
    answers = iter([None, respond(b"payload")])
    with RawServer(lambda request: next(answers)) as server:
        stats = fetch_from(server, raw_items(stage, 1))

    assert stats.retries == 1
    assert (stage / "f0.py").read_bytes() == b"payload"


def test_header_with_line_break_never_sent(stage) -> None:
    # A hostile ETag sent back in If-Range must not split the request.
    transport_headers = {"If-Range": '"a"\r\nX-Injected: 1'}
    with MiddlewareClient("http://127.0.0.1:9", limits=LIMITS) as client:
        transport = SmallFileTransport.for_client(client)
        assert transport is not None
        with pytest.raises(ValueError, match="invalid value"):
            transport.request_bytes(client.base_url + "/x", transport_headers)


# Response heads


def test_parse_head_reads_status_and_length() -> None:
    head = parse_head(b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\nETag: "x"')

    assert (head.status, head.length, head.keep_alive) == (200, 12, True)


def test_parse_head_close_ends_keep_alive() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close")

    assert head.keep_alive is False


def test_parse_head_without_length_reads_to_close() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nServer: x")

    assert (head.length, head.keep_alive) == (None, False)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK",
        b"HTTP/1.1 2000 OK",
        b"ICY 200 OK",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\n folded",
        b"HTTP/1.1 200 OK\r\nno colon",
    ],
)
def test_parse_head_rejects_invalid_heads(data: bytes) -> None:
    with pytest.raises(http.client.HTTPException):
        parse_head(data)


def test_head_requests_accepts_goes_through_requests(stage) -> None:
    body = b"payload"
    answer = f"HTTP/1.1 200 OK\r\nContent-Length: +{len(body)}\r\n\r\n".encode() + body
    with RawServer(lambda request: answer) as server:
        fetch_from(server, raw_items(stage, 2))

    assert (stage / "f1.py").read_bytes() == body


def test_head_without_crs_ends_at_first_empty_line(stage) -> None:
    body = b"a\r\n\r\nb"
    answer = f"HTTP/1.1 200 OK\nContent-Length: {len(body)}\n\n".encode() + body
    with RawServer(lambda request: answer) as server:
        fetch_from(server, raw_items(stage, 2, body))

    assert (stage / "f1.py").read_bytes() == body


def test_late_bytes_on_idle_connection_dropped() -> None:
    conns: list[socket.socket] = []

    class RecordingServer(RawServer):
        def _serve(self, conn: socket.socket, index: int) -> None:
            conns.append(conn)
            super()._serve(conn, index)

    with RecordingServer(lambda request: respond(b"payload")) as server:
        url = f"http://127.0.0.1:{server.port}"
        with MiddlewareClient(url, limits=LIMITS) as client:
            transport = SmallFileTransport.for_client(client)
            first = transport.open_stream(client.download_url(V1, "f0.py"))
            first.read_body(7)
            conns[0].sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            time.sleep(0.1)
            second = transport.open_stream(client.download_url(V1, "f1.py"))

            assert second.status_code == 200
            assert server.connections == 2


# A response head sent slowly


class DribbleServer(RawServer):
    """A loopback server that sends each of ``pieces`` after its delay, then closes."""

    def __init__(self, pieces: list[tuple[float, bytes]]) -> None:
        self.pieces = pieces
        super().__init__(lambda request: None)

    def _serve(self, conn: socket.socket, _index: int) -> None:
        with contextlib.suppress(OSError):
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                buffer += conn.recv(65536)
            for delay, data in self.pieces:
                time.sleep(delay)
                conn.sendall(data)


SLOW_FLOOR = fast_limits(
    read_timeout=1.0, low_speed_bytes=1000, low_speed_seconds=0.3, max_retries=0
)


@pytest.mark.timeout(10)
def test_head_sent_byte_by_byte_times_out(stage) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n" + b"X-Pad: a\r\n" * 100
    pieces = [(0.05, head[n : n + 1]) for n in range(len(head))]
    started = time.monotonic()
    with (
        DribbleServer(pieces) as server,
        MiddlewareClient(f"http://127.0.0.1:{server.port}", limits=SLOW_FLOOR) as c,
        pytest.raises(
            MiddlewareError,
            match="failed after 1 attempts: the transfer stalled: .* while the "
            "response head was read",
        ),
    ):
        download_all(c, raw_items(stage, 1), workers=1)

    assert time.monotonic() - started < 2.0


def test_head_ending_after_slow_window_accepted(stage) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n"
    pieces = [(0.0, head), (0.4, b"\r\npayload")]
    with (
        DribbleServer(pieces) as server,
        MiddlewareClient(f"http://127.0.0.1:{server.port}", limits=SLOW_FLOOR) as c,
    ):
        download_all(c, raw_items(stage, 1), workers=1)

    assert (stage / "f0.py").read_bytes() == b"payload"
